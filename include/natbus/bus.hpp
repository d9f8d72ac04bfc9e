// NatsBus: the connection to NATS JetStream, publishing and consuming as coroutines.
//
//   natbus::Task<void> service() {
//     natbus::NatsBus bus{cfg};
//     co_await bus.connect();
//     auto push = co_await bus.push_subscribe("test.stream", on_push, {.durable = "orders_push"});
//     auto msg = natbus::BusMessage::from_json("test.stream", {{"hello", "world"}});
//     natbus::PubAck ack = co_await bus.publish(std::move(msg));
//     co_await natbus::shutdown_signal();
//     co_await bus.close();   // drains in-flight handlers and acks
//   }
//
// Everything here must be used from coroutines running under natbus::run(), on its thread.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "natbus/config.hpp"
#include "natbus/detail/handlers.hpp"
#include "natbus/detail/key.hpp"
#include "natbus/error.hpp"
#include "natbus/message.hpp"
#include "natbus/metrics.hpp"
#include "natbus/options.hpp"
#include "natbus/task.hpp"

namespace natbus {

class NatsBus;
namespace detail {
class BusCore;
/// The state behind a NatsBus (natbus' own code and tests; not API).
[[nodiscard]] BusCore* bus_core_of(const NatsBus& bus) noexcept;
}  // namespace detail

/// The state of the connection under a NatsBus (for health and readiness checks).
enum class ConnectionStatus { idle, connecting, connected, reconnecting, closing, closed };

/// The server's acknowledgement of a JetStream publish.
/// The stream and domain names are views into natbus' table of names, kept for the life of the
/// process (a service knows few streams), so a PubAck never dangles and costs no allocation.
struct PubAck {
  std::string_view stream{};   ///< the stream that stored the message
  std::uint64_t sequence = 0;  ///< its sequence in the stream
  /// True when the server (Nats-Msg-Id) or natbus (dedupe_window) recognized a duplicate and
  /// did not store the message again.
  bool duplicate = false;
  std::string_view domain{};  ///< the JetStream domain (empty: none)
};

/// A callable taking ReceivedMessage& and returning Task<void>: the handler of push, pull,
/// ephemeral and core subscriptions, as typed handlers take (T, ReceivedMessage&) and serve()
/// handlers ReceivedMessage&. The message lives until the handler's task has finished. The
/// older form, taking ReceivedMessage by value, still works (deprecated: the by-reference form
/// is the one convention).
template <class H>
concept MessageHandler = (std::invocable<std::decay_t<H>&, ReceivedMessage&> &&
                          std::same_as<std::invoke_result_t<std::decay_t<H>&, ReceivedMessage&>, Task<void>>) ||
                         (std::invocable<std::decay_t<H>&, ReceivedMessage> &&
                          std::same_as<std::invoke_result_t<std::decay_t<H>&, ReceivedMessage>, Task<void>>);

/// A callable taking (T, ReceivedMessage&) and returning Task<void>: a typed handler, for
/// push_subscribe<T> / pull_subscribe<T>. T is any type with a nlohmann from_json.
template <class H, class T>
concept TypedMessageHandler = std::invocable < std::decay_t<H>
&, T, ReceivedMessage& > &&std::same_as<std::invoke_result_t<std::decay_t<H>&, T, ReceivedMessage&>, Task<void>>;

/// A callable taking ReceivedMessage& and returning Task<nlohmann::json>: a serve() handler.
template <class H>
concept ServeHandler = std::invocable < std::decay_t<H>
&, ReceivedMessage& >
       &&std::same_as<std::invoke_result_t<std::decay_t<H>&, ReceivedMessage&>, Task<typename detail::needs_natbus_json_hpp<H>::json>>;

/// The PubAck of a publish_async(), to be awaited later (once). Move-only.
class [[nodiscard]] PublishFuture {
 public:
  PublishFuture() noexcept = default;
  /// natbus' own code: the future of one publish.
  PublishFuture(detail::LibraryKey /*key*/, detail::PubSlot* slot) noexcept : slot_(slot) {}
  /// Moves the future (the source becomes empty).
  PublishFuture(PublishFuture&& other) noexcept : slot_(std::exchange(other.slot_, nullptr)) {}
  PublishFuture& operator=(PublishFuture&& other) noexcept;  ///< Moves the future (the source becomes empty).
  PublishFuture(const PublishFuture&) = delete;
  PublishFuture& operator=(const PublishFuture&) = delete;
  ~PublishFuture();

