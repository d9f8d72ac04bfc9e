// natbus messages: BusMessage (what you publish) and ReceivedMessage (what handlers get).
//
// The headers are the Python library's wire contract, byte for byte:
//   content-type      application/json | text/plain; charset=utf-8 | application/octet-stream
//   content-encoding  gzip (when compress = true; receivers decompress transparently)
//   x-trace-id        new UUIDv4 unless given      x-correlation-id  given, else new UUIDv4
//   x-sender          when given                   x-sent-at         2026-11-26T18:21:33.123+00:00
//   x-message-type    when given                   x-reply-on / x-final-to  when given
// plus Nats-Msg-Id (server-side deduplication) when msg_id is given.
//
//   auto msg = natbus::BusMessage::from_json("orders.created", {{"id", 42}}, {.sender = "orders-svc"});
//   auto jpeg = natbus::BusMessage::from_bytes("images.raw", bytes,
//                                              {.headers = {{"content-type", "image/jpeg"}}});
#pragma once

#include <array>
#include <chrono>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "natbus/detail/key.hpp"
#include "natbus/task.hpp"

namespace natbus {

class BusMessage;
struct MessageOptions;

namespace detail {
/// Defined by <natbus/json.hpp>: JSON payloads, typed handlers and serve() need nlohmann's
/// header, which the other natbus headers leave out (they do not even name nlohmann::json). A
/// compiler error about this incomplete type means: include <natbus/json.hpp>.
template <class T>
struct needs_natbus_json_hpp;
/// The template argument of natbus' own JSON overloads (they are templates only so that the
/// type nlohmann::json is looked up where they are used).
struct JsonTag {};
/// True for nlohmann::json (<natbus/json.hpp> says so).
template <class T>
inline constexpr bool is_nlohmann_json = false;
/// A message whose payload is JSON text, serialized already (natbus' own code; not API).
BusMessage json_text_message(std::string_view op, std::string_view subject, std::string_view json_text, const MessageOptions& options);
}  // namespace detail

/// A header given inline: `{"content-type", "image/jpeg"}`.
struct Header {
  std::string_view name{};   ///< header name
  std::string_view value{};  ///< header value
};

/// W3C trace context (the `traceparent` header, https://www.w3.org/TR/trace-context/): the
/// trace a message belongs to and the span that sent it. Plain data, trivially copyable.
struct TraceContext {
  std::array<char, 32> trace_id{};  ///< lowercase hex; all '\0' when there is no trace
  std::array<char, 16> span_id{};   ///< lowercase hex of the sending span; all '0' when unknown
  std::uint8_t flags = 1;           ///< trace-flags (bit 0: sampled)

