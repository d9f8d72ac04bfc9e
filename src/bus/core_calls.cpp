// NatsBus' core NATS calls (no JetStream): publish_core, request, and subscribe_core, which
// serve() builds on. Validation happens here; the subscription itself is a CoreSubCore (core/).
#include <fmt/format.h>

#include <charconv>
#include <functional>

#include "base/key.hpp"
#include "base/validate.hpp"
#include "bus/bus_core.hpp"
#include "core/core_sub.hpp"
#include "message/msg_impl.hpp"
#include "natbus/bus.hpp"
#include "transport/request.hpp"

namespace natbus {

using detail::BusCore;
using detail::core_of;
using detail::Ref;

namespace detail {
Task<Subscription> start_core_sub(Ref<BusCore> bus, std::unique_ptr<detail::HandlerBase> handler, std::string subject, std::string queue,
                                  int max_concurrency, std::string op, bool answer_queued_on_stop) {
  detail::DeliverySettings settings;
  settings.max_concurrency = max_concurrency;
  auto core = Ref<detail::CoreSubCore>::adopt(new detail::CoreSubCore(bus.get(), std::move(handler), std::move(settings)));
  if (answer_queued_on_stop) core->answer_queued_on_stop();
  co_await core->start(std::move(subject), std::move(queue), std::move(op));
  co_return Subscription(detail::kLibrary, core.get());
}
}  // namespace detail

namespace {

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
  // A NATS service (ADR-32) reports errors in its own headers; serve() (and natbus in Python)
  // in x-error.
  if (auto err = answer.header("Nats-Service-Error")) {
    ErrorContext c = ctx();
    c.service_code = 500;
    if (auto code = answer.header("Nats-Service-Error-Code")) {
      int n = 0;
      const auto [end, ec] = std::from_chars(code->data(), code->data() + code->size(), n);
      if (ec == std::errc() && end == code->data() + code->size()) c.service_code = n;
    }
    throw RemoteError(std::string(*err), std::move(c));
  }
  if (auto err = answer.header("x-error")) throw RemoteError(std::string(*err), ctx());
  co_return answer;
}

}  // namespace

Task<void> NatsBus::publish_core(BusMessage msg) {
  BusCore& core = core_of(core_, "publish_core");
  if (msg.subject().empty()) throw InvalidArgument("the message has no subject (moved from?)", ErrorContext{.operation = "publish_core"});
  detail::check("publish_core", "subject", msg.subject(), detail::subject_problem(msg.subject(), false));
  core.publish_core_msg(msg, nullptr, "publish_core");
  if (core.write_backlogged()) co_await core.relieve_write_backlog();
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
  return detail::start_core_sub(Ref<BusCore>(&core), std::move(handler), std::string(subject), std::string(options.queue),
                                options.max_concurrency, std::string(op));
}

}  // namespace natbus