  /// True once the PubAck (or the error) has arrived.
  [[nodiscard]] bool ready() const noexcept;
  /// True while it refers to a publish (not moved from or awaited).
  [[nodiscard]] bool valid() const noexcept { return slot_ != nullptr; }

  /// What `co_await future` uses.
  class Awaiter : detail::CancelNode {
   public:
    Awaiter(const Awaiter&) = delete;
    Awaiter& operator=(const Awaiter&) = delete;
    ~Awaiter();
    /// True when the PubAck (or error) is already there.
    [[nodiscard]] bool await_ready() const noexcept;
    template <class P>
    /// Waits for the PubAck (a with_timeout() around it interrupts the wait).
    bool await_suspend(std::coroutine_handle<P> h) noexcept {
      return suspend(h, detail::scope_of(h));
    }
    /// The PubAck, or the publish's exception.
    PubAck await_resume();

   private:
    friend class PublishFuture;
    explicit Awaiter(detail::PubSlot* slot) noexcept : detail::CancelNode(&Awaiter::on_cancel), slot_(slot) {}
    bool suspend(std::coroutine_handle<> h, detail::CancelScope* scope) noexcept;
    static void on_cancel(detail::CancelNode* node) noexcept;
    detail::PubSlot* slot_;
    bool suspended_ = false;
    bool cancelled_ = false;
  };
  /// `PubAck ack = co_await future;` Throws the publish's error (TimeoutError, NoStreamError, ...).
  Awaiter operator co_await() && noexcept { return Awaiter(std::exchange(slot_, nullptr)); }
  /// `PubAck ack = co_await future;` (an lvalue future is emptied).
  Awaiter operator co_await() & noexcept { return Awaiter(std::exchange(slot_, nullptr)); }

 private:
  detail::PubSlot* slot_ = nullptr;
};

class Subscription;
namespace detail {
/// The core behind a Subscription (natbus' own code; not API).
[[nodiscard]] SubCore* sub_core_of(const Subscription& sub) noexcept;
}  // namespace detail

/// A live subscription. Destroying it (or close()) stops delivery; it never deletes a durable.
/// Handlers already running finish on their own. Move-only.
class [[nodiscard("a Subscription stops delivery when it is destroyed: keep it for as long as messages should arrive")]] Subscription {
 public:
  Subscription() noexcept = default;
  /// natbus' own code: wraps a subscription core.
  Subscription(detail::LibraryKey key, detail::SubCore * core) noexcept;
  /// Moves the subscription (the source becomes empty).
  Subscription(Subscription && other) noexcept : core_(std::exchange(other.core_, nullptr)) {}
  Subscription& operator=(Subscription&& other) noexcept;  ///< Moves the subscription; the one it replaces stops.
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;
  ~Subscription();

  /// Stops delivery now: no handler starts after this returns; messages received but not
  /// started are nak'ed so that they are redelivered at once.
  void unsubscribe() noexcept;
  /// unsubscribe(), then waits until the handlers this subscription started have finished.
  Task<void> close();

