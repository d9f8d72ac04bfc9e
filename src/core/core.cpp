// Folder core/: core NATS (no JetStream): publish_core, subscribe_core, request and serve. It
// builds on the subscription machinery in jetstream/consumer.hpp and the reply mux in
// transport/.
//
// Core NATS next to JetStream: publish_core, subscribe_core, request and serve.
#include <fmt/format.h>

#include "base/validate.hpp"
#include "bus/bus_core.hpp"
#include "core/core_sub.hpp"
#include "message/msg_impl.hpp"
#include "natbus/bus.hpp"
#include "transport/request.hpp"

namespace natbus {

namespace detail {

Task<void> CoreSubCore::start(std::string subject, std::string queue, std::string op) {
  BusCore& bus = *bus_;
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

Task<void> serve_reply(const ReceivedMessage& request, const nlohmann::json& body, const std::string& error) {
  MsgImpl* impl = impl_of(request);
  if (impl == nullptr || impl->bus == nullptr) co_return;
  const std::string_view reply = request.reply();
  if (reply.empty()) {
    log(LogLevel::warn, "serve_no_reply_subject", {{"subject", std::string(request.subject())}});
    co_return;
  }
  MessageOptions o;
  o.correlation_id = request.correlation_id();
  o.trace_id = request.trace_id();
  o.parent = request.trace_context();
  o.message_type = request.message_type();
  BusMessage answer = BusMessage::from_json(reply, error.empty() ? body : nlohmann::json(nullptr), o);
  if (!error.empty()) {
    std::string clean = error.substr(0, 512);
    for (auto& c : clean) {
      if (c == '\r' || c == '\n' || static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x80) c = ' ';
    }
    answer.set_header("x-error", clean);
    log(LogLevel::error, "serve_handler_error", {{"subject", std::string(request.subject())}, {"error", error}});
  }
  try {
    impl->bus->send_reply(answer, "serve");
  } catch (const std::exception& e) {
    log(LogLevel::warn, "serve_reply_failed", {{"subject", std::string(request.subject())}, {"error", e.what()}});
  }
}

}  // namespace detail

using detail::BusCore;
using detail::core_of;
using detail::Ref;

namespace {

Task<Subscription> core_sub_impl(Ref<BusCore> bus, std::unique_ptr<detail::HandlerBase> handler, std::string subject, std::string queue,
                                 int max_concurrency, std::string op) {
  detail::DeliverySettings settings;
  settings.max_concurrency = max_concurrency;
  auto core = Ref<detail::CoreSubCore>::adopt(new detail::CoreSubCore(bus.get(), std::move(handler), std::move(settings)));
  co_await core->start(std::move(subject), std::move(queue), std::move(op));
  co_return Subscription(detail::kLibrary, core.get());
}

Task<ReceivedMessage> request_impl(Ref<BusCore> bus, BusMessage msg, std::chrono::milliseconds timeout) {
  if (bus->state() == BusCore::State::reconnecting) (void)co_await bus->wait_connected(detail::saturating_deadline(timeout));
  std::function<void(const char*)> build = [&bus, &msg](const char* reply) { bus->publish_core_msg(msg, reply, "request"); };
  detail::ReplyAwaiter awaiter(bus->mux(), std::move(build), detail::saturating_ns(timeout));
  auto [reply, status] = co_await awaiter;
  // The error context is built only on the error paths: a request allocates nothing for it.
  const auto ctx = [&msg] { return ErrorContext{.operation = "request", .subject = std::string(msg.subject())}; };
  switch (status) {
    case NATS_OK:
      break;
    case NATS_TIMEOUT:
      throw TimeoutError(fmt::format("no reply within {} ms", timeout.count()), ctx());
    case NATS_NO_RESPONDERS:
      throw NoRespondersError("nobody is subscribed to the subject", ctx());
    case NATS_CONNECTION_DISCONNECTED:
      throw ConnectionError("the connection was lost before the reply came; the request may or may not have been handled", ctx());
    default:
      throw ClosedError("the connection closed before the reply came", ctx());
  }
  ReceivedMessage answer(detail::kLibrary, new detail::MsgImpl(std::move(reply), bus.get()));
  if (auto err = answer.header("x-error")) throw RemoteError(std::string(*err), ctx());
  co_return answer;
}

}  // namespace

Task<void> NatsBus::publish_core(BusMessage msg) {
  BusCore& core = core_of(core_, "publish_core");
  if (msg.subject().empty()) throw InvalidArgument("the message has no subject (moved from?)", ErrorContext{.operation = "publish_core"});
  detail::check("publish_core", "subject", msg.subject(), detail::subject_problem(msg.subject(), false));
  core.publish_core_msg(msg, {}, "publish_core");
  co_return;
}

Task<ReceivedMessage> NatsBus::request(BusMessage msg, std::chrono::milliseconds timeout) {
  BusCore& core = core_of(core_, "request");
  if (msg.subject().empty()) throw InvalidArgument("the message has no subject (moved from?)", ErrorContext{.operation = "request"});
  detail::check("request", "subject", msg.subject(), detail::subject_problem(msg.subject(), false));
  if (timeout.count() <= 0) {
    throw InvalidArgument(fmt::format("timeout must be positive, got {} ms", timeout.count()), ErrorContext{.operation = "request"});
  }
  core.ensure_usable("request");
  return request_impl(Ref<BusCore>(&core), std::move(msg), timeout);
}

Task<Subscription> NatsBus::subscribe_core_erased(std::string_view subject, detail::HandlerPtr owned, const CoreSubscribeOptions& options,
                                                  std::string_view op) {
  std::unique_ptr<detail::HandlerBase> handler(owned.release());
  BusCore& core = core_of(core_, op);
  detail::check(op, "subject", subject, detail::subject_problem(subject, true));
  if (!options.queue.empty()) detail::check(op, "queue", options.queue, detail::queue_problem(options.queue));
  if (options.max_concurrency < 1) {
    throw InvalidArgument(fmt::format("max_concurrency must be at least 1, got {}", options.max_concurrency),
                          ErrorContext{.operation = std::string(op), .subject = std::string(subject)});
  }
  core.ensure_open(op);
  return core_sub_impl(Ref<BusCore>(&core), std::move(handler), std::string(subject), std::string(options.queue), options.max_concurrency,
                       std::string(op));
}

}  // namespace natbus
