// Folder message/: messages. BusMessage building and its headers (message.cpp), the received
// side and acknowledgements (received.cpp, msg_impl.hpp), gzip, trace context. It calls base/
// and transport/; acks still go through the bus (received.cpp includes bus/bus_core.hpp) until
// they have a sender of their own.
//
// What a ReceivedMessage points at: cnats' message, the bus it came from (for acks), its
// decompressed payload and whether it was answered. Recycled through the frame pool.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "base/ref.hpp"
#include "natbus/message.hpp"
#include "natbus/task.hpp"
#include "transport/cnats.hpp"

namespace natbus::detail {

class BusCore;

enum class AckState : std::uint8_t { none, acked, naked, termed };

struct MsgImpl {
  MsgImpl(MsgPtr m, BusCore* b) noexcept;
  ~MsgImpl();
  MsgImpl(const MsgImpl&) = delete;
  MsgImpl& operator=(const MsgImpl&) = delete;

  static void* operator new(std::size_t size) { return frame_alloc(size); }
  static void operator delete(void* ptr, std::size_t size) noexcept { frame_free(ptr, size); }

  void add_ref() noexcept { ++refs; }
  void release() noexcept {
    if (--refs == 0) delete this;
  }

  std::uint32_t refs = 1;
  AckState state = AckState::none;
  std::uint8_t decode_state = 0;  // 0: not looked at, 1: payload is the raw data, 2: `decoded` holds it
  MsgPtr msg;
  BusCore* bus;  // holds a reference
  std::chrono::system_clock::time_point received_at;
  std::chrono::steady_clock::time_point started{};  // handler start (metrics)
  std::string decoded;
};

/// Sends "+ACK", "-NAK", "+WPI", "+TERM" (or a -NAK with delay) for `m`; throws on misuse.
void send_ack(MsgImpl& m, std::string_view op, std::string_view body, AckState new_state);

/// JetStream metadata from a $JS.ACK reply subject (v1 and v2 forms); nullopt otherwise.
std::optional<MsgMetadata> parse_metadata(std::string_view reply);

}  // namespace natbus::detail
