// natbus errors: one exception type, natbus::Error (a std::system_error, so a
// std::runtime_error), with a few subclasses worth catching on their own.
//
//   try { co_await bus.publish(std::move(msg)); }
//   catch (const natbus::NoStreamError& e) { ... }    // no stream listens on the subject
//   catch (const natbus::TimeoutError& e) { ... }     // retry with the same msg_id
//   catch (const natbus::Error& e) { log(e.what()); }  // names operation, subject, stream...
//
// Messages never contain passwords, tokens or credentials.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace natbus {

/// What went wrong, for code that branches on it (`e.code() == natbus::errc::timeout`).
enum class errc {
  invalid_argument = 1,   ///< a value given to natbus is not acceptable
  config,                 ///< NatsConfig is not usable
  timeout,                ///< no answer in time; the operation may or may not have happened
  not_found,              ///< stream, consumer or message does not exist
  auth,                   ///< the server refused the credentials
  connection,             ///< no server could be reached
  closed,                 ///< the bus (or connection) is closed or was never connected
  jetstream_not_enabled,  ///< the server or account has no JetStream
  no_stream,              ///< no stream took the message (no responders)
  already_bound,          ///< a push durable is bound to another live subscriber
  consumer_kind,          ///< the durable exists as the other kind (push vs pull)
  payload_too_large,      ///< message bigger than the server's max_payload
  already_acknowledged,   ///< ack/nak/term on a message that was already answered
  decode,                 ///< payload could not be decoded (gzip, UTF-8, JSON)
  jetstream,              ///< the JetStream API returned an error
  nats,                   ///< another error reported by cnats
  protocol,               ///< the server answered something natbus cannot read
  cancelled,              ///< the operation was abandoned (subscription closed, bus closing)
  poison,                 ///< a typed handler's payload cannot be decoded into its type
  no_responders,          ///< nobody is subscribed to a core request's subject
  remote,                 ///< the service that answered a request reported an error
  key_exists,             ///< KeyValue::create() on a key that holds a value
  wrong_last_revision,    ///< KeyValue::update() after another revision of the key came in
};

}  // namespace natbus

template <>
struct std::is_error_code_enum<natbus::errc> : std::true_type {};

namespace natbus {

/// The std::error_category of natbus::errc.
const std::error_category& natbus_category() noexcept;
inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), natbus_category()}; }

/// The context an error is reported with; every field is optional.
struct ErrorContext {
  std::string operation{};    ///< e.g. "publish", "push_subscribe", "connect"
  std::string subject{};      ///< the subject concerned
  std::string stream{};       ///< the stream concerned
  std::string durable{};      ///< the durable consumer concerned
  std::string server_text{};  ///< the server's or cnats' own description
  int nats_status = 0;        ///< cnats natsStatus, when cnats reported the error
  int js_code = 0;            ///< JetStream API "err_code", e.g. 10059 (stream not found)
  int api_code = 0;           ///< JetStream API "code" (HTTP-like: 400, 404, 503)
  int service_code = 0;       ///< a service's Nats-Service-Error-Code (ServiceError, RemoteError)
};

/// Base of every exception natbus throws.
class Error : public std::system_error {
 public:
  /// An error with a natbus or system error code.
  Error(std::error_code code, std::string message, ErrorContext context = {});
  /// An error with a natbus error code.
  Error(errc code, std::string message, ErrorContext context = {}) : Error(make_error_code(code), std::move(message), std::move(context)) {}

  /// "natbus: <operation>: <message> (subject=.. stream=.. durable=..) [server: ..]"
  [[nodiscard]] const char* what() const noexcept override { return what_.c_str(); }
  /// The message without the context.
  [[nodiscard]] const std::string& message() const noexcept { return message_; }
  /// Where it happened (operation, subject, stream...).
  [[nodiscard]] const ErrorContext& context() const noexcept { return context_; }
  /// cnats' natsStatus, when cnats reported it (0 otherwise).
  [[nodiscard]] int nats_status() const noexcept { return context_.nats_status; }
  /// The JetStream API err_code, when the server reported it (0 otherwise).
  [[nodiscard]] int js_code() const noexcept { return context_.js_code; }
  /// True when trying again (with the same msg_id for publishes) is the right reaction:
  /// timeouts, no responders during a leader election, a connection being re-established.
  [[nodiscard]] bool retryable() const noexcept;

