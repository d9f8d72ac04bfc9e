// BlockingBus: natbus for code that is not a coroutine and may run on any thread.
//
//   natbus::BlockingBus bus(config);                 // starts a LoopThread and connects
//   natbus::PubAck ack = bus.publish(natbus::BusMessage::from_json("orders.created", order));
//   auto reply = bus.request(natbus::BusMessage::from_json("prices.get", q), 2s);
//
// Every call may be made from any number of threads at once. The bus itself lives on the
// BlockingBus's own loop thread (natbus objects are confined to one loop, which is what keeps
// their hot paths lock-free); each call hands its work to that loop and waits for the answer.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <future>
#include <memory>
#include <type_traits>
#include <utility>

#include "natbus/bus.hpp"
#include "natbus/config.hpp"
#include "natbus/message.hpp"
#include "natbus/task.hpp"
#include "natbus/thread.hpp"

namespace natbus {

namespace detail {
/// Bounds the publish_async() calls in flight through one BlockingBus (any thread).
class PublishPermits;
/// A reply that may cross threads: it no longer refers to the bus it came from.
void detach_from_bus(ReceivedMessage& m) noexcept;
}  // namespace detail

/// NatsBus for any thread without coroutines: every call blocks (or returns a std::future) while the bus works on its own LoopThread. Safe
/// from many threads at once.
class BlockingBus {
 public:
  /// Starts the loop thread and connects (blocking). Throws what NatsBus's constructor and
  /// connect() throw (ConfigError, ConnectionError, AuthError...).
  explicit BlockingBus(NatsConfig config, const LoopThreadOptions& options = {});
  /// close(), then stops the loop thread.
  ~BlockingBus();
  BlockingBus(const BlockingBus&) = delete;
  BlockingBus& operator=(const BlockingBus&) = delete;

  /// JetStream publish; blocks until the PubAck (NatsBus::publish's errors).
  PubAck publish(BusMessage msg);
  /// Sends and returns a future of the PubAck. Blocks the calling thread while
  /// NatsConfig::max_pending_publishes publishes made through this BlockingBus wait for theirs.
  [[nodiscard]] std::future<PubAck> publish_async(BusMessage msg);
  /// Core NATS publish (no PubAck); returns once it is handed to the connection.
  void publish_core(BusMessage msg);
  /// Request/reply (NatsBus::request). The reply may be used on any thread; it cannot be acked.
  [[nodiscard]] ReceivedMessage request(BusMessage msg, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  /// Blocks until everything sent so far reached the server.
  void flush(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// Drains and closes the bus (idempotent); later calls throw ClosedError.
  void close();
  /// The connection status.
  [[nodiscard]] ConnectionStatus status();
  /// The bus's counters.
  [[nodiscard]] MetricsSnapshot metrics();

  /// Runs `f(bus)` (returning natbus::Task<T>) on the bus's loop: subscriptions, fetches,
  /// anything NatsBus offers. What `f` keeps (a Subscription, say) must be destroyed on the
  /// loop too: keep it in a coroutine that lives there, or close it in another submit.
  template <class F>
  requires std::invocable<F&, NatsBus&> && detail::IsTask<std::invoke_result_t<F&, NatsBus&>>::value
      [[nodiscard]] std::future<typename std::invoke_result_t<F&, NatsBus&>::value_type>
      submit(F f) {
    NatsBus* bus = checked("submit");
    return loop_.submit([bus, f = std::move(f)]() mutable { return f(*bus); });
  }

  /// The loop thread the bus lives on.
  [[nodiscard]] LoopThread& loop_thread() noexcept { return loop_; }

 private:
  NatsBus* checked(const char* operation);
  LoopThread loop_;
  std::unique_ptr<NatsBus> bus_;  // created, used and destroyed on loop_'s thread
  std::shared_ptr<detail::PublishPermits> permits_;
};

}  // namespace natbus
