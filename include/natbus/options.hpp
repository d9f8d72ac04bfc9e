// Options of NatsBus' subscribe and reply calls. Like MessageOptions, every member is a view or
// a scalar, so they are safe to write inline at an awaited call site:
//   co_await bus.push_subscribe("orders.*", on_order, {.durable = "orders", .ack_wait = 10s});
// Unset std::optional members take the NatsConfig default.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string_view>

#include "natbus/config.hpp"
#include "natbus/message.hpp"

namespace natbus {

/// Consumer settings natbus leaves to the server unless given (PushOptions::consumer,
/// PullOptions::consumer). What is given goes into the consumer's configuration when natbus
/// creates it; a durable whose server value differs is recreated (with bind) like one whose
/// ack_wait differs. Zero, empty and false mean "not given".
///   co_await bus.pull_subscribe("orders.*", h, {.durable = "orders", .consumer = {.max_request_batch = 100}});
struct ConsumerSettings {
  /// Server-side redelivery delays after an ack_wait expiry, one per delivery (the last
  /// repeats); needs max_deliver greater than their count. Copied at the call.
  std::span<const std::chrono::milliseconds> backoff{};
  /// The server deletes the durable after this long without a subscriber or request.
  std::chrono::milliseconds inactive_threshold{0};
  std::string_view description{};                    ///< for humans
  bool headers_only = false;                         ///< deliver headers (and Nats-Msg-Size), no payloads
  bool memory_storage = false;                       ///< keep the consumer's state in memory
  int replicas = 0;                                  ///< copies of the consumer's state (0: the stream's; at most 5)
  int sample_frequency = 0;                          ///< percent of acks sampled into advisories (1-100)
  std::uint64_t rate_limit_bps = 0;                  ///< push only: deliver at most this many bits per second
  int max_waiting = 0;                               ///< pull only: requests the server holds at once (default 512)
  int max_request_batch = 0;                         ///< pull only: the largest batch one request may ask for
  std::chrono::milliseconds max_request_expires{0};  ///< pull only: the longest expiry a request may ask for
  int max_request_max_bytes = 0;                     ///< pull only: the largest max_bytes a request may ask for
};

/// push_subscribe(): a durable push consumer, created or reconciled by natbus and bound by name.
struct PushOptions {
  /// Durable name (required). Letters, digits, '-' and '_'; no '.', spaces or wildcards.
  std::string_view durable{};
  /// Deliver group. Unset: NatsConfig::queue_group; "" : none.
  std::optional<std::string_view> queue{};
  /// Unset: NatsConfig::manual_ack.
  std::optional<bool> manual_ack{};
  /// true: create the durable when missing and recreate it when its settings differ from these.
  /// false: use an existing durable as it is (create it only when missing). Unset: NatsConfig::bind.
  std::optional<bool> bind{};
  std::optional<DeliverPolicy> deliver_policy{};        ///< where a new durable starts (unset: NatsConfig::deliver_policy)
  std::optional<std::chrono::milliseconds> ack_wait{};  ///< redelivery delay (unset: NatsConfig::ack_wait)
  std::optional<int> max_ack_pending{};                 ///< unacked messages at most (unset: NatsConfig::max_ack_pending)
  /// Deliveries before the server stops redelivering (-1 / unset: unlimited).
  std::optional<int> max_deliver{};
  /// Stream. Empty: NatsConfig::stream_name, else the stream whose subjects cover `subject`.
  std::string_view stream{};
  /// Handlers of this subscription running at the same time (1: in order, as in Python).
  int max_concurrency = 1;
  /// For DeliverPolicy::by_start_sequence / by_start_time.
  std::uint64_t start_sequence = 0;
  std::chrono::system_clock::time_point start_time{};  ///< with DeliverPolicy::by_start_time
  /// Idle heartbeat the server sends when there is nothing to deliver (0: none). Not with a queue.
  std::chrono::milliseconds idle_heartbeat{0};
  /// Server flow control (needs idle_heartbeat). Not with a queue.
  bool flow_control = false;
  /// How long to retry a durable still bound to a vanished subscriber. Unset: NatsConfig::bind_timeout.
  std::optional<std::chrono::milliseconds> bind_timeout{};
  /// Where a message goes when its handler fails on its last delivery (max_deliver): a copy with
  /// the original headers and x-dead-letter-* headers saying why. Empty: NatsConfig's.
  std::string_view dead_letter_subject{};
  /// Redelivery delay after a handler throws. Unset: NatsConfig::retry_backoff.
  std::optional<RetryBackoff> retry_backoff{};
  /// Explicit delays (the last repeats), copied at the call; empty: NatsConfig's.
  std::span<const std::chrono::milliseconds> retry_backoff_steps{};
  /// More of the consumer's configuration (backoff, headers_only, replicas, ...).
  ConsumerSettings consumer{};
};

/// pull_subscribe(): a durable pull consumer.
struct PullOptions {
  /// Stream. Empty: NatsConfig::stream_name, else the stream whose subjects cover `subject`.
  std::string_view stream{};
  /// Durable name (required).
  std::string_view durable{};
  /// Messages per pull request (the handler form keeps up to two requests in flight).
  int batch = 10;
  /// How long one pull request waits on the server for messages.
  std::chrono::milliseconds expires{5000};
  std::optional<bool> manual_ack{};                     ///< true: the handler acks (unset: NatsConfig::manual_ack)
  std::optional<bool> bind{};                           ///< bind to an existing durable as it is (unset: NatsConfig::bind)
  std::optional<DeliverPolicy> deliver_policy{};        ///< where a new durable starts (unset: NatsConfig::deliver_policy)
  std::optional<std::chrono::milliseconds> ack_wait{};  ///< redelivery delay (unset: NatsConfig::ack_wait)
  std::optional<int> max_ack_pending{};                 ///< unacked messages at most (unset: NatsConfig::max_ack_pending)
  std::optional<int> max_deliver{};                     ///< deliveries at most (unset: unlimited)
  /// Handlers running at the same time (handler form).
  int max_concurrency = 1;
  std::uint64_t start_sequence = 0;                    ///< with DeliverPolicy::by_start_sequence
  std::chrono::system_clock::time_point start_time{};  ///< with DeliverPolicy::by_start_time
  /// Server heartbeat while a pull request waits (0: automatic, 40 % of expires up to 5 s).
  /// A request whose heartbeats stop (server restart, reconnect) is replaced.
  std::chrono::milliseconds idle_heartbeat{0};
  /// As PushOptions::dead_letter_subject.
  std::string_view dead_letter_subject{};
  /// Redelivery delay after a handler throws. Unset: NatsConfig::retry_backoff.
  std::optional<RetryBackoff> retry_backoff{};
  /// Explicit delays (the last repeats), copied at the call; empty: NatsConfig's.
  std::span<const std::chrono::milliseconds> retry_backoff_steps{};
  /// More of the consumer's configuration (max_request_batch, backoff, headers_only, ...).
  ConsumerSettings consumer{};
};

/// ephemeral_push_subscribe(): a consumer without a name that the server removes once nobody
/// listens for `inactive_threshold`.
struct EphemeralOptions {
  std::chrono::milliseconds inactive_threshold{5000};  ///< the server deletes the consumer this long after the subscription ends
  std::string_view queue{};                            ///< queue group (empty: none)
  /// Unset: NatsConfig::manual_ack.
  std::optional<bool> manual_ack{};
  DeliverPolicy deliver_policy = DeliverPolicy::new_;   ///< where it starts
  std::optional<std::chrono::milliseconds> ack_wait{};  ///< redelivery delay (unset: NatsConfig::ack_wait)
  std::string_view stream{};                            ///< stream (empty: the one that captures the subject)
  int max_concurrency = 1;                              ///< handlers running at once
};

/// ordered_messages(): every message on a subject in stream order, through an ephemeral,
/// unacknowledged consumer that natbus recreates where it left off after a gap, missed
/// heartbeats, a reconnect or a server restart (ADR-17).
///   auto in = co_await bus.ordered_messages("orders.>", {.deliver_policy = natbus::DeliverPolicy::all});
struct OrderedOptions {
  std::string_view stream{};                           ///< stream (empty: the one that captures the subject)
  DeliverPolicy deliver_policy = DeliverPolicy::all;   ///< where reading starts
  std::uint64_t start_sequence = 0;                    ///< with DeliverPolicy::by_start_sequence
  std::chrono::system_clock::time_point start_time{};  ///< with DeliverPolicy::by_start_time
  bool headers_only = false;                           ///< headers (and Nats-Msg-Size) without payloads
  /// The server's heartbeat while nothing arrives; three missed ones recreate the consumer.
  std::chrono::milliseconds idle_heartbeat{5000};
};

/// subscribe_core / serve (plain NATS subscriptions: at-most-once, no acks, no durable).
struct CoreSubscribeOptions {
  /// Queue group: each message goes to one subscriber of the group. Empty: none.
  std::string_view queue{};
  /// Handlers of this subscription running at the same time (1: in order).
  int max_concurrency = 1;
};

/// reply_json / reply_text / reply_bytes.
struct ReplyOptions {
  /// true: answer on the request's x-final-to; false: on its x-reply-on (progress).
  bool final = false;
  /// Send here instead of the request's headers.
  std::string_view subject{};
  std::string_view sender{};  ///< x-sender (empty: NatsConfig::name)
  /// Default: the request's x-message-type.
  std::string_view message_type{};
  std::initializer_list<Header> headers{};  ///< extra headers, literal (headers built at run time: BusMessage::set_header)
  bool compress = false;                    ///< gzip the payload (content-encoding: gzip)
  /// Publish through JetStream and wait for the PubAck (true) or as a plain NATS message (false).
  bool jetstream = false;
};

}  // namespace natbus