  /// True when it carries a trace id.
  [[nodiscard]] bool valid() const noexcept { return trace_id[0] != '\0'; }
  /// True when the sending span is known (the context came from a traceparent).
  [[nodiscard]] bool has_span() const noexcept { return valid() && span_id_hex().find_first_not_of('0') != std::string_view::npos; }
  /// The 32-hex-digit trace id.
  [[nodiscard]] std::string_view trace_id_hex() const noexcept {
    return valid() ? std::string_view(trace_id.data(), 32) : std::string_view{};
  }
  /// The 16-hex-digit span id.
  [[nodiscard]] std::string_view span_id_hex() const noexcept {
    return valid() ? std::string_view(span_id.data(), 16) : std::string_view{};
  }
  /// The trace id as natbus' x-trace-id writes it (UUID-shaped, 8-4-4-4-12); empty if invalid.
  [[nodiscard]] std::string trace_uuid() const;
  /// "00-<trace id>-<span id>-<flags>"; empty if invalid.
  [[nodiscard]] std::string traceparent() const;
  /// Reads a `traceparent` value; nullopt when it is malformed (W3C: then ignore it).
  [[nodiscard]] static std::optional<TraceContext> from_traceparent(std::string_view value) noexcept;
  /// A context from an x-trace-id that is a UUID or 32 hex digits (span unknown); nullopt else.
  [[nodiscard]] static std::optional<TraceContext> from_trace_id(std::string_view x_trace_id) noexcept;
};

/// MessageOptions::traceparent.
enum class TraceParent : std::uint8_t {
  /// Written when tracing is in use: trace hooks are installed (set_trace_hooks), or the
  /// message continues a parent that came with a traceparent. Otherwise the message carries
  /// only the Python library's x-trace-id, byte for byte.
  automatic,
  always,
  never,
};

/// Options of the BusMessage constructors (Python keyword arguments). Every member is a view or
/// a scalar: the constructor copies what it needs, so a temporary MessageOptions is always safe.
/// Headers known only at run time go on the message afterwards (BusMessage::set_header).
struct MessageOptions {
  std::string_view sender{};          ///< x-sender
  std::string_view correlation_id{};  ///< x-correlation-id (default: a new UUIDv4)
  /// Extra headers; they override the defaults (e.g. content-type).
  std::initializer_list<Header> headers{};
  std::string_view content_type{};  ///< from_bytes' content-type (default application/octet-stream)
  bool compress = false;            ///< gzip the payload, set content-encoding: gzip
  std::string_view reply_on{};      ///< x-reply-on: where progress replies go
  std::string_view final_to{};      ///< x-final-to: where the final reply goes
  std::string_view message_type{};  ///< x-message-type
  bool ensure_trace = true;         ///< write x-trace-id (a new UUIDv4 unless trace_id is given)
  std::string_view trace_id{};      ///< x-trace-id to continue an existing trace
  /// Continue this trace (typically `received.trace_context()` inside a handler): x-trace-id
  /// and traceparent carry its trace id and flags. trace_id, when also given, wins.
  TraceContext parent{};
  /// When to write a W3C `traceparent` next to x-trace-id (same trace id, a new span id; only
  /// when the trace id is a UUID or 32 hex digits, which have a W3C form).
  TraceParent traceparent = TraceParent::automatic;
  std::string_view msg_id{};  ///< Nats-Msg-Id: the server drops duplicates in its window
  /// false: write none of natbus' own headers (content-type, x-*), only msg_id and `headers`;
  /// a bare NATS message as other clients send it (a message without any header goes as PUB).
  bool natbus_headers = true;
};

// GCC 12 destroys an aggregate temporary inside a co_await expression twice; option structs
// written inline at call sites (`co_await bus.publish(..., {.parent = m.trace_context()})`)
// are safe only while they have nothing to destroy.
static_assert(std::is_trivially_destructible_v<TraceContext> && std::is_trivially_destructible_v<MessageOptions>);

/// Byte-like element types accepted by from_bytes().
template <class T>
concept ByteLike = std::same_as<T, std::byte> || std::same_as<T, char> || std::same_as<T, unsigned char> || std::same_as<T, signed char> ||
    std::same_as<T, std::uint8_t>;

/// A contiguous range of ByteLike elements (std::ranges::data and size apply).
template <class R>
concept ByteRange = requires(const R& r) {
  std::ranges::data(r);
  std::ranges::size(r);
}
&&ByteLike<std::remove_cv_t<std::remove_pointer_t<decltype(std::ranges::data(std::declval<const R&>()))>>>;

/// A message to publish: subject, headers, payload (already compressed when asked).
///
/// The message is one buffer laid out as it goes on the wire (subject, the NATS/1.0 header
/// block, the payload), so publishing it copies it once into cnats and allocates nothing else.
/// Accessors return views into that buffer: they stay valid until the message is changed,
/// moved from or destroyed.
class BusMessage {
 public:
  /// JSON payload (content-type application/json); a body that cannot be serialized (a string
  /// that is not UTF-8) is an InvalidArgument. Needs <natbus/json.hpp>.
  template <class Tag = detail::JsonTag>
  requires std::same_as<Tag, detail::JsonTag>
  static BusMessage from_json(std::string_view subject, const typename detail::needs_natbus_json_hpp<Tag>::json& body,
                              const MessageOptions& options = {}) {
    return detail::json_text_message("from_json", subject, detail::needs_natbus_json_hpp<Tag>::dump("from_json", subject, body), options);
  }
  /// Any type nlohmann::json can serialize (a struct with to_json, a map, a vector...).
  /// JSON payloads need <natbus/json.hpp> (or <natbus/natbus.hpp>), which has nlohmann's.
  template <class T>
  requires(!detail::is_nlohmann_json<std::remove_cvref_t<T>>) static BusMessage
      from_json(std::string_view subject, const T& value, const MessageOptions& options = {}) {
    using Json = typename detail::needs_natbus_json_hpp<T>::json;
    return from_json(subject, Json(value), options);
  }
  /// UTF-8 text (content-type text/plain; charset=utf-8). Invalid UTF-8 is an InvalidArgument.
  static BusMessage from_text(std::string_view subject, std::string_view text, const MessageOptions& options = {});
  /// Raw bytes (content-type application/octet-stream unless options.content_type or a header says otherwise).
  static BusMessage from_bytes(std::string_view subject, std::span<const std::byte> data, const MessageOptions& options = {});
  /// from_bytes() of a string's bytes.
  static BusMessage from_bytes(std::string_view subject, std::string_view data, const MessageOptions& options = {}) {
    return from_bytes(subject, std::as_bytes(std::span<const char>(data.data(), data.size())), options);
  }
  /// Any contiguous range of bytes: std::vector<std::uint8_t>, std::array<std::byte, N>, ...
  template <class R>
  requires ByteRange<R> &&
      (!std::convertible_to<const R&, std::string_view>)&&(!std::convertible_to<const R&, std::span<const std::byte>>)static BusMessage
      from_bytes(std::string_view subject, const R& data, const MessageOptions& options = {}) {
    return from_bytes(subject, std::as_bytes(std::span(std::ranges::data(data), std::ranges::size(data))), options);
  }

