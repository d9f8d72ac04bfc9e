// Core subscriptions (subscribe_core, serve) and serve()'s replies.
#include <fmt/format.h>

#include "base/validate.hpp"
#include "core/core_sub.hpp"
#include "message/msg_impl.hpp"
#include "natbus/bus.hpp"
#include "natbus/json.hpp"
#include "transport/request.hpp"

namespace natbus {

namespace detail {

Task<void> CoreSubCore::start(std::string subject, std::string queue, std::string op) {
  SubHost& bus = *bus_;
  subject_ = std::move(subject);
  queue_ = std::move(queue);
  manual_ack_ = true;  // nothing to ack
  bus.ensure_open(op);
  wire_subject_ = subject_;
  wire_queue_ = queue_;
  // Core NATS has no redelivery: hold a generous backlog before cnats drops (sub_slow_consumer).
  pending_msgs_ = 65536;
  pending_bytes_ = kQueueBytes;
  hold_limit_ = 65536;
  hold_bytes_limit_ = kQueueBytes;
  subscribe_on(bus.nc(), ErrorContext{.operation = op, .subject = subject_});
  active_ = true;
  bus.add_sink(this);
  bus.register_sub(this);
  try {
    co_await bus.flush(bus.config().js_api_timeout);
  } catch (const std::exception& e) {
    log(LogLevel::warn, "sub_flush_failed", {{"subject", subject_}, {"error", e.what()}});
  }
  log(LogLevel::info, "sub_started",
      {{"kind", op == "serve" ? "serve" : "core"},
       {"subject", subject_},
       {"queue", queue_},
       {"max_concurrency", std::to_string(max_concurrency_)}});
}

void CoreSubCore::pump() noexcept {
  if (!active_ || pumping_) return;
  pumping_ = true;
  hold_queued();
  MsgPtr m;
  while (can_dispatch() && running_ < max_concurrency_ && next_message(m)) {
    try {
      dispatch(std::move(m));
    } catch (const std::exception& e) {
      log(LogLevel::error, "sub_dispatch_failed", {{"subject", subject_}, {"error", e.what()}});
    }
  }
  pumping_ = false;
}

void CoreSubCore::drain_queued() noexcept {
  if (!answer_on_stop_) {
    nak_queued();
    return;
  }
  // Inactive (stopped), so pump() starts nothing: start what waits, as slots free up (the
  // drain's timer calls this again).
  hold_queued();
  MsgPtr m;
  while (bus_->has_connection() && running_ < max_concurrency_ && next_message(m)) {
    try {
      dispatch(std::move(m));
    } catch (const std::exception& e) {
      log(LogLevel::error, "sub_dispatch_failed", {{"subject", subject_}, {"error", e.what()}});
    }
  }
}

MessageOptions answer_options(const ReceivedMessage& request) noexcept {
  MessageOptions o;
  o.correlation_id = request.correlation_id();
  o.trace_id = request.trace_id();
  o.parent = request.trace_context();
  o.message_type = request.message_type();
  return o;
}

std::string header_safe(std::string_view text) {
  std::string clean(text.substr(0, 512));
  for (auto& c : clean) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x80) c = ' ';
  }
  return clean;
}

Task<void> serve_reply(const ReceivedMessage& request, const nlohmann::json& body, const std::string& error) {
  MsgImpl* impl = impl_of(request);
  if (impl == nullptr || impl->bus == nullptr) co_return;
  const std::string_view reply = request.reply();
  if (reply.empty()) {
    log(LogLevel::warn, "serve_no_reply_subject", {{"subject", std::string(request.subject())}});
    co_return;
  }
  BusMessage answer = BusMessage::from_json(reply, error.empty() ? body : nlohmann::json(nullptr), answer_options(request));
  if (!error.empty()) {
    answer.set_header("x-error", header_safe(error));
    log(LogLevel::error, "serve_handler_error", {{"subject", std::string(request.subject())}, {"error", error}});
  }
  try {
    impl->bus->send_reply(answer, "serve");
  } catch (const std::exception& e) {
    log(LogLevel::warn, "serve_reply_failed", {{"subject", std::string(request.subject())}, {"error", e.what()}});
  }
}

}  // namespace detail

}  // namespace natbus
