// MessageStream: a consumer's messages as an async sequence over a bounded channel. The
// subscription's handler parks each message in the channel and waits while it is full;
// MessageStream::next() takes them out. NatsBus::messages and pull_messages (bus/subscribe.cpp)
// put the pieces together. Loop thread only.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string_view>

#include "natbus/bus.hpp"
#include "subscription/sub_host.hpp"

namespace natbus::detail {

struct StreamChannel;

/// A channel for `buffer` messages; InvalidArgument naming `op` when `buffer` is 0, the bus'
/// ClosedError unless it is open.
std::shared_ptr<StreamChannel> new_channel(SubHost& bus, std::string_view op, std::size_t buffer);
/// The handler that parks each message in `ch`.
HandlerPtr stream_handler(std::shared_ptr<StreamChannel> ch);
/// The stream over `ch`, once `subscribing` has completed.
Task<MessageStream> make_stream(Task<Subscription> subscribing, std::shared_ptr<StreamChannel> ch);
/// A stream's reader acks each message: manual_ack = false is an InvalidArgument naming `op`.
void require_manual_ack(std::optional<bool> manual_ack, std::string_view op);

}  // namespace natbus::detail
