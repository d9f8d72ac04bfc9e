// A BusMessage as cnats' natsMsg: what every send path (JetStream publishes, core messages,
// replies) hands to the connection.
#pragma once

#include <string_view>

#include "natbus/message.hpp"
#include "transport/cnats.hpp"

namespace natbus::detail {

/// The natsMsg for `msg` with reply subject `reply` (nullptr: none), headers included. Throws
/// the mapped error naming `op`.
MsgPtr to_nats_msg(const BusMessage& msg, const char* reply, std::string_view op);

}  // namespace natbus::detail
