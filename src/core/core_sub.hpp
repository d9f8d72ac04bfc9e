// Folder core/: core NATS (no JetStream). Its kind of subscription (CoreSubCore: subscribe_core
// and serve, no consumer, no acks) and serve()'s replies. It calls subscription/, message/,
// transport/, runtime/ and base/; the NatsBus calls on top of it (publish_core, request,
// subscribe_core) are in bus/core_calls.cpp.
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
  /// On stop, handle what has arrived (UNSUB, then dispatch until cnats and held_ are empty)
  /// instead of dropping it: a service endpoint answers every request it has received.
  void answer_queued_on_stop() noexcept { answer_on_stop_ = true; }

 private:
  [[nodiscard]] bool drains_on_stop() const noexcept override { return answer_on_stop_; }
  void drain_queued() noexcept override;
  bool answer_on_stop_ = false;
};

/// The options of an answer to `request` (serve(), service endpoints): its correlation id,
/// trace (continued) and message type. Views into `request`, which must outlive their use.
[[nodiscard]] MessageOptions answer_options(const ReceivedMessage& request) noexcept;
/// An error text fit for a header value: one line of printable ASCII, at most 512 bytes.
[[nodiscard]] std::string header_safe(std::string_view text);

}  // namespace natbus::detail
