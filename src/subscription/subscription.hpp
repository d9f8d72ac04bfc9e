// Folder subscription/: what every subscription kind shares (core subscriptions, push and
// pull consumers, message streams): the cnats queue drained after each read, the held queue,
// handlers started up to max_concurrency, acks after handlers, dead letters, and the stop that
// gives back (naks) what was in flight. It calls message/, transport/, runtime/ and base/, and
// reaches its bus through SubHost (sub_host.hpp), which the bus implements.
//
// Consumers. natbus creates (or reconciles) every durable itself with the JetStream API and
// then listens with a plain, synchronous cnats subscription that the loop drains after each
// read: no cnats JetStream subscription, so no durable is ever deleted by an unsubscribe, no
// thread per consumer, and acks go to the $JS.ACK reply subject through the connection.
//
// Backpressure: after every read, a subscription takes what cnats queued for it into its own
// queue (held_), where messages wait for a handler slot (max_concurrency). That queue outlives
// the connection: when it dies, cnats' closed subscription could no longer hand its messages
// out, while held_ starts them on the next connection (their acks go to the server through it).
// For push consumers the queue is bounded by the consumer's max_ack_pending (the server sends no
// more); for pull consumers by the two batches requested at most; core subscriptions by
// hold_limit_ (what exceeds it stays in cnats, whose pending limits then drop).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "message/msg_impl.hpp"
#include "natbus/log.hpp"
#include "runtime/detached.hpp"
#include "runtime/wait.hpp"
#include "subscription/sub_host.hpp"

namespace natbus::detail {

/// Bytes a push or core subscription queues at most, in cnats and again in natbus (held_).
inline constexpr int kQueueBytes = 64 * 1024 * 1024;

/// The numbers in a JetStream delivery's $JS.ACK reply subject.
struct AckTokens {
  std::uint64_t delivered = 0;     // how often the server delivered the message
  std::uint64_t stream_seq = 0;    // its sequence in the stream
  std::uint64_t consumer_seq = 0;  // the consumer's sequence of this delivery
  std::uint64_t pending = 0;       // messages left for the consumer after this one
};
/// The tokens of a $JS.ACK reply subject (v1: 9 tokens, v2: 12 or more) in one pass, with no
/// allocation; zeros when `reply` is not one.
AckTokens ack_tokens(std::string_view reply) noexcept;

/// How a subscription runs its handlers, fixed when it is made.
struct DeliverySettings {
  bool manual_ack = true;  // false: natbus acks after the handler returns
  int max_concurrency = 1;
  std::string dead_letter_subject;  // empty: none
  RetryBackoff retry_backoff{};
  std::vector<std::chrono::milliseconds> retry_backoff_steps;
};

/// A handler-driven (or fetch-driven) subscription. Base of push and pull.
class SubCore : public RefCounted, public MsgSink {
 public:
  SubCore(SubHost* bus, std::unique_ptr<HandlerBase> handler, DeliverySettings settings = {});
  ~SubCore() override;

  // Handle bookkeeping: the subscription stops when its last Subscription handle goes.
  void add_handle() noexcept { ++handles_; }
  void drop_handle() noexcept;

  /// Stops delivery (idempotent). A JetStream consumer on a live connection drains: UNSUB, a
  /// PING/PONG round trip, and every message taken but not started or already on its way is
  /// given back (a nak with a short delay: redelivered soon, to another subscriber, instead of
  /// after ack_wait); then the cnats subscription goes. Others nak what they hold and stop.
  virtual void stop() noexcept;
  /// True while stopped but still draining (see stop()).
  [[nodiscard]] bool draining() const noexcept { return draining_; }
  /// Ends a drain still running (the connection is about to close).
  void abandon_drain() noexcept {
    if (draining_) finish_stop();
  }
  /// The connection goes away: takes what cnats still queues, then drops the cnats subscription.
  virtual void on_disconnected() noexcept;
  /// A fresh connection: subscribes again, to the same subject and queue group, on `nc`.
  virtual void resubscribe(natsConnection* nc) noexcept;
  /// Completes when no handler of this subscription runs any more and its drain is over.
  Task<void> wait_idle(Clock::time_point deadline);

  [[nodiscard]] bool active() const noexcept { return active_; }
  [[nodiscard]] const std::string& subject() const noexcept { return subject_; }
  [[nodiscard]] const std::string& stream() const noexcept { return stream_; }
  [[nodiscard]] const std::string& durable() const noexcept { return durable_; }
  [[nodiscard]] const std::string& queue() const noexcept { return queue_; }
  [[nodiscard]] std::uint64_t delivered() const noexcept { return delivered_; }
  [[nodiscard]] SubHost& bus() const noexcept { return *bus_; }
  [[nodiscard]] int running() const noexcept { return running_; }
  /// Messages cnats dropped for this subscription because its queues were full.
  [[nodiscard]] std::uint64_t dropped() const noexcept;

  /// Runner side (subscription.cpp).
  void handler_done(MsgImpl* msg, const std::exception_ptr& error) noexcept;
  HandlerBase& handler() noexcept { return *handler_; }

  // Metrics (loop thread).
  [[nodiscard]] std::uint64_t redelivered() const noexcept { return redelivered_; }
  [[nodiscard]] std::uint64_t handler_errors() const noexcept { return handler_errors_; }
  [[nodiscard]] const Histogram& handler_seconds() const noexcept { return handler_seconds_; }

