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

/// A plain PUB of `data` to `subject` (reply nullptr: none): no natsMsg. Throws naming `op`.
void send_bytes(natsConnection* nc, std::string_view subject, const char* reply, std::string_view data, std::string_view op);

/// Sends `msg` with reply subject `reply` (nullptr: none): a message without headers as a plain
/// PUB (send_bytes), one with headers as an HPUB of to_nats_msg(). Throws naming `op`.
void send_message(natsConnection* nc, const BusMessage& msg, const char* reply, std::string_view op);

}  // namespace natbus::detail