  /// True while messages are delivered.
  [[nodiscard]] bool active() const noexcept;
  /// The subject (filter) subscribed to.
  [[nodiscard]] std::string_view subject() const noexcept;
  /// The stream (empty for core subscriptions).
  [[nodiscard]] std::string_view stream() const noexcept;
  /// The durable consumer (empty when ephemeral or core).
  [[nodiscard]] std::string_view durable() const noexcept;
  /// The queue group (empty: none).
  [[nodiscard]] std::string_view queue() const noexcept;
  /// Messages handed to handlers so far.
  [[nodiscard]] std::uint64_t delivered() const noexcept;

 private:
  friend detail::SubCore* detail::sub_core_of(const Subscription& sub) noexcept;
  detail::SubCore* core_ = nullptr;
};

class MessageStream;
namespace detail {
struct StreamHold;
/// Builds a MessageStream (natbus' own code; not API).
MessageStream make_message_stream(StreamHold* hold, Subscription sub) noexcept;
}  // namespace detail

/// Messages of a push or pull consumer as an async sequence (NatsBus::messages /
/// pull_messages). Move-only; use it on the loop thread.
///   auto msgs = co_await bus.messages("orders.*", {.durable = "orders"});
///   while (auto m = co_await msgs.next()) { ...; co_await m.ack(); }
/// The reader acks (manual ack): a message is acked, nak'ed or termed by whoever reads it.
class [[nodiscard("a MessageStream stops delivery when it is destroyed: keep it and read it with next()")]] MessageStream {
 public:
  MessageStream() noexcept = default;
  /// Moves the stream (the source becomes empty).
  MessageStream(MessageStream && other) noexcept : hold_(std::exchange(other.hold_, nullptr)), sub_(std::move(other.sub_)) {}
  MessageStream& operator=(MessageStream&& other) noexcept;  ///< Moves the stream; the one it replaces stops.
  MessageStream(const MessageStream&) = delete;
  MessageStream& operator=(const MessageStream&) = delete;
  ~MessageStream();

  /// The next message, waiting for one; an empty ReceivedMessage (false) once the stream has
  /// ended: close(), the subscription stopped, or the bus closed.
  Task<ReceivedMessage> next();
  /// Ends the stream: stops the subscription, naks the buffered messages (redelivered at once),
  /// and waits for the subscription to finish.
  Task<void> close();
  /// Messages received and waiting for next() (at most the buffer size given).
  [[nodiscard]] std::size_t buffered() const noexcept;
  /// The subscription behind the stream (metrics, subject...).
  [[nodiscard]] const Subscription& subscription() const noexcept { return sub_; }

 private:
  friend MessageStream detail::make_message_stream(detail::StreamHold * hold, Subscription sub) noexcept;
  MessageStream(detail::StreamHold * hold, Subscription sub) noexcept : hold_(hold), sub_(std::move(sub)) {}
  detail::StreamHold* hold_ = nullptr;  // a reference to the buffer the subscription fills
  Subscription sub_;
};

/// A pull consumer without a handler: fetch messages when you want them.
///   auto sub = co_await bus.pull_subscribe("orders.*", {.durable = "orders_pull"});
///   for (auto& m : co_await sub.fetch(10, 2s)) { ...; co_await m.ack(); }
class [[nodiscard("a PullSubscription stops when it is destroyed: keep it and call fetch() on it")]] PullSubscription {
 public:
  PullSubscription() noexcept = default;
  /// natbus' own code: wraps a pull consumer core.
  PullSubscription(detail::LibraryKey key, detail::PullCore * core) noexcept;
  /// Moves the subscription (the source becomes empty).
  PullSubscription(PullSubscription && other) noexcept : core_(std::exchange(other.core_, nullptr)) {}
  PullSubscription& operator=(PullSubscription&& other) noexcept;  ///< Moves the subscription; the one it replaces stops.
  PullSubscription(const PullSubscription&) = delete;
  PullSubscription& operator=(const PullSubscription&) = delete;
  ~PullSubscription();

