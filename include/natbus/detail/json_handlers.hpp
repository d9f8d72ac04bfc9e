// natbus implementation detail, not API: the typed and serve() handlers, which decode and
// encode JSON. Included by <natbus/json.hpp>.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "natbus/detail/handlers.hpp"
#include "natbus/error.hpp"
#include "natbus/message.hpp"
#include "natbus/task.hpp"

namespace natbus::detail {

/// Throws the PoisonMessageError of a message a typed handler cannot decode.
[[noreturn]] void throw_poison(const ReceivedMessage& msg, const std::string& decode_error);

/// Decodes the payload into T (nlohmann from_json), then calls the handler with (T, message).
template <class T, class H>
class TypedHandlerImpl final : public HandlerBase {
 public:
  explicit TypedHandlerImpl(H h) : handler_(std::move(h)) {}
  Task<void> invoke(ReceivedMessage& msg) override {
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
  Task<void> invoke(ReceivedMessage& msg) override {
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

}  // namespace natbus::detail