  /// True when `error` (or the handler's own nak) happened on the message's last allowed
  /// delivery and a dead-letter subject is set.
  [[nodiscard]] bool wants_dead_letter(const MsgImpl& msg, const std::exception_ptr& error) const;
  /// Publishes the message to the dead-letter subject and terminates it (loop thread).
  Task<void> dead_letter(MsgImpl& msg, std::exception_ptr error);

 protected:
  // Set by the kind's start() (what the subscription is on) and by the constructor (how it runs).
  std::string subject_;
  std::string stream_;
  std::string durable_;
  std::string queue_;
  bool manual_ack_ = true;
  int max_concurrency_ = 1;
  std::string dead_letter_subject_;
  RetryBackoff retry_backoff_{};
  std::vector<std::chrono::milliseconds> retry_backoff_steps_;
  int max_deliver_ = -1;  // as the server has it (read back after ensure_consumer)
  bool no_ack_ = false;   // an ordered consumer: its messages are not acknowledged
  std::uint64_t redelivered_ = 0;
  std::uint64_t handler_errors_ = 0;
  Histogram handler_seconds_;

  /// Starts a handler for `m` (loop thread).
  void dispatch(MsgPtr m);
  /// Subscribes (synchronously) to wire_subject_ / wire_queue_ on `nc` with the pending limits.
  void subscribe_on(natsConnection* nc, const ErrorContext& ctx);
  /// Moves what cnats queued into held_ (up to hold_limit_ messages and hold_bytes_limit_ bytes).
  void hold_queued() noexcept;
  /// Logs drops (rate-limited: at most one line per 10 s per subscription, with the count).
  void report_drops() noexcept;
  /// Takes the next message (held first, then cnats'); false when there is none.
  bool next_message(MsgPtr& out) noexcept;
  /// Messages waiting here and in cnats' queue.
  [[nodiscard]] std::size_t queued() const noexcept;
  /// Handlers may start: the bus has a connection to ack through.
  [[nodiscard]] bool can_dispatch() const noexcept { return active_ && bus_->has_connection(); }
  /// JetStream consumers drain on stop (core subscriptions have nothing to give back).
  [[nodiscard]] virtual bool drains_on_stop() const noexcept { return false; }
  /// Stopping, before the UNSUB: starts holding what arrives (false: nothing can be on its way
  /// that an UNSUB now would send into the void; UNSUB at once). Sets drain_deadline_.
  virtual bool begin_hold_before_unsubscribe() noexcept { return false; }
  /// Holding before the UNSUB: true once nothing more is on its way to this subscription.
  [[nodiscard]] virtual bool ready_to_unsubscribe(Clock::time_point /*now*/) noexcept { return true; }
  /// Draining: a message taken off cnats' queue; false drops it (a pull request's status).
  virtual bool keep_while_draining(natsMsg* /*m*/) noexcept { return true; }
  void start_drain() noexcept;
  /// Notes a received message's consumer sequence (max_consumer_seq_); returns its delivery count.
  std::uint64_t note_received(natsMsg* m) noexcept;
  static Task<void> wait_in_flight(Ref<SubCore> self);
  /// While draining: naks (drain_queued) what arrived; ends the drain once cnats is done with
  /// it and held_ is empty (true).
  bool drain_step() noexcept;
  /// Ends a drain (or a stop without one): the cnats subscription goes, the bus forgets this.
  void finish_stop() noexcept;
  static void drain_tick(void* a, void*, bool run) noexcept;
  /// Naks every message still queued in cnats' subscription (on stop).
  void nak_queued() noexcept;
  /// While draining, after the UNSUB: what to do with what is queued (default: nak it). The
  /// drain ends only once nothing is left in held_.
  virtual void drain_queued() noexcept { nak_queued(); }
  /// After a handler finished (pull: request more).
  virtual void after_handler() noexcept {}
  /// cnats destroyed a no-responders status taken off the subscription (pull requests only).
  virtual void on_no_responders() noexcept {}

  Ref<SubHost> bus_;
  std::unique_ptr<HandlerBase> handler_;
  natsSubscription* sub_ = nullptr;
  std::string wire_subject_;  // what sub_ listens on (deliver subject, pull inbox, core subject)
  std::string wire_queue_;
  int pending_msgs_ = -1;  // cnats pending limits of sub_ (-1: none)
  int pending_bytes_ = -1;
  std::size_t hold_limit_ = ~std::size_t{0};
  std::size_t hold_bytes_limit_ = ~std::size_t{0};
  std::size_t held_bytes_ = 0;
  std::deque<MsgPtr> held_;
  std::uint64_t dropped_before_ = 0;  // drops of cnats subscriptions of earlier connections
  std::uint64_t dropped_logged_ = 0;
  Clock::time_point drop_logged_at_{};
  bool active_ = false;
  bool draining_ = false;
  bool unsub_sent_ = false;
  bool in_flight_known_ = false;
  std::uint64_t in_flight_target_ = 0;  // the consumer's delivered sequence when the stop began
  std::uint64_t max_consumer_seq_ = 0;  // the highest consumer sequence received (push durables)
  Clock::time_point drain_deadline_{};
  TimerKey drain_timer_{};
  bool pumping_ = false;
  int running_ = 0;
  int handles_ = 0;
  std::uint64_t delivered_ = 0;
  WaitList idle_;
};

}  // namespace natbus::detail