  /// Copies the message.
  BusMessage(const BusMessage& other);
  BusMessage& operator=(const BusMessage& other);  ///< Copies the message.
  /// Moves the message (the source becomes empty).
  BusMessage(BusMessage&& other) noexcept
      : buf_(std::exchange(other.buf_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        subject_len_(std::exchange(other.subject_len_, 0)),
        header_len_(std::exchange(other.header_len_, 0)) {}
  BusMessage& operator=(BusMessage&& other) noexcept;  ///< Moves the message.
  ~BusMessage();

  /// The subject; empty only for a moved-from message.
  [[nodiscard]] std::string_view subject() const noexcept { return {buf_, subject_len_}; }
  /// The payload as sent (gzip-compressed when content-encoding is gzip).
  [[nodiscard]] std::span<const std::byte> data() const noexcept {
    const std::string_view p = payload();
    return std::as_bytes(std::span<const char>(p.data(), p.size()));
  }
  /// The payload as text (bytes, possibly compressed).
  [[nodiscard]] std::string_view payload() const noexcept {
    return {buf_ + subject_len_ + header_len_, size_ - subject_len_ - header_len_};
  }
  /// Headers in the order they go on the wire.
  [[nodiscard]] std::vector<std::pair<std::string_view, std::string_view>> headers() const;
  /// First value of a header, looked up case-insensitively.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const noexcept;
  /// Every value of a header (case-insensitive name), in wire order.
  [[nodiscard]] std::vector<std::string_view> header_values(std::string_view name) const;
  /// The encoded header block exactly as it goes on the wire ("NATS/1.0\r\n...\r\n\r\n");
  /// empty when the message has no headers.
  [[nodiscard]] std::string_view wire_headers() const noexcept { return {buf_ + subject_len_, header_len_}; }
  /// Bytes the message takes on the wire, headers and payload (what max_payload limits).
  [[nodiscard]] std::size_t wire_size() const noexcept { return size_ - subject_len_; }

  /// The `content-type` header (empty when absent).
  [[nodiscard]] std::string_view content_type() const noexcept { return header_or_empty("content-type"); }
  /// The `content-encoding` header (empty when absent).
  [[nodiscard]] std::string_view content_encoding() const noexcept { return header_or_empty("content-encoding"); }
  /// The `x-trace-id` header (empty when absent).
  [[nodiscard]] std::string_view trace_id() const noexcept { return header_or_empty("x-trace-id"); }
  /// The `x-correlation-id` header (empty when absent).
  [[nodiscard]] std::string_view correlation_id() const noexcept { return header_or_empty("x-correlation-id"); }
  /// The `x-sender` header (empty when absent).
  [[nodiscard]] std::string_view sender() const noexcept { return header_or_empty("x-sender"); }
  /// The `x-sent-at` header (empty when absent).
  [[nodiscard]] std::string_view sent_at() const noexcept { return header_or_empty("x-sent-at"); }
  /// The `x-message-type` header (empty when absent).
  [[nodiscard]] std::string_view message_type() const noexcept { return header_or_empty("x-message-type"); }
  /// The `x-reply-on` header (empty when absent).
  [[nodiscard]] std::string_view reply_on() const noexcept { return header_or_empty("x-reply-on"); }
  /// The `x-final-to` header (empty when absent).
  [[nodiscard]] std::string_view final_to() const noexcept { return header_or_empty("x-final-to"); }
  /// The `Nats-Msg-Id` header (empty when absent).
  [[nodiscard]] std::string_view msg_id() const noexcept { return header_or_empty("Nats-Msg-Id"); }

  /// Sets (replaces, case-insensitively) a header. CR/LF, control or non-ASCII bytes throw InvalidArgument.
  BusMessage& set_header(std::string_view name, std::string_view value);
  /// Adds one more value for a header (multi-valued headers).
  BusMessage& add_header(std::string_view name, std::string_view value);
  /// Removes every value of a header; returns how many were removed.
  std::size_t remove_header(std::string_view name);
  /// Sets Nats-Msg-Id (server-side deduplication within the stream's duplicate window).
  BusMessage& set_msg_id(std::string_view id) { return set_header("Nats-Msg-Id", id); }

 private:
  BusMessage() = default;
  [[nodiscard]] std::string_view header_or_empty(std::string_view name) const noexcept {
    auto v = header(name);
    return v ? *v : std::string_view{};
  }
  friend BusMessage detail::json_text_message(std::string_view op, std::string_view subject, std::string_view json_text,
                                              const MessageOptions& options);
  static BusMessage make(std::string_view op, std::string_view subject, std::string_view payload, std::string_view default_content_type,
                         const MessageOptions& options);
  /// Re-encodes the header block from `headers` (keeps subject and payload).
  void rebuild(const std::vector<std::pair<std::string, std::string>>& headers);

  char* buf_ = nullptr;          // [subject][header block][payload], pooled
  std::size_t size_ = 0;         // total bytes in buf_
  std::size_t subject_len_ = 0;  // bytes of subject at buf_
  std::size_t header_len_ = 0;   // bytes of the header block after the subject (0: no headers)
};

/// JetStream delivery metadata, parsed from the message's $JS.ACK reply subject.
struct MsgMetadata {
  std::string stream{};                               ///< stream name
  std::string consumer{};                             ///< consumer name
  std::string domain{};                               ///< JetStream domain (empty: none)
  std::uint64_t stream_sequence = 0;                  ///< sequence in the stream
  std::uint64_t consumer_sequence = 0;                ///< sequence in the consumer
  std::uint64_t num_delivered = 0;                    ///< 1 on first delivery, 2 on the first redelivery...
  std::uint64_t num_pending = 0;                      ///< messages left for this consumer after this one
  std::chrono::system_clock::time_point timestamp{};  ///< when the stream stored it
};

class ReceivedMessage;
namespace detail {
struct MsgImpl;
/// What a ReceivedMessage refers to (natbus' own code; not API).
[[nodiscard]] MsgImpl* impl_of(const ReceivedMessage& m) noexcept;
/// The awaitable of an acknowledgement that is already sent (co_await is a no-op).
struct [[nodiscard]] Sent {
  [[nodiscard]] bool await_ready() const noexcept { return true; }
  void await_suspend(std::coroutine_handle<>) const noexcept {}
  void await_resume() const noexcept {}
};
}  // namespace detail

/// A message received by a handler or fetch(). Move-only; owns cnats' message, and its
/// accessors are views into it (valid while the ReceivedMessage lives). Use it on the loop
/// thread only.
///
///   natbus::Task<void> on_order(natbus::ReceivedMessage& msg) {
///     auto order = msg.as_json<Order>();
///     co_await msg.ack();
///   }
class ReceivedMessage {
 public:
  ReceivedMessage() noexcept = default;
  /// natbus' own code: adopts a reference to a received message.
  ReceivedMessage(detail::LibraryKey /*key*/, detail::MsgImpl* impl) noexcept : impl_(impl) {}
  /// Moves the message (the source becomes empty).
  ReceivedMessage(ReceivedMessage&& other) noexcept : impl_(std::exchange(other.impl_, nullptr)) {}
  ReceivedMessage& operator=(ReceivedMessage&& other) noexcept;  ///< Moves the message; the one it replaces is released (not acked).
  ReceivedMessage(const ReceivedMessage&) = delete;
  ReceivedMessage& operator=(const ReceivedMessage&) = delete;
  ~ReceivedMessage();

  /// True unless empty or moved from.
  [[nodiscard]] bool valid() const noexcept { return impl_ != nullptr; }
  /// valid().
  explicit operator bool() const noexcept { return valid(); }

  /// The subject the message was published to.
  [[nodiscard]] std::string_view subject() const noexcept;
  /// The reply subject ($JS.ACK... for JetStream deliveries).
  [[nodiscard]] std::string_view reply() const noexcept;
  /// The payload, decompressed when content-encoding is gzip (DecodeError if that fails).
  [[nodiscard]] std::span<const std::byte> data() const;
  /// The payload as text, decompressed like data().
  [[nodiscard]] std::string_view payload() const;
  /// The payload exactly as it arrived (still compressed when it was).
  [[nodiscard]] std::string_view raw_payload() const noexcept;

  /// First value of a header, looked up case-insensitively.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const noexcept;
  /// Every value of a header (case-insensitive name).
  [[nodiscard]] std::vector<std::string_view> header_values(std::string_view name) const;
  /// All headers as (name, value) pairs, in no particular order.
  [[nodiscard]] std::vector<std::pair<std::string_view, std::string_view>> headers() const;

  /// The `content-type` header (empty when absent).
  [[nodiscard]] std::string_view content_type() const noexcept { return header_or_empty("content-type"); }
  /// The `content-encoding` header (empty when absent).
  [[nodiscard]] std::string_view content_encoding() const noexcept { return header_or_empty("content-encoding"); }
  /// The `x-trace-id` header (empty when absent).
  [[nodiscard]] std::string_view trace_id() const noexcept { return header_or_empty("x-trace-id"); }
  /// The trace this message belongs to: its `traceparent`, else its x-trace-id when that is a
  /// UUID (span unknown); invalid when it has neither. Pass it as MessageOptions::parent to
  /// continue the trace in what a handler publishes (replies and serve() do it themselves).
  [[nodiscard]] TraceContext trace_context() const noexcept;
  /// The `x-correlation-id` header (empty when absent).
  [[nodiscard]] std::string_view correlation_id() const noexcept { return header_or_empty("x-correlation-id"); }
  /// The `x-sender` header (empty when absent).
  [[nodiscard]] std::string_view sender() const noexcept { return header_or_empty("x-sender"); }
  /// The `x-sent-at` header (empty when absent).
  [[nodiscard]] std::string_view sent_at() const noexcept { return header_or_empty("x-sent-at"); }
  /// The `x-message-type` header (empty when absent).
  [[nodiscard]] std::string_view message_type() const noexcept { return header_or_empty("x-message-type"); }
  /// The `x-reply-on` header (empty when absent).
  [[nodiscard]] std::string_view reply_on() const noexcept { return header_or_empty("x-reply-on"); }
  /// The `x-final-to` header (empty when absent).
  [[nodiscard]] std::string_view final_to() const noexcept { return header_or_empty("x-final-to"); }
  /// The `Nats-Msg-Id` header (empty when absent).
  [[nodiscard]] std::string_view msg_id() const noexcept { return header_or_empty("Nats-Msg-Id"); }
  /// When natbus took the message off the connection.
  [[nodiscard]] std::chrono::system_clock::time_point received_at() const noexcept;

  /// JetStream metadata (stream/consumer sequence, delivery count, pending, timestamp);
  /// empty for messages that did not come from a JetStream consumer. A stored message read with
  /// NatsBus::get_message has its stream, stream_sequence and timestamp (no consumer).
  [[nodiscard]] std::optional<MsgMetadata> metadata() const;
  /// True for JetStream deliveries (messages that can be acked).
  [[nodiscard]] bool is_jetstream() const noexcept { return reply().starts_with("$JS.ACK."); }

  /// The payload as UTF-8 text; DecodeError when it is not valid UTF-8.
  [[nodiscard]] std::string_view as_text() const;
  /// The payload parsed as JSON; DecodeError when it is not.
  /// Needs <natbus/json.hpp>.
  template <class Tag = detail::JsonTag>
  requires std::same_as<Tag, detail::JsonTag>
  [[nodiscard]] typename detail::needs_natbus_json_hpp<Tag>::json as_json() const {
    return detail::needs_natbus_json_hpp<Tag>::parse(subject(), payload());
  }
  /// The payload decoded into T (any type with a nlohmann from_json); DecodeError on failure.
  template <class T>
  requires(!std::same_as<T, detail::JsonTag>) [[nodiscard]] T as_json() const {
    using Json = typename detail::needs_natbus_json_hpp<T>::json;  // include <natbus/json.hpp>
    Json j = detail::needs_natbus_json_hpp<T>::parse(subject(), payload());
    try {
      return j.template get<T>();
    } catch (const typename Json::exception& e) {
      throw_decode_error(e.what());
    }
  }

  /// Acknowledges the message (fire-and-forget, batched with other writes). Throws
  /// AlreadyAcknowledgedError when it was already acked/naked/termed, ClosedError when the bus
  /// is closed, InvalidArgument when the message is not a JetStream delivery.
  /// `co_await msg.ack();`
  detail::Sent ack();
  /// Negative acknowledgement: redeliver now, or after `delay`.
  detail::Sent nak();
  /// -NAK with a redelivery delay.
  detail::Sent nak(std::chrono::milliseconds delay);
  /// Stops redelivery for good (the message is not processed).
  detail::Sent term();
  /// Resets the ack timer: "still working on it". May be sent any number of times.
  detail::Sent in_progress();
  /// Acknowledges and waits for the server's confirmation (double ack). Throws TimeoutError
  /// when no confirmation comes within js_api_timeout.
  Task<void> ack_sync();
  /// True once ack/nak/term was sent (by the handler or by natbus).
  [[nodiscard]] bool acknowledged() const noexcept;

  friend detail::MsgImpl* detail::impl_of(const ReceivedMessage& m) noexcept;

 private:
  [[nodiscard]] std::string_view header_or_empty(std::string_view name) const noexcept {
    auto v = header(name);
    return v ? *v : std::string_view{};
  }
  [[noreturn]] void throw_decode_error(const char* what) const;
  detail::MsgImpl* impl_ = nullptr;
};

/// Hooks for a tracing system (an OpenTelemetry bridge, say) without natbus depending on one.
/// Plain function pointers and a user pointer: unset hooks cost one test per message. Install
/// them once, before any bus starts; they run on the thread that builds the message (publish
/// side) or on the bus' loop thread (handlers), and must not throw.
struct TraceHooks {
  /// A message with a traceparent is being built for `subject`; `out` holds the new span id
  /// natbus chose, `parent` the trace it continues (invalid for a new trace). Set out.span_id
  /// (and flags) to your producer span's to make the traceparent point at it.
  void (*on_inject)(TraceContext& out, const TraceContext& parent, std::string_view subject, void* user) = nullptr;
  /// A subscription handler starts with `msg`, whose trace is `incoming` (maybe invalid).
  void (*on_handler_start)(const ReceivedMessage& msg, const TraceContext& incoming, void* user) = nullptr;
  /// That handler ended; `error` is what it threw (null on success).
  void (*on_handler_end)(const ReceivedMessage& msg, const TraceContext& incoming, const std::exception_ptr& error, void* user) = nullptr;
  void* user = nullptr;  ///< free for the application
};

/// Installs (or, with `{}`, removes) the process-wide tracing hooks. Not synchronized with
/// running buses: call it at startup.
void set_trace_hooks(const TraceHooks& hooks) noexcept;

}  // namespace natbus
