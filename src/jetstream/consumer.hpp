// Folder jetstream/: JetStream. The management API (JsApi, js_api.*), publishing and PubAcks
// (Publisher, publisher.*, puback.*, publish_tracker.hpp), server errors (server_errors.*), and
// consumers: ensuring the durable (consumer.*), push, pull and message streams (stream.*), built
// on subscription/. It calls subscription/, message/, transport/, runtime/ and base/; it reaches
// the bus only through the host interfaces the bus implements (JsApi::Host, Publisher::Host,
// SubHost).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "jetstream/js_api.hpp"
#include "message/msg_impl.hpp"
#include "runtime/detached.hpp"
#include "subscription/subscription.hpp"

namespace natbus::detail {

/// What natbus wants a consumer to look like.
struct ConsumerSpec {
  std::string op;
  std::string stream;
  std::string durable;  // empty: ephemeral
  std::string filter_subject;
  std::string queue;
  std::string deliver_subject;  // push only; natbus picks an inbox when creating
  bool push = true;
  bool reconcile = true;  // NatsConfig::bind / options.bind
  DeliverPolicy deliver_policy = DeliverPolicy::new_;
  std::uint64_t start_sequence = 0;
  std::chrono::system_clock::time_point start_time{};
  std::chrono::milliseconds ack_wait{30000};
  int max_ack_pending = 1024;
  int max_deliver = -1;
  std::chrono::milliseconds idle_heartbeat{0};
  bool flow_control = false;
  bool ack_none = false;  // ordered consumers: no acks, one delivery (max_ack_pending and ack_wait not sent)
  std::chrono::milliseconds inactive_threshold{0};
  std::chrono::milliseconds bind_timeout{0};
  // ConsumerSettings, owned (0 / empty / false: not given, left to the server).
  std::vector<std::chrono::milliseconds> backoff;
  std::string description;
  bool headers_only = false;
  bool memory_storage = false;
  int replicas = 0;
  int sample_frequency = 0;
  std::uint64_t rate_limit_bps = 0;
  int max_waiting = 0;
  int max_request_batch = 0;
  std::chrono::milliseconds max_request_expires{0};
  int max_request_max_bytes = 0;
};

/// Creates the consumer when missing; when it exists: kind mismatch is a ConsumerKindError,
/// and with `reconcile` a consumer whose queue group, filter, deliver policy, ack wait or max
/// ack pending differ is deleted and recreated. Returns the consumer as the server has it.
Task<ConsumerInfo> ensure_consumer(JsApi& js, ConsumerSpec& spec);

/// Durable or ephemeral push consumer.
class PushCore final : public SubCore {
 public:
  using SubCore::SubCore;
  /// Ensures the consumer, waits out "already bound", subscribes.
  Task<void> start(ConsumerSpec spec);
  void pump() noexcept override;
  void resubscribe(natsConnection* nc) noexcept override;
  void stop() noexcept override;
  [[nodiscard]] bool drains_on_stop() const noexcept override { return true; }

 private:
  /// Push durables without a queue group wait, before the UNSUB, for what the server already
  /// sent: the consumer's delivered sequence when the stop began. Others need not: a queue
  /// group's other members take what comes.
  bool begin_hold_before_unsubscribe() noexcept override;
  [[nodiscard]] bool ready_to_unsubscribe(Clock::time_point now) noexcept override;
  bool handle_control(natsMsg* m) noexcept;
  void arm_heartbeat_watch();
  static void heartbeat_check(void* a, void*, bool run) noexcept;
  std::chrono::milliseconds idle_heartbeat_{0};
  Clock::time_point last_activity_{};
  TimerKey hb_timer_{};
  bool hb_warned_ = false;
};

/// Ordered consumer (ADR-17): an ephemeral push consumer without acks, with flow control and
/// idle heartbeats, read in consumer-sequence order. A gap in that sequence, a heartbeat that
/// reports a different last sequence, heartbeats missing for three intervals, or a reconnect
/// replace it with a fresh consumer (new deliver subject) that starts after the last stream
/// sequence handed on; the reader sees nothing but time. A stream that is gone ends it.
class OrderedCore final : public SubCore {
 public:
  OrderedCore(SubHost* bus, std::unique_ptr<HandlerBase> handler);
  /// Subscribes and creates the first consumer (errors are the caller's: no stream, bad filter).
  Task<void> start(ConsumerSpec spec);
  void pump() noexcept override;
  void on_disconnected() noexcept override;
  void resubscribe(natsConnection* nc) noexcept override;
  void stop() noexcept override;
  /// Messages the first consumer had for the reader when it was created (KV watchers).
  [[nodiscard]] std::uint64_t initial_pending() const noexcept { return initial_pending_; }
  /// Consumers recreated so far.
  [[nodiscard]] std::uint64_t resets() const noexcept { return resets_; }
  /// Holds at most `messages` here and as many in cnats, which drops the rest: how the tests
  /// make a real gap in the consumer sequence.
  void limit_queue(int messages) noexcept;

