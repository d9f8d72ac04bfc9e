// natbus implementation detail, not API: the type-erased handlers behind push_subscribe(),
// pull_subscribe(), typed handlers and serve(). Included by <natbus/bus.hpp>; the JSON ones
// are in <natbus/detail/json_handlers.hpp>.
#pragma once

#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "natbus/error.hpp"
#include "natbus/message.hpp"
#include "natbus/task.hpp"

namespace natbus {
namespace detail {
class BusCore;
class SubCore;
class PullCore;
struct StreamChannel;
struct PubSlot;

/// Type-erased message handler; the callable lives as long as the subscription and every
/// handler coroutine it started.
class HandlerBase {
 public:
  virtual ~HandlerBase() = default;
  /// Handles `msg`, which the caller keeps alive until the returned task has finished.
  virtual Task<void> invoke(ReceivedMessage& msg) = 0;
  /// The subscription stopped (unsubscribe, close, bus closing).
  virtual void on_stop() noexcept {}

 protected:
  HandlerBase() = default;
  HandlerBase(const HandlerBase&) = default;
  HandlerBase& operator=(const HandlerBase&) = default;
};

/// Owns a handler: a unique_ptr that spares every user file <memory>.
class HandlerPtr {
 public:
  explicit HandlerPtr(HandlerBase* h) noexcept : h_(h) {}
  HandlerPtr(HandlerPtr&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  HandlerPtr(const HandlerPtr&) = delete;
  HandlerPtr& operator=(const HandlerPtr&) = delete;
  HandlerPtr& operator=(HandlerPtr&&) = delete;
  ~HandlerPtr() { delete h_; }
  /// Gives up ownership.
  [[nodiscard]] HandlerBase* release() noexcept { return std::exchange(h_, nullptr); }

 private:
  HandlerBase* h_;
};

template <class H>
class HandlerImpl final : public HandlerBase {
 public:
  explicit HandlerImpl(H h) : handler_(std::move(h)) {}
  Task<void> invoke(ReceivedMessage& msg) override {
    if constexpr (std::is_invocable_v<H&, ReceivedMessage&&>) {
      return handler_(std::move(msg));  // the older by-value form (or const&)
    } else {
      return handler_(msg);
    }
  }

 private:
  H handler_;
};

// Typed and serve() handlers decode and encode JSON: they are defined in
// <natbus/detail/json_handlers.hpp>, which <natbus/json.hpp> includes.
template <class T, class H>
class TypedHandlerImpl;
template <class H>
class ServeHandlerImpl;

template <class H>
HandlerPtr make_handler(H&& h) {
  using D = std::decay_t<H>;
  static_assert(!(kRejectOwningTemporaryHandlers && std::is_rvalue_reference_v<H&&> && !std::is_trivially_destructible_v<D>),
                "natbus: GCC < 13 destroys a lambda temporary inside co_await twice. Name the handler first: "
                "`auto on_msg = [...](natbus::ReceivedMessage& m) -> natbus::Task<void> {...};` then pass `on_msg` "
                "(natbus copies it). See README, 'Compiler notes'.");
  return HandlerPtr(new HandlerImpl<D>(std::forward<H>(h)));
}

template <class H>
HandlerPtr make_serve_handler(H&& h) {
  using D = std::decay_t<H>;
  static_assert(!(kRejectOwningTemporaryHandlers && std::is_rvalue_reference_v<H&&> && !std::is_trivially_destructible_v<D>),
                "natbus: GCC < 13 destroys a lambda temporary inside co_await twice. Name the handler first: "
                "`auto on_request = [...](natbus::ReceivedMessage& m) -> natbus::Task<nlohmann::json> {...};` then pass "
                "`on_request` (natbus copies it). See README, 'Compiler notes'.");
  static_assert(std::is_class_v<typename needs_natbus_json_hpp<D>::json>, "serve() needs <natbus/json.hpp>");
  return HandlerPtr(new ServeHandlerImpl<D>(std::forward<H>(h)));
}

template <class T, class H>
HandlerPtr make_typed_handler(H&& h) {
  using D = std::decay_t<H>;
  static_assert(!(kRejectOwningTemporaryHandlers && std::is_rvalue_reference_v<H&&> && !std::is_trivially_destructible_v<D>),
                "natbus: GCC < 13 destroys a lambda temporary inside co_await twice. Name the handler first: "
                "`auto on_order = [...](Order o, natbus::ReceivedMessage& m) -> natbus::Task<void> {...};` then pass "
                "`on_order` (natbus copies it). See README, 'Compiler notes'.");
  static_assert(std::is_class_v<typename needs_natbus_json_hpp<T>::json>, "typed handlers need <natbus/json.hpp>");
  return HandlerPtr(new TypedHandlerImpl<T, D>(std::forward<H>(h)));
}
}  // namespace detail

}  // namespace natbus
