// natbus implementation detail, not API: the type-erased handlers behind push_subscribe(),
// pull_subscribe(), typed handlers and serve(). Included by <natbus/bus.hpp>.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

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
  virtual Task<void> invoke(ReceivedMessage msg) = 0;
  /// The subscription stopped (unsubscribe, close, bus closing).
  virtual void on_stop() noexcept {}

 protected:
  HandlerBase() = default;
  HandlerBase(const HandlerBase&) = default;
  HandlerBase& operator=(const HandlerBase&) = default;
};

template <class H>
class HandlerImpl final : public HandlerBase {
 public:
  explicit HandlerImpl(H h) : handler_(std::move(h)) {}
  Task<void> invoke(ReceivedMessage msg) override { return std::invoke(handler_, std::move(msg)); }

 private:
  H handler_;
};

/// Throws the PoisonMessageError of a message a typed handler cannot decode.
[[noreturn]] void throw_poison(const ReceivedMessage& msg, const std::string& decode_error);

/// Decodes the payload into T (nlohmann from_json), then calls the handler with (T, message).
template <class T, class H>
class TypedHandlerImpl final : public HandlerBase {
 public:
  explicit TypedHandlerImpl(H h) : handler_(std::move(h)) {}
  Task<void> invoke(ReceivedMessage msg) override {
    std::optional<T> value;
    std::string error;
    try {
      value.emplace(msg.template as_json<T>());
    } catch (const Error& e) {
      error = e.message();
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (!value) throw_poison(msg, error);
    co_await std::invoke(handler_, std::move(*value), msg);
  }

 private:
  H handler_;
};

/// Answers a serve() request: `body` as JSON, or an x-error header when `error` is set.
Task<void> serve_reply(const ReceivedMessage& request, const nlohmann::json& body, const std::string& error);

/// Calls a serve() handler and answers the request with what it returns.
template <class H>
class ServeHandlerImpl final : public HandlerBase {
 public:
  explicit ServeHandlerImpl(H h) : handler_(std::move(h)) {}
  Task<void> invoke(ReceivedMessage msg) override {
    nlohmann::json body;
    std::string error;
    try {
      body = co_await std::invoke(handler_, msg);
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = "handler failed";
    }
    co_await serve_reply(msg, body, error);
  }

 private:
  H handler_;
};

template <class H>
std::unique_ptr<HandlerBase> make_handler(H&& h) {
  using D = std::decay_t<H>;
  static_assert(!(kRejectOwningTemporaryHandlers && std::is_rvalue_reference_v<H&&> && !std::is_trivially_destructible_v<D>),
                "natbus: GCC < 13 destroys a lambda temporary inside co_await twice. Name the handler first: "
                "`auto on_msg = [...](natbus::ReceivedMessage m) -> natbus::Task<void> {...};` then pass `on_msg` "
                "(natbus copies it). See README, 'Compiler notes'.");
  return std::make_unique<HandlerImpl<D>>(std::forward<H>(h));
}

template <class H>
std::unique_ptr<HandlerBase> make_serve_handler(H&& h) {
  using D = std::decay_t<H>;
  static_assert(!(kRejectOwningTemporaryHandlers && std::is_rvalue_reference_v<H&&> && !std::is_trivially_destructible_v<D>),
                "natbus: GCC < 13 destroys a lambda temporary inside co_await twice. Name the handler first: "
                "`auto on_request = [...](natbus::ReceivedMessage& m) -> natbus::Task<nlohmann::json> {...};` then pass "
                "`on_request` (natbus copies it). See README, 'Compiler notes'.");
  return std::make_unique<ServeHandlerImpl<D>>(std::forward<H>(h));
}

template <class T, class H>
std::unique_ptr<HandlerBase> make_typed_handler(H&& h) {
  using D = std::decay_t<H>;
  static_assert(!(kRejectOwningTemporaryHandlers && std::is_rvalue_reference_v<H&&> && !std::is_trivially_destructible_v<D>),
                "natbus: GCC < 13 destroys a lambda temporary inside co_await twice. Name the handler first: "
                "`auto on_order = [...](Order o, natbus::ReceivedMessage& m) -> natbus::Task<void> {...};` then pass "
                "`on_order` (natbus copies it). See README, 'Compiler notes'.");
  return std::make_unique<TypedHandlerImpl<T, D>>(std::forward<H>(h));
}
}  // namespace detail

}  // namespace natbus
