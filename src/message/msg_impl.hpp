// Folder message/: messages. BusMessage building and its headers (message.cpp), the received
// side and acknowledgements (received.cpp, msg_impl.hpp), gzip, trace context. It calls base/
// and transport/; acks and replies go out through an AckTarget (the bus implements it).
//
// What a ReceivedMessage points at: cnats' message, the bus it came from (for acks), its
// decompressed payload and whether it was answered. Recycled through the frame pool.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/key.hpp"
#include "base/ref.hpp"
#include "natbus/message.hpp"
#include "natbus/task.hpp"
#include "transport/cnats.hpp"

namespace natbus::detail {

class Mux;

enum class AckState : std::uint8_t { none, acked, naked, termed };

/// Where a received message's acknowledgements and replies go: the bus it came from
/// (BusCore implements it), so that message/ does not call upward. Reference counted like the
/// bus: a MsgImpl holds one reference.
class AckTarget {
 public:
  virtual void ack_retain() noexcept = 0;
  virtual void ack_release() noexcept = 0;
  /// Throws (ClosedError...) naming `op` when the bus is closed.
  virtual void ensure_ack_usable(std::string_view op) const = 0;
  /// True while connected: an ack can go out now (cnats would buffer it otherwise).
  [[nodiscard]] virtual bool ack_connected() const noexcept = 0;
  /// Sends `body` to `reply` (an ack), written at the end of the loop iteration.
  virtual void send_ack_body(const char* reply, std::string_view body, std::string_view op) = 0;
  virtual void count_ack(AckState kind) noexcept = 0;
  /// Sends a reply message (serve()).
  virtual void send_reply(const BusMessage& msg, std::string_view op) = 0;
  [[nodiscard]] virtual std::size_t max_decompressed_size() const noexcept = 0;
  /// ack_sync(): the mux its confirmation comes through, and how long to wait.
  [[nodiscard]] virtual Mux& ack_mux() noexcept = 0;
  [[nodiscard]] virtual std::chrono::milliseconds ack_sync_timeout() const noexcept = 0;

 protected:
  AckTarget() = default;
  AckTarget(const AckTarget&) = default;
  AckTarget& operator=(const AckTarget&) = default;
  ~AckTarget() = default;
};

struct MsgImpl {
  MsgImpl(MsgPtr m, AckTarget* b) noexcept;
  ~MsgImpl();
  MsgImpl(const MsgImpl&) = delete;
  MsgImpl& operator=(const MsgImpl&) = delete;

  static void* operator new(std::size_t size) { return frame_alloc(size); }
  static void operator delete(void* ptr, std::size_t size) noexcept { frame_free(ptr, size); }

  /// The header block of `msg`, read in place (once); nullopt when cnats must be asked.
  [[nodiscard]] std::optional<std::string_view> headers_in_place() noexcept;

  void add_ref() noexcept { ++refs; }
  void release() noexcept {
    if (--refs == 0) delete this;
  }

  std::uint32_t refs = 1;
  AckState state = AckState::none;
  std::uint8_t decode_state = 0;  // 0: not looked at, 1: payload is the raw data, 2: `decoded` holds it
  std::uint8_t header_state = 0;  // 0: not looked at, 1: `header_block` holds the block, 2: ask cnats
  bool no_ack = false;            // an ordered consumer's delivery: nothing to acknowledge
  std::string_view header_block;  // in `msg` (message/header_block.hpp)
  MsgPtr msg;
  AckTarget* bus;  // the bus it came from; holds a reference
  std::chrono::system_clock::time_point received_at;
  std::chrono::steady_clock::time_point started{};  // handler start (metrics)
  std::string decoded;
};

/// Sends "+ACK", "-NAK", "+WPI", "+TERM" (or a -NAK with delay) for `m`; throws on misuse.
void send_ack(MsgImpl& m, std::string_view op, std::string_view body, AckState new_state);
/// The body of a -NAK: "-NAK", or with a redelivery delay `-NAK {"delay": <ns>}`.
[[nodiscard]] std::string nak_body(std::optional<std::chrono::nanoseconds> delay);
/// Sends the -NAK of `m` (with its delay, if any): the one way every nak of a handled message
/// is sent (a stopping subscription gives back unhandled ones with nak_body()).
void send_nak(MsgImpl& m, std::string_view op, std::optional<std::chrono::nanoseconds> delay);

/// JetStream metadata from a $JS.ACK reply subject (v1 and v2 forms); nullopt otherwise.
std::optional<MsgMetadata> parse_metadata(std::string_view reply);

}  // namespace natbus::detail