  /// Up to `batch` messages; returns what arrived within `timeout` (maybe none). Fetches on
  /// one subscription run one after the other.
  Task<std::vector<ReceivedMessage>> fetch(int batch, std::chrono::milliseconds timeout);
  /// Up to `batch` messages that are available right now (returns at once, maybe empty).
  Task<std::vector<ReceivedMessage>> fetch_no_wait(int batch);
  /// Stops the subscription (the durable stays).
  void unsubscribe() noexcept;
  /// Stops fetching; unacked fetched messages stay with the server (redelivered after ack_wait).
  Task<void> close();

  /// True until close() or the end of the bus.
  [[nodiscard]] bool active() const noexcept;
  /// The stream of the consumer.
  [[nodiscard]] std::string_view stream() const noexcept;
  /// The durable consumer's name.
  [[nodiscard]] std::string_view durable() const noexcept;

 private:
  detail::PullCore* core_ = nullptr;
};

struct StreamInfo;         // <natbus/stream_info.hpp>
struct ConsumerInfo;       // <natbus/stream_info.hpp>
struct AccountInfo;        // <natbus/stream_info.hpp>
struct PurgeOptions;       // <natbus/stream_info.hpp>
struct StreamConfig;       // <natbus/stream_info.hpp>
class Service;             // <natbus/service.hpp>
struct KeyValueConfig;     // <natbus/kv.hpp>
class KeyValue;            // <natbus/kv.hpp>
struct ObjectStoreConfig;  // <natbus/object_store.hpp>
class ObjectStore;         // <natbus/object_store.hpp>
struct ServiceConfig;      // <natbus/service.hpp>

/// A connection to NATS with JetStream: publishing, consumers, core NATS, request/reply and stream management. Use it on the loop thread
/// that created it (see LoopThread and BlockingBus for other threads). Move-only.
class NatsBus {
 public:
  /// Validates the configuration (ConfigError naming the field); does not connect.
  explicit NatsBus(NatsConfig config);
  /// Closes the bus if it is still open: subscriptions stop, the connection is flushed and
  /// closed (bounded by drain_timeout); running handlers are not waited for. Prefer
  /// `co_await close()`.
  ~NatsBus();
  /// Moves the bus (the source becomes empty).
  NatsBus(NatsBus&& other) noexcept;
  NatsBus& operator=(NatsBus&& other) noexcept;  ///< Moves the bus; the one it replaces is closed.
  NatsBus(const NatsBus&) = delete;
  NatsBus& operator=(const NatsBus&) = delete;

  /// Connects, checks JetStream, creates/updates the stream when configured and logs its state.
  /// Throws ConnectionError (no server reachable), AuthError (credentials refused),
  /// JetStreamNotEnabledError, or JetStreamError (stream creation).
  Task<void> connect();
  /// Drains: subscriptions stop, running handlers finish and their acks and pending publishes
  /// reach the server (bounded by NatsConfig::drain_timeout), then the connection closes.
  Task<void> close();
  /// True while connected (status() is `connected`).
  [[nodiscard]] bool connected() const noexcept;
  /// Finer than connected(): `reconnecting` while cnats re-establishes a lost connection
  /// (publishes are buffered, acks fail with ConnectionError). A pod is ready when `connected`.
  [[nodiscard]] ConnectionStatus status() const noexcept;
  /// Completes as soon as status() differs from `seen` (at once if it already does), or after
  /// `timeout`, with status() then. Waits for disconnects, reconnects and the end without polling:
  ///   auto s = bus.status();
  ///   while (s != natbus::ConnectionStatus::closed) s = co_await bus.status_changed(s, 1h);
  [[nodiscard]] Task<ConnectionStatus> status_changed(ConnectionStatus seen,
                                                      std::chrono::milliseconds timeout = std::chrono::milliseconds::max());
  /// Why the bus closed by itself (it gave up reconnecting after max_reconnect_attempts); empty
  /// while it has not, and after close().
  [[nodiscard]] std::string_view closed_reason() const noexcept;
  /// Connections the bus opened again after losing one (or leaving a lame-duck server).
  [[nodiscard]] std::uint64_t reconnects() const noexcept;
  /// The validated configuration.
  [[nodiscard]] const NatsConfig& config() const noexcept;

