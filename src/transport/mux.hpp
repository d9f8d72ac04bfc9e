// Request/reply multiplexer: one wildcard subscription "<inbox_prefix>.<random>.*" per bus; each
// request gets the reply subject "<prefix>.<token>". Used for PubAcks, JetStream API calls,
// double acks and core requests. No thread waits anywhere.
//
// Two lanes share one table of outstanding requests:
//  - the exact lane, "<prefix>.<token>", an asynchronous cnats subscription. cnats'
//    natsSubscription_NextMsg destroys a no-responders (503) status and only returns
//    NATS_NO_RESPONDERS, so only a callback can tell which request a 503 answered. The callback
//    runs on cnats' delivery thread and posts the message to the loop (the Mux is found there by
//    id, so a reply arriving after the Mux is gone is dropped). JetStream API calls, double acks
//    and publishes to subjects not yet known to have a stream use it.
//  - the fast lane, "<prefix>.f.<token>", a synchronous subscription that the loop drains right
//    after reading the socket: no thread hop, no lock contention. Publishes to subjects that a
//    stream has already acknowledged use it. A 503 there cannot be attributed: the bus then
//    forgets its known subjects (later publishes take the exact lane) and the one publish that
//    got it times out after publish_timeout.
//  - the solo lane, "<prefix>.s<generation>.<token>", synchronous like the fast lane but holding
//    at most one request at a time, so a 503 on it answers that one: requests (core requests,
//    JetStream API calls, double acks) take it when it is free, and the exact lane otherwise
//    (a sequential request loop never leaves the loop thread). The server sends a 503 at once
//    when it routes the request; only a request that ended first by its timeout or a
//    with_timeout could still get one later, so after such an end the lane is replaced by a new
//    generation (a new subject) before its next use.
#pragma once

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>

#include "runtime/loop.hpp"
#include "transport/cnats.hpp"
#include "transport/sink.hpp"

namespace natbus::detail {

class Mux final : public MsgSink {
 public:
  /// Completion target of one request. on_reply() runs on the loop thread, exactly once, unless
  /// the request is cancelled first. `reply` is null when status is not NATS_OK
  /// (NATS_TIMEOUT, NATS_NO_RESPONDERS, NATS_CONNECTION_CLOSED).
  class Waiter {
   public:
    virtual void on_reply(MsgPtr reply, natsStatus status) noexcept = 0;

   protected:
    Waiter() = default;
    Waiter(const Waiter&) = default;
    Waiter& operator=(const Waiter&) = default;
    ~Waiter() = default;
  };

  /// What the mux needs from its owner (the bus), so that transport/ does not call upward.
  class Host {
   public:
    /// The loop it runs on (nullptr once that loop ended).
    [[nodiscard]] virtual Loop* mux_loop() const noexcept = 0;
    /// The current connection (nullptr while there is none).
    [[nodiscard]] virtual natsConnection* mux_connection() const noexcept = 0;
    /// The mux is a message sink of the connection's reads (registered while subscribed).
    virtual void mux_add_sink(MsgSink* s) = 0;
    virtual void mux_remove_sink(MsgSink* s) noexcept = 0;
    /// A fast-lane request met no responders (the host learns the server's behaviour).
    virtual void mux_no_responders() noexcept = 0;

   protected:
    Host() = default;
    Host(const Host&) = default;
    Host& operator=(const Host&) = default;
    ~Host() = default;
  };

  explicit Mux(Host& host) : host_(host) {}
  /// The loop the mux (and its waiters) run on.
  [[nodiscard]] Loop* loop() const noexcept { return host_.mux_loop(); }
  Mux(const Mux&) = delete;
  Mux& operator=(const Mux&) = delete;
  Mux(Mux&&) = delete;
  Mux& operator=(Mux&&) = delete;
  ~Mux();

  /// Picks the reply prefix and subscribes the reply wildcard on the bus' connection.
  void start(natsConnection* nc, std::string_view inbox_prefix);
  /// Subscribes the same reply wildcard on a new connection.
  void resubscribe(natsConnection* nc);
  /// The connection goes away: takes what already arrived, drops the subscriptions and fails
  /// every outstanding request with `status` (NATS_CONNECTION_DISCONNECTED: outcome unknown).
  void drop(natsStatus status) noexcept;
  /// Fails every outstanding request with `status` and drops the subscriptions.
  void stop(natsStatus status) noexcept;