 private:
  /// Drops the current subscription and what it queued, and recreates the consumer.
  void reset(std::string_view why) noexcept;
  static Task<void> recreate(Ref<OrderedCore> self);
  /// A new deliver subject, subscribed, and a consumer behind it from stream_seq_ + 1.
  Task<void> open_consumer();
  void drop_subscription() noexcept;
  bool handle_control(natsMsg* m) noexcept;
  void arm_heartbeat_watch();
  static void heartbeat_check(void* a, void*, bool run) noexcept;

  ConsumerSpec spec_;
  std::string consumer_;            // the current consumer's name
  std::uint64_t consumer_seq_ = 0;  // the last consumer sequence handed on
  std::uint64_t stream_seq_ = 0;    // the last stream sequence handed on
  std::uint64_t initial_pending_ = 0;
  std::uint64_t resets_ = 0;
  std::uint64_t drops_seen_ = 0;  // dropped() when the reader's position was last made good
  bool recreating_ = false;
  bool reset_again_ = false;  // a reset was asked for while one was running
  Clock::time_point last_activity_{};
  TimerKey hb_timer_{};
  WaitList stopped_;  // wakes the recreate loop's backoff on stop()
};

/// Durable pull consumer over the JetStream pull protocol on a core subscription: next-message
/// requests with batch/expires/heartbeat; 408/404/409 and heartbeats arrive on per-request
/// reply subjects, so a stale status can never end a newer request (cnats 3.4 Fetch's bug).
class PullCore final : public SubCore {
 public:
  using SubCore::SubCore;
  Task<void> start(ConsumerSpec spec, int batch, std::chrono::milliseconds expires, std::chrono::milliseconds heartbeat);
  void pump() noexcept override;
  void on_disconnected() noexcept override;
  void resubscribe(natsConnection* nc) noexcept override;
  void stop() noexcept override;
  [[nodiscard]] bool drains_on_stop() const noexcept override { return true; }

  /// fetch() / fetch_no_wait() (no handler).
  Task<std::vector<ReceivedMessage>> fetch(int batch, std::chrono::milliseconds timeout, bool no_wait_only);

 private:
  struct Request {
    std::uint64_t id = 0;
    int remaining = 0;
    Clock::time_point expires_at{};
    Clock::time_point last_seen{};
  };
  struct Fetch {
    int batch = 0;
    std::uint64_t request = 0;  // the request whose end finishes this step
    bool finished = false;
    std::vector<ReceivedMessage> msgs;
    WaitList wake;
    std::exception_ptr error;
  };

  /// Requests still open on the server may be being filled while the UNSUB is processed: a
  /// message nats-server matched to a request before it and routes after it goes nowhere (it
  /// comes back only after ack_wait). So the UNSUB waits until the open requests are filled,
  /// answered or expired, or nothing arrived for a quiet period with no handler running.
  bool begin_hold_before_unsubscribe() noexcept override;
  [[nodiscard]] bool ready_to_unsubscribe(Clock::time_point now) noexcept override;
  bool keep_while_draining(natsMsg* m) noexcept override;
  void after_handler() noexcept override { request_more(); }
  void on_no_responders() noexcept override;
  void request_more() noexcept;
  std::uint64_t send_request(int batch, std::chrono::milliseconds expires, bool no_wait);
  void on_status(natsMsg* m) noexcept;
  /// The request a status or message on inbox_ + id answers (0: none).
  [[nodiscard]] std::uint64_t request_of(natsMsg* m) const noexcept;
  void consume_credit() noexcept;
  Request* find_request(std::uint64_t id) noexcept;
  void erase_request(std::uint64_t id) noexcept;
  void arm_watchdog();
  static void watchdog(void* a, void*, bool run) noexcept;
  static void resume_requests(void* a, void*, bool run) noexcept;
  void recover() noexcept;
  static Task<void> recover_loop(Ref<PullCore> self);

  std::string inbox_;         // "<inbox>." ; request i replies on inbox_ + i
  std::string next_subject_;  // $JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>
  int batch_ = 10;
  std::chrono::milliseconds expires_{5000};
  std::chrono::milliseconds heartbeat_{0};
  std::deque<Request> requests_;
  std::uint64_t next_request_ = 1;
  TimerKey watchdog_timer_{};
  TimerKey backoff_timer_{};
  Fetch* fetch_ = nullptr;
  WaitList fetch_queue_;
  ConsumerSpec spec_;
  bool recovering_ = false;
  int lost_in_a_row_ = 0;             // requests that expired without a word from the server, since the last one that got one
  Clock::time_point last_arrival_{};  // stopping: when the last message arrived
};

}  // namespace natbus::detail
