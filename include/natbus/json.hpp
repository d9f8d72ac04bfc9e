// JSON payloads: BusMessage::from_json, ReceivedMessage::as_json, typed handlers
// (push_subscribe<T> / pull_subscribe<T>), serve() and publish_json / reply_json. They need
// nlohmann's whole header (about 130,000 lines), which <natbus/bus.hpp> and
// <natbus/message.hpp> leave out; <natbus/natbus.hpp> includes this one.
//
//   #include <natbus/json.hpp>
//   auto msg = natbus::BusMessage::from_json("orders.created", order);
//   auto on_order = [](Order o, natbus::ReceivedMessage& m) -> natbus::Task<void> { co_await m.ack(); };
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "natbus/bus.hpp"
#include "natbus/error.hpp"
#include "natbus/message.hpp"

namespace natbus::detail {

/// Where natbus' header templates find nlohmann::json complete, and what they do with it.
template <class T>
struct needs_natbus_json_hpp {
  using json = nlohmann::json;  ///< the complete type

  /// `body` as JSON text; InvalidArgument (naming `op` and `subject`) when nlohmann refuses
  /// it (a string that is not UTF-8: type_error 316).
  static std::string dump(std::string_view op, std::string_view subject, const json& body) {
    try {
      return body.dump();
    } catch (const json::exception& e) {
      throw InvalidArgument(std::string("body cannot be serialized as JSON: ") + e.what(),
                            ErrorContext{.operation = std::string(op), .subject = std::string(subject)});
    }
  }
  /// A received payload parsed; DecodeError (naming the subject) when it is not JSON.
  static json parse(std::string_view subject, std::string_view payload) {
    try {
      return json::parse(payload);
    } catch (const json::exception& e) {
      throw DecodeError(std::string("payload is not valid JSON: ") + e.what(),
                        ErrorContext{.operation = "as_json", .subject = std::string(subject)});
    }
  }
};

/// nlohmann::json is nlohmann::json.
template <>
inline constexpr bool is_nlohmann_json<nlohmann::json> = true;

}  // namespace natbus::detail

#include "natbus/detail/json_handlers.hpp"
