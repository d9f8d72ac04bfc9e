// JSON payloads: BusMessage::from_json, ReceivedMessage::as_json, typed handlers
// (push_subscribe<T> / pull_subscribe<T>), serve() and publish_json / reply_json. They need
// nlohmann's whole header (about 130,000 lines), which <natbus/bus.hpp> and
// <natbus/message.hpp> leave out; <natbus/natbus.hpp> includes this one.
//
//   #include <natbus/json.hpp>
//   auto msg = natbus::BusMessage::from_json("orders.created", order);
//   auto on_order = [](Order o, natbus::ReceivedMessage& m) -> natbus::Task<void> { co_await m.ack(); };
#pragma once

#include <nlohmann/json.hpp>

#include "natbus/bus.hpp"
#include "natbus/message.hpp"

namespace natbus::detail {

/// Where natbus' header templates find nlohmann::json complete.
template <class T>
struct needs_natbus_json_hpp {
  using json = nlohmann::json;  ///< the complete type
};

}  // namespace natbus::detail

#include "natbus/detail/json_handlers.hpp"
