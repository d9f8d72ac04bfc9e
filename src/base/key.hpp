// The maker of detail::LibraryKey: what natbus' own code passes to its library-only
// constructors (Subscription, PullSubscription, PublishFuture, ReceivedMessage).
#pragma once

#include "natbus/detail/key.hpp"

namespace natbus::detail {

struct KeyMaker {
  static constexpr LibraryKey key() noexcept { return LibraryKey{}; }
};

/// The key itself.
inline constexpr LibraryKey kLibrary = KeyMaker::key();

}  // namespace natbus::detail
