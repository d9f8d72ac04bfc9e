// Publisher: the JetStream publishes of one bus. Every publish is pipelined through the bus'
// Mux (its PubAck is a reply on the bus' inbox), bounded by the window of
// NatsConfig::max_pending_publishes, and settled by a PubSlot that the returned PublishFuture
// awaits; publish() is publish_async() plus an immediate await. It reaches the connection only
// through its Host, which the bus implements. Loop thread only.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "jetstream/publish_tracker.hpp"
#include "natbus/bus.hpp"
#include "natbus/metrics.hpp"
#include "runtime/loop.hpp"
#include "transport/cnats.hpp"
#include "transport/mux.hpp"

namespace natbus::detail {

class Publisher {
 public:
  /// What the publisher needs from its owner (the bus). The calls on every publish are plain
  /// reads; only waiting out a reconnect suspends.
  class Host {
   public:
    /// A publish in flight keeps the owner alive until it settles.
    virtual void pub_retain() noexcept = 0;
    virtual void pub_release() noexcept = 0;
    /// The loop (nullptr once it ended) and the current connection (nullptr while none).
    [[nodiscard]] virtual Loop* pub_loop() const noexcept = 0;
    [[nodiscard]] virtual natsConnection* pub_connection() const noexcept = 0;
    /// The connection was lost and a new one is being opened.
    [[nodiscard]] virtual bool pub_reconnecting() const noexcept = 0;
    /// Waits until connected again, closed, or `deadline`.
    virtual Task<bool> pub_wait_connected(Clock::time_point deadline) = 0;
    /// Throws the ClosedError / ConnectionError naming `operation` unless the bus is open.
    virtual void pub_ensure_open(std::string_view operation) const = 0;
    [[nodiscard]] virtual Mux& pub_mux() noexcept = 0;
    /// The bus' publish counters.
    [[nodiscard]] virtual PublishMetrics& pub_metrics() noexcept = 0;
    /// The connection's write buffer is above its high water mark (large messages: the window
    /// counts messages, not bytes), and the wait until the loop has written it down.
    [[nodiscard]] virtual bool pub_write_backlogged() const noexcept = 0;
    virtual Task<void> pub_relieve_write_backlog() = 0;

   protected:
    Host() = default;
    Host(const Host&) = default;
    Host& operator=(const Host&) = default;
    ~Host() = default;
  };

  struct Settings {
    std::chrono::milliseconds publish_timeout{5000};  // NatsConfig::publish_timeout
    std::chrono::milliseconds dedupe_window{0};       // NatsConfig::dedupe_window
    std::size_t max_pending = 1;                      // NatsConfig::max_pending_publishes
  };

  Publisher(Host& host, Settings settings) noexcept : host_(host), s_(settings) {}

  /// Sends `msg` once the window has room (waiting out a reconnect, bounded by
  /// publish_timeout); the future completes with its PubAck or error.
  Task<PublishFuture> publish_async(BusMessage msg);
  /// Waits until every publish in flight has settled; TimeoutError after `timeout`.
  Task<void> complete(std::chrono::milliseconds timeout);
  /// Publishes sent and not settled.
  [[nodiscard]] std::size_t in_flight() const noexcept { return tracker_.in_flight(); }
  [[nodiscard]] PublishTracker& tracker() noexcept { return tracker_; }
  [[nodiscard]] Host& host() const noexcept { return host_; }
  [[nodiscard]] const Settings& settings() const noexcept { return s_; }
  /// The fast lane saw a 503 it cannot attribute: forget which subjects have a stream.
  void on_fast_lane_no_responders() noexcept;

 private:
  Host& host_;
  Settings s_;
  PublishTracker tracker_;
};

}  // namespace natbus::detail
