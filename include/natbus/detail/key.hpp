// natbus implementation detail, not API: the key that natbus' library-only constructors take
// (Subscription, PullSubscription, PublishFuture, ReceivedMessage from natbus' own objects).
#pragma once

namespace natbus::detail {

struct KeyMaker;

/// Only natbus' own code makes one (KeyMaker is defined in the library), so a user cannot
/// call a constructor that takes it by mistake.
class LibraryKey {
  constexpr LibraryKey() noexcept = default;
  friend struct KeyMaker;
};

}  // namespace natbus::detail