 private:
  std::string message_{};
  ErrorContext context_;
  std::string what_{};
};

/// An Error whose code is fixed at compile time; the aliases below are what you catch.
template <errc Code>
class ErrorOf : public Error {
 public:
  /// An error of this class.
  explicit ErrorOf(std::string message, ErrorContext context = {}) : Error(Code, std::move(message), std::move(context)) {}
};

/// Bad value given to a natbus function (subject, durable name, header, batch...).
using InvalidArgument = ErrorOf<errc::invalid_argument>;
/// NatsConfig cannot be used (bad server list, missing stream name...). Names the field.
using ConfigError = ErrorOf<errc::config>;
/// No answer in time. For a publish the outcome is unknown: retry with the same msg_id.
using TimeoutError = ErrorOf<errc::timeout>;
/// Stream, consumer or message not found.
using NotFoundError = ErrorOf<errc::not_found>;
/// Authentication or authorization failed.
using AuthError = ErrorOf<errc::auth>;
/// No server could be reached (connect), or the connection failed.
using ConnectionError = ErrorOf<errc::connection>;
/// The bus is closed, closing, or not connected yet.
using ClosedError = ErrorOf<errc::closed>;
/// JetStream is not enabled on the server or for this account.
using JetStreamNotEnabledError = ErrorOf<errc::jetstream_not_enabled>;
/// No stream took the message: no stream covers the subject, or a leader election is under
/// way (retryable with the same msg_id).
using NoStreamError = ErrorOf<errc::no_stream>;
/// A push durable without queue group is still bound to another subscriber.
using AlreadyBoundError = ErrorOf<errc::already_bound>;
/// The durable exists as a pull consumer where push was asked, or the reverse.
using ConsumerKindError = ErrorOf<errc::consumer_kind>;
/// The message is larger than the server's max_payload.
using PayloadTooLargeError = ErrorOf<errc::payload_too_large>;
/// ack()/nak()/term() on a message that was already acknowledged or rejected.
using AlreadyAcknowledgedError = ErrorOf<errc::already_acknowledged>;
/// A payload could not be decoded: corrupt gzip, invalid UTF-8, invalid JSON.
using DecodeError = ErrorOf<errc::decode>;
/// The JetStream API reported an error (see js_code()).
using JetStreamError = ErrorOf<errc::jetstream>;
/// The operation was abandoned because its subscription or bus closed.
using CancelledError = ErrorOf<errc::cancelled>;
/// A typed handler's message could not be decoded into its type. natbus terminates such a
/// message (it would fail the same way on every redelivery) and dead-letters it when a
/// dead-letter subject is configured; the handler never sees it.
using PoisonMessageError = ErrorOf<errc::poison>;
/// request(): nobody listens on the subject.
using NoRespondersError = ErrorOf<errc::no_responders>;
/// request(): the serve() or service handler that answered reported an error; the message is
/// its text, and context().service_code the service's Nats-Service-Error-Code (0 from serve()).
using RemoteError = ErrorOf<errc::remote>;

/// KeyValue::create(): the key already holds a value.
using KeyExistsError = ErrorOf<errc::key_exists>;
/// KeyValue::update(): the key's newest revision is not the one given (another writer won).
using WrongLastRevisionError = ErrorOf<errc::wrong_last_revision>;

/// Thrown by a service endpoint handler (<natbus/service.hpp>) to answer with this error code
/// and description in the Nats-Service-Error-Code and Nats-Service-Error headers.
class ServiceError : public Error {
 public:
  /// `code` is HTTP-like by convention (400 bad request, 404 not found, 500 failed).
  ServiceError(int code, std::string description) : Error(errc::remote, std::move(description), ErrorContext{.service_code = code}) {}
  /// The code the reply carries.
  [[nodiscard]] int status() const noexcept { return context().service_code; }
};

}  // namespace natbus
