// A plain NATS subscription (subscribe_core, serve): core/'s kind of subscription.
#pragma once

#include <string>

#include "subscription/subscription.hpp"

namespace natbus::detail {

/// A plain NATS subscription (subscribe_core, serve): no consumer, no acks.
class CoreSubCore final : public SubCore {
 public:
  using SubCore::SubCore;
  /// Subscribes (with `queue` when not empty) and waits until the server has the interest.
  Task<void> start(std::string subject, std::string queue, std::string op);
  void pump() noexcept override;
};

}  // namespace natbus::detail