  // ---- publishing ----

  /// JetStream publish; waits for the PubAck. Throws NoStreamError, TimeoutError (outcome
  /// unknown: retry with the same msg_id), PayloadTooLargeError, ClosedError...
  Task<PubAck> publish(BusMessage msg);
  /// publish(BusMessage::from_json(subject, body, options)). Needs <natbus/json.hpp>.
  template <class Tag = detail::JsonTag>
  requires std::same_as<Tag, detail::JsonTag> Task<PubAck> publish_json(std::string_view subject,
                                                                        const typename detail::needs_natbus_json_hpp<Tag>::json& body,
                                                                        const MessageOptions& options = {}) {
    return publish(BusMessage::from_json(subject, body, options));
  }
  /// publish(BusMessage::from_bytes(subject, data, options)).
  Task<PubAck> publish_bytes(std::string_view subject, std::span<const std::byte> data, const MessageOptions& options = {});
  /// publish(BusMessage::from_bytes(subject, data, options)).
  Task<PubAck> publish_bytes(std::string_view subject, std::string_view data, const MessageOptions& options = {});
  /// Sends at once and returns a future of the PubAck. Suspends (never blocks) while
  /// NatsConfig::max_pending_publishes acks are outstanding.
  ///   auto f = co_await bus.publish_async(std::move(msg));  ...  PubAck a = co_await std::move(f);
  Task<PublishFuture> publish_async(BusMessage msg);
  /// Waits until every publish_async() so far has its PubAck or error (TimeoutError after
  /// `timeout`). Errors of individual publishes are reported through their futures.
  Task<void> publish_async_complete(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  /// Number of publishes waiting for their PubAck.
  [[nodiscard]] std::size_t pending_publishes() const noexcept;

  // ---- consuming ----

  /// Durable push consumer calling `handler` per message (see PushOptions).
  template <class H>
  requires MessageHandler<H> Task<Subscription> push_subscribe(std::string_view subject, H&& handler, const PushOptions& options = {}) {
    return push_subscribe_erased(subject, detail::make_handler(std::forward<H>(handler)), options);
  }
  /// Durable pull consumer running a fetch loop that calls `handler` per message; the next pull
  /// is requested while the current batch is handled (at most two batches buffered).
  template <class H>
  requires MessageHandler<H> Task<Subscription> pull_subscribe(std::string_view subject, H&& handler, const PullOptions& options = {}) {
    return pull_subscribe_erased(subject, detail::make_handler(std::forward<H>(handler)), options);
  }
  /// Typed handlers: the payload is decoded into T (any type with a nlohmann from_json) before
  /// the handler runs, and the handler gets (T, ReceivedMessage&); acks work as above. A payload
  /// that cannot be decoded is a poison message: it is logged (sub_poison_message, with subject,
  /// sequence and the decode error), terminated (never redelivered), and published to the
  /// dead-letter subject, when one is configured, with its headers and the reason.
  ///   auto on_order = [](Order o, natbus::ReceivedMessage& m) -> natbus::Task<void> { ...; co_await m.ack(); };
  ///   auto sub = co_await bus.push_subscribe<Order>("orders.created", on_order, {.durable = "billing"});
  template <class T, class H>
  requires TypedMessageHandler<H, T> Task<Subscription> push_subscribe(std::string_view subject, H&& handler,
                                                                       const PushOptions& options = {}) {
    return push_subscribe_erased(subject, detail::make_typed_handler<T>(std::forward<H>(handler)), options);
  }
  template <class T, class H>
  /// Typed pull consumer (see the typed push_subscribe()).
  requires TypedMessageHandler<H, T> Task<Subscription> pull_subscribe(std::string_view subject, H&& handler,
                                                                       const PullOptions& options = {}) {
    return pull_subscribe_erased(subject, detail::make_typed_handler<T>(std::forward<H>(handler)), options);
  }
  /// The push consumer's messages as an async sequence with a buffer of `buffer` messages
  /// (default 256): when it is full, delivery waits for next() (backpressure reaches the
  /// server through max_ack_pending). The reader acks; manual_ack = false is rejected.
  Task<MessageStream> messages(std::string_view subject, const PushOptions& options = {}, std::size_t buffer = 256);
  /// The same over a pull consumer (the next pull is requested when the buffer has room).
  Task<MessageStream> pull_messages(std::string_view subject, const PullOptions& options = {}, std::size_t buffer = 256);
  /// Every message on `subject` in stream order, from where `options` says, through an ordered
  /// consumer (ADR-17): ephemeral, no acks (ack() is an InvalidArgument), flow-controlled.
  /// A gap, missed heartbeats, a reconnect or a server restart recreate the consumer after the
  /// last message read, so the reader sees every message once and in order. next() is empty
  /// after close(), the end of the bus, or when the stream is deleted.
  ///   auto in = co_await bus.ordered_messages("orders.>");
  ///   while (auto m = co_await in.next()) std::cout << m.metadata()->stream_sequence << '\n';
  Task<MessageStream> ordered_messages(std::string_view subject, const OrderedOptions& options = {}, std::size_t buffer = 256);
  /// Durable pull consumer to fetch() from.
  Task<PullSubscription> pull_subscribe(std::string_view subject, const PullOptions& options = {});
  /// Ephemeral push consumer; the server deletes it `inactive_threshold` after the
  /// subscription closes.
  template <class H>
  requires MessageHandler<H> Task<Subscription> ephemeral_push_subscribe(std::string_view subject, H&& handler,
                                                                         const EphemeralOptions& options = {}) {
    return ephemeral_subscribe_erased(subject, detail::make_handler(std::forward<H>(handler)), options);
  }

  // ---- core NATS (no JetStream: at-most-once, no acks, nothing stored) ----

  /// Publishes a plain NATS message (with natbus' headers); written to the socket at the end of
  /// this loop iteration. Completes at once; nothing confirms delivery.
  Task<void> publish_core(BusMessage msg);
  /// Plain NATS subscription calling `handler` per message (wildcards allowed). Messages that
  /// arrive while no subscriber listens are lost; ack() is not needed (and not possible).
  template <class H>
  requires MessageHandler<H> Task<Subscription> subscribe_core(std::string_view subject, H&& handler,
                                                               const CoreSubscribeOptions& options = {}) {
    return subscribe_core_erased(subject, detail::make_handler(std::forward<H>(handler)), options);
  }
  /// Sends `msg` as a request and returns the first reply. TimeoutError after `timeout`,
  /// NoRespondersError when nobody listens on the subject, RemoteError when a serve() handler
  /// threw. The request is written at the end of the loop iteration (no 1 ms flusher delay).
  Task<ReceivedMessage> request(BusMessage msg, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  /// Answers requests on `subject`: the handler's JSON goes back to the requester with the
  /// request's x-correlation-id and x-trace-id; a handler that throws answers with an x-error
  /// header (request() turns it into a RemoteError).
  ///   auto on_price = [](natbus::ReceivedMessage& m) -> natbus::Task<nlohmann::json> { co_return {{"price", 12.5}}; };
  ///   auto svc = co_await bus.serve("prices.get", on_price, {.queue = "prices"});
  template <class H>
  requires ServeHandler<H> Task<Subscription> serve(std::string_view subject, H&& handler, const CoreSubscribeOptions& options = {}) {
    return subscribe_core_erased(subject, detail::make_serve_handler(std::forward<H>(handler)), options, "serve");
  }

  /// Starts a NATS service (ADR-32) that `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` discover;
  /// add its endpoints on the returned Service. Needs <natbus/service.hpp>. InvalidArgument for
  /// a bad name or version (semantic versioning), naming the value.
  Task<Service> add_service(const ServiceConfig& config);

  // ---- replies (on the request's x-reply-on, or x-final-to with .final = true) ----

  /// Replies with a JSON body (on the request's x-reply-on, or x-final-to with `.final = true`).
  /// Needs <natbus/json.hpp>.
  template <class Tag = detail::JsonTag>
  requires std::same_as<Tag, detail::JsonTag> Task<void> reply_json(const ReceivedMessage& request,
                                                                    const typename detail::needs_natbus_json_hpp<Tag>::json& body,
                                                                    const ReplyOptions& options = {}) {
    return reply_json_text(request, detail::needs_natbus_json_hpp<Tag>::dump("reply_json", request.reply_on(), body), options);
  }
  /// Replies with a text body.
  Task<void> reply_text(const ReceivedMessage& request, std::string_view text, const ReplyOptions& options = {});
  /// Replies with a binary body.
  Task<void> reply_bytes(const ReceivedMessage& request, std::span<const std::byte> data, const ReplyOptions& options = {});

  /// Round trip to the server: completes when everything written before (acks, publishes,
  /// replies) has reached it. TimeoutError after `timeout`.
  Task<void> flush(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // ---- JetStream management ----

  /// Creates the stream, or checks an existing one: subjects it lacks are added when
  /// `add_missing_subjects`, otherwise reported as a JetStreamError. Returns its state.
  /// Build the subject list before co_await:  std::vector<std::string> s{"orders.>"};
  Task<StreamInfo> create_stream(std::string_view name, std::span<const std::string> subjects, const StreamOptions& options = {},
                                 bool add_missing_subjects = false);
  /// Creates the stream with its whole configuration. An existing stream of that name with the
  /// same configuration is returned as it is; one configured otherwise is a JetStreamError with
  /// the server's text. What natbus can see is wrong (a negative limit, an empty subject,
  /// replicas above 5, a mirror with subjects, ...) is an InvalidArgument, with no round trip.
  ///   const natbus::StreamSource from[] = {{.name = "EU"}, {.name = "US", .filter_subject = "orders.us.>"}};
  ///   co_await bus.create_stream({.name = "ALL", .sources = from});
  Task<StreamInfo> create_stream(const StreamConfig& config);
  /// Replaces an existing stream's configuration with `config` (NoStreamError when there is
  /// none): fields left alone go back to the server's defaults, so give the whole configuration.
  /// nats-server 2.9 never changes storage, retention, max_consumers, mirror or republish, nor
  /// turns sealed, deny_delete or deny_purge off: such an update is a JetStreamError with its text.
  Task<StreamInfo> update_stream(const StreamConfig& config);

  /// The stream's configuration and state (NoStreamError when it does not exist).
  Task<StreamInfo> stream_info(std::string_view stream);
  /// Deletes the stream and everything in it.
  Task<void> delete_stream(std::string_view stream);
  /// Removes every message of the stream.
  Task<void> purge_stream(std::string_view stream);
  /// Removes the messages `options` selects: on a subject, all but the newest `keep`, or below
  /// `sequence`. Returns how many went.
  ///   co_await bus.purge_stream("ORDERS", {.subject = "orders.eu", .keep = 10});
  Task<std::uint64_t> purge_stream(std::string_view stream, const PurgeOptions& options);
  /// The message stored at `sequence`, with every ReceivedMessage accessor (subject, headers,
  /// payload; metadata() gives its stream, sequence and time; nothing to ack). Direct get when
  /// the stream allows it, the API otherwise. NotFoundError when there is none.
  Task<ReceivedMessage> get_message(std::string_view stream, std::uint64_t sequence);
  /// The newest message stored on `subject` (no wildcards), as get_message.
  Task<ReceivedMessage> get_last_message(std::string_view stream, std::string_view subject);
  /// Removes one message (NotFoundError when there is none at `sequence`); `secure_erase`
  /// overwrites its bytes on disk too.
  Task<void> delete_message(std::string_view stream, std::uint64_t sequence, bool secure_erase = false);
  /// Names of every stream (of those capturing `subject_filter` when given), through as many
  /// pages of the server's answer as there are.
  Task<std::vector<std::string>> stream_names(std::string_view subject_filter = {});
  /// Configuration and state of every stream (capturing `subject_filter` when given), paged.
  Task<std::vector<StreamInfo>> streams(std::string_view subject_filter = {});
  /// Names of every consumer of the stream, paged.
  Task<std::vector<std::string>> consumer_names(std::string_view stream);
  /// Configuration and state of every consumer of the stream, paged.
  Task<std::vector<ConsumerInfo>> consumers(std::string_view stream);
  /// The account's JetStream usage, limits and domain.
  Task<AccountInfo> account_info();
  /// The consumer's configuration and state (NotFoundError when missing).
  Task<ConsumerInfo> consumer_info(std::string_view stream, std::string_view consumer);
  /// Deletes the consumer.
  Task<void> delete_consumer(std::string_view stream, std::string_view consumer);

  // ---- Key-Value store (ADR-8; needs <natbus/kv.hpp>) ----

  /// Creates the bucket, or binds to it when it exists with this configuration (a JetStreamError
  /// when it exists otherwise). InvalidArgument for a bad name, history outside 1-64, ...
  ///   natbus::KeyValue kv = co_await bus.key_value({.bucket = "config", .history = 5});
  Task<KeyValue> key_value(const KeyValueConfig& config);
  /// Binds to an existing bucket (NotFoundError when there is none).
  Task<KeyValue> key_value(std::string_view bucket);
  /// Deletes the bucket and every key in it (NotFoundError when there is none).
  Task<void> delete_key_value(std::string_view bucket);

  // ---- Object Store (ADR-20; needs <natbus/object_store.hpp>) ----

  /// Creates the bucket, or binds to it when it exists with this configuration (a JetStreamError
  /// when it exists otherwise). InvalidArgument for a bad name, a negative ttl, ...
  ///   natbus::ObjectStore store = co_await bus.object_store({.bucket = "reports"});
  Task<ObjectStore> object_store(const ObjectStoreConfig& config);
  /// Binds to an existing bucket (NotFoundError when there is none).
  Task<ObjectStore> object_store(std::string_view bucket);
  /// Deletes the bucket and every object in it (NotFoundError when there is none).
  Task<void> delete_object_store(std::string_view bucket);

  // ---- metrics ----

  /// Counters and latency histograms: publishing, acknowledgements, and each live subscription.
  [[nodiscard]] MetricsSnapshot metrics() const;
  /// metrics() as Prometheus text exposition (serve it on your /metrics endpoint).
  [[nodiscard]] std::string prometheus_metrics() const { return to_prometheus(metrics()); }

 private:
  friend detail::BusCore* detail::bus_core_of(const NatsBus& bus) noexcept;
  Task<void> reply_json_text(const ReceivedMessage& request, std::string json_text, const ReplyOptions& options);
  Task<Subscription> push_subscribe_erased(std::string_view subject, detail::HandlerPtr handler, const PushOptions& options);
  Task<Subscription> pull_subscribe_erased(std::string_view subject, detail::HandlerPtr handler, const PullOptions& options);
  Task<Subscription> subscribe_core_erased(std::string_view subject, detail::HandlerPtr handler, const CoreSubscribeOptions& options,
                                           std::string_view op = "subscribe_core");
  Task<Subscription> ephemeral_subscribe_erased(std::string_view subject, detail::HandlerPtr handler, const EphemeralOptions& options);
  detail::BusCore* core_ = nullptr;
};

}  // namespace natbus