  /// Which lane a reply subject is on (see above).
  enum class Lane { exact, fast, solo };
  /// Two-step send for messages built by the caller (headers): write the reply subject of the
  /// next request into `buf` (NUL-terminated), publish the message with it, then commit().
  /// Nothing else may be sent in between (the loop is single-threaded, so just do not suspend).
  /// `want`: fast (no 503 attribution; see above), solo (the solo lane when it is free, else
  /// the exact lane) or exact.
  const char* next_reply(char* buf, std::size_t cap, Lane want = Lane::exact);
  /// The message for the reply subject last handed out was not sent after all.
  void abandon_reply() noexcept { handed_ = Lane::exact; }
  /// Registers `waiter` for the reply subject last handed out by next_reply(); returns its token.
  std::uint64_t commit(std::chrono::nanoseconds timeout, Waiter* waiter);
  /// Publishes a plain payload as a request (solo lane when free) and registers `waiter`.
  /// Throws on a publish error (the waiter is then not registered).
  std::uint64_t send(std::string_view subject, std::string_view data, std::chrono::nanoseconds timeout, Waiter* waiter);
  /// Forgets a request (its waiter is going away). Safe for tokens already completed.
  void cancel(std::uint64_t token) noexcept;

  [[nodiscard]] std::size_t outstanding() const noexcept { return live_; }
  /// Entries the table holds (outstanding ones and the completed ones not yet trimmed).
  [[nodiscard]] std::size_t table_size() const noexcept { return entries_.size() + parked_.size(); }

  /// Drains the fast lane (MsgSink; called by the bus after each socket read).
  void pump() noexcept override;

 private:
  struct Entry {
    Waiter* waiter = nullptr;
    Clock::time_point deadline{};
  };
  Entry* find(std::uint64_t token) noexcept;
  void unsubscribe() noexcept;
  void forget_parked(std::uint64_t token) noexcept;
  void fail_all(natsStatus status) noexcept;
  void on_message(MsgPtr m) noexcept;
  void on_fast_message(MsgPtr m) noexcept;
  void on_solo_message(MsgPtr m) noexcept;
  /// A fresh solo lane (new generation) on the current connection; none when subscribing fails.
  void renew_solo(natsConnection* nc) noexcept;
  void drop_solo() noexcept;
  /// The solo request ended (token); a timeout or cancel leaves a late 503 possible.
  void solo_ended(std::uint64_t token, bool maybe_late_503) noexcept;
  [[nodiscard]] std::uint64_t parse_token(const char* subject, std::size_t prefix_len) const noexcept;
  static void on_msg_cb(natsConnection* nc, natsSubscription* sub, natsMsg* msg, void* closure);
  static void on_complete_cb(void* closure);
  static void deliver_work(void* a, void* b, bool run) noexcept;
  void complete(std::uint64_t token, MsgPtr reply, natsStatus status) noexcept;
  void arm_sweep(Clock::time_point deadline);
  static void sweep_work(void* a, void*, bool run) noexcept;
  void sweep() noexcept;
  void trim() noexcept;
  int format_reply(char* buf, std::size_t cap, std::uint64_t token, Lane lane) const noexcept;

  Host& host_;
  natsSubscription* sub_ = nullptr;       // exact lane
  natsSubscription* fast_sub_ = nullptr;  // fast lane
  natsSubscription* solo_sub_ = nullptr;  // solo lane
  std::uint64_t id_ = 0;                  // key of this Mux in the loop thread's registry
  std::string prefix_;                    // "<inbox_prefix>.<random>."
  std::string fast_prefix_;               // "<inbox_prefix>.<random>.f."
  std::string solo_prefix_;               // "<inbox_prefix>.<random>.s<generation>."
  std::uint64_t solo_generation_ = 0;
  std::uint64_t solo_token_ = 0;  // the request on the solo lane, 0: the lane is free
  bool solo_stale_ = false;       // a late 503 may still come: renew before the next use
  Lane handed_ = Lane::exact;     // the lane of the reply subject next_reply() handed out
  // entries_[i] is token base_ + i: a request's entry is found by index, with no allocation
  // per request. An entry that stays live at the front while the table grows (one long request
  // among many short ones) is parked in parked_, so the deque shrinks to what is outstanding.
  std::deque<Entry> entries_;
  std::unordered_map<std::uint64_t, Entry> parked_;
  std::uint64_t base_ = 1;
  std::uint64_t next_ = 1;
  std::size_t live_ = 0;
  TimerKey sweep_timer_{};
  Clock::time_point sweep_at_{};
};

}  // namespace natbus::detail
