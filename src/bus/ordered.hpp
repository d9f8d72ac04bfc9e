// Ordered consumers for natbus' own higher layers (the Key-Value store's watchers, keys and
// history): the validated consumer spec, and a stream over it that also says how many
// messages the first consumer had to deliver when it was created.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/ref.hpp"
#include "jetstream/consumer.hpp"
#include "natbus/bus.hpp"

namespace natbus::detail {

/// OrderedOptions validated into a consumer spec (InvalidArgument naming `op` and the field).
ConsumerSpec ordered_spec(std::string_view op, std::string_view subject, const OrderedOptions& options);

struct OrderedStream {
  MessageStream stream;
  std::uint64_t initial_pending = 0;  // messages the consumer had for the reader when created
};

class BusCore;
/// An ordered consumer's messages as a stream with a buffer of `buffer` messages.
Task<OrderedStream> open_ordered(Ref<BusCore> bus, ConsumerSpec spec, std::size_t buffer);

}  // namespace natbus::detail
