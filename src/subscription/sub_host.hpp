// SubHost: what a subscription may ask of the bus it belongs to: the loop and connection, the
// read fan-out it joins, the count of running handlers that close() waits for, and the
// JetStream calls a consumer makes. The bus (BusCore) implements it, so subscription/,
// jetstream/ and core/ never include bus/. Loop thread only.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "natbus/bus.hpp"
#include "natbus/config.hpp"
#include "natbus/stream_info.hpp"
#include "natbus/task.hpp"
#include "runtime/loop.hpp"
#include "transport/cnats.hpp"
#include "transport/sink.hpp"

namespace natbus::detail {

class AckTarget;
class JsApi;
class SubCore;

class SubHost {
 public:
  /// Reference counting: a subscription keeps its bus alive (Ref<SubHost>).
  virtual void add_ref() noexcept = 0;
  virtual void release() noexcept = 0;

  [[nodiscard]] virtual const NatsConfig& config() const noexcept = 0;
  /// The loop (nullptr once it ended) and the current connection (nullptr while none).
  [[nodiscard]] virtual Loop* loop() const noexcept = 0;
  [[nodiscard]] virtual natsConnection* nc() const noexcept = 0;
  /// A connection is there to write on (open, or closing with the connection still up).
  [[nodiscard]] virtual bool has_connection() const noexcept = 0;
  [[nodiscard]] virtual bool is_open() const noexcept = 0;
  /// The connection was lost and a new one is being opened.
  [[nodiscard]] virtual bool reconnecting() const noexcept = 0;
  /// Why the bus ended by itself; empty otherwise.
  [[nodiscard]] virtual const std::string& closed_reason() const noexcept = 0;
  /// Throws ClosedError / ConnectionError naming `operation` unless the bus is open.
  virtual void ensure_open(std::string_view operation) const = 0;
  /// While reconnecting: waits until open again, closed, or `deadline`. True when open.
  virtual Task<bool> wait_connected(Clock::time_point deadline) = 0;
  /// PING/PONG round trip: the server has processed everything sent before.
  virtual Task<void> flush(std::chrono::milliseconds timeout) = 0;

  /// The sinks drained after every read of the connection.
  virtual void add_sink(MsgSink* s) = 0;
  virtual void remove_sink(MsgSink* s) noexcept = 0;
  /// Live subscriptions (re-established after a reconnect, listed in metrics).
  virtual void register_sub(SubCore* s) = 0;
  virtual void unregister_sub(SubCore* s) noexcept = 0;
  /// Handlers running (close() waits for them).
  virtual void handler_started() noexcept = 0;
  virtual void handler_finished() noexcept = 0;
  /// What received messages ack and reply through.
  [[nodiscard]] virtual AckTarget* ack_target() noexcept = 0;

  /// The JetStream API (consumers in jetstream/ ensure their durables with it).
  [[nodiscard]] virtual JsApi& js() noexcept = 0;
  virtual Task<ConsumerInfo> consumer_info(std::string stream, std::string consumer) = 0;
  /// A JetStream publish (dead letters).
  virtual Task<PublishFuture> publish(BusMessage msg) = 0;

 protected:
  SubHost() = default;
  SubHost(const SubHost&) = default;
  SubHost& operator=(const SubHost&) = default;
  ~SubHost() = default;
};

}  // namespace natbus::detail
