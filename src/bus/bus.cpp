// The public handles: NatsBus, Subscription and PullSubscription check what they are given
// and forward to the cores (BusCore, SubCore, PullCore). Subscribing is in subscribe.cpp.

#include <fmt/format.h>

#include "base/validate.hpp"
#include "bus/bus_core.hpp"
#include "jetstream/consumer.hpp"
#include "message/msg_impl.hpp"
#include "transport/request.hpp"

namespace natbus {

// =============================================================================================
// Public handles
// =============================================================================================

using detail::BusCore;
using detail::core_of;
using detail::Ref;

namespace {

// connect() and close() run to their own end (bounded by their timeouts): a with_timeout()
// around them waits, so that no half-open or half-closed bus is left behind.
Task<void> connect_impl(Ref<BusCore> bus) { co_await detail::shield(bus->connect()); }
Task<void> close_impl(Ref<BusCore> bus) { co_await detail::shield(bus->close()); }

Task<PubAck> publish_impl(Ref<BusCore> bus, BusMessage msg) {
  PublishFuture f = co_await bus->publisher().publish_async(std::move(msg));
  co_return co_await std::move(f);
}

Task<PublishFuture> publish_async_impl(Ref<BusCore> bus, BusMessage msg) {
  co_return co_await bus->publisher().publish_async(std::move(msg));
}

Task<void> publish_complete_impl(Ref<BusCore> bus, std::chrono::milliseconds timeout) { co_await bus->publisher().complete(timeout); }

Task<void> reply_impl(Ref<BusCore> bus, BusMessage msg, bool jetstream) {
  if (jetstream) {
    PublishFuture f = co_await bus->publisher().publish_async(std::move(msg));
    co_await std::move(f);
  } else {
    bus->publish_core_msg(msg, nullptr, "reply");
  }
}

}  // namespace

NatsBus::NatsBus(NatsConfig config) : core_(new BusCore(std::move(config))) {}

NatsBus::~NatsBus() {
  if (core_ != nullptr) {
    core_->close_now();
    core_->release();
  }
}

NatsBus::NatsBus(NatsBus&& other) noexcept : core_(std::exchange(other.core_, nullptr)) {}

NatsBus& NatsBus::operator=(NatsBus&& other) noexcept {
  if (this != &other) {
    if (core_ != nullptr) {
      core_->close_now();
      core_->release();
    }
    core_ = std::exchange(other.core_, nullptr);
  }
  return *this;
}

Task<void> NatsBus::connect() { return connect_impl(Ref<BusCore>(&core_of(core_, "connect"))); }

Task<void> NatsBus::close() {
  if (core_ == nullptr) return []() -> Task<void> { co_return; }();
  return close_impl(Ref<BusCore>(core_));
}

bool NatsBus::connected() const noexcept { return core_ != nullptr && core_->is_open(); }

namespace {
ConnectionStatus to_status(BusCore::State s) noexcept {
  switch (s) {
    case BusCore::State::idle:
      return ConnectionStatus::idle;
    case BusCore::State::connecting:
      return ConnectionStatus::connecting;
    case BusCore::State::open:
      return ConnectionStatus::connected;
    case BusCore::State::reconnecting:
      return ConnectionStatus::reconnecting;
    case BusCore::State::closing:
      return ConnectionStatus::closing;
    case BusCore::State::closed:
      break;
  }
  return ConnectionStatus::closed;
}

Task<ConnectionStatus> status_changed_impl(Ref<BusCore> bus, ConnectionStatus seen, detail::Clock::time_point deadline) {
  // States that look the same from outside (none today) would wake without a change: loop.
  while (to_status(bus->state()) == seen && detail::Clock::now() < deadline) {
    const BusCore::State now = bus->state();
    (void)co_await bus->state_changed(now, deadline);
  }
  co_return to_status(bus->state());
}
}  // namespace

ConnectionStatus NatsBus::status() const noexcept { return core_ == nullptr ? ConnectionStatus::closed : to_status(core_->state()); }

Task<ConnectionStatus> NatsBus::status_changed(ConnectionStatus seen, std::chrono::milliseconds timeout) {
  if (timeout.count() < 0) {
    throw InvalidArgument(fmt::format("timeout must not be negative, got {} ms", timeout.count()),
                          ErrorContext{.operation = "status_changed"});
  }
  BusCore& core = core_of(core_, "status_changed");
  return status_changed_impl(Ref<BusCore>(&core), seen, detail::saturating_deadline(timeout));
}

std::string_view NatsBus::closed_reason() const noexcept {
  return core_ != nullptr ? std::string_view(core_->closed_reason()) : std::string_view{};
}

std::uint64_t NatsBus::reconnects() const noexcept { return core_ != nullptr ? core_->reconnects() : 0; }

const NatsConfig& NatsBus::config() const noexcept {
  static const NatsConfig empty{};
  return core_ != nullptr ? core_->config() : empty;
}

Task<PubAck> NatsBus::publish(BusMessage msg) { return publish_impl(Ref<BusCore>(&core_of(core_, "publish")), std::move(msg)); }

Task<PubAck> NatsBus::publish_bytes(std::string_view subject, std::span<const std::byte> data, const MessageOptions& options) {
  return publish(BusMessage::from_bytes(subject, data, options));
}

Task<PubAck> NatsBus::publish_bytes(std::string_view subject, std::string_view data, const MessageOptions& options) {
  return publish(BusMessage::from_bytes(subject, data, options));
}

Task<PublishFuture> NatsBus::publish_async(BusMessage msg) {
  return publish_async_impl(Ref<BusCore>(&core_of(core_, "publish_async")), std::move(msg));
}

Task<void> NatsBus::publish_async_complete(std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) {
    throw InvalidArgument(fmt::format("timeout must be positive, got {} ms", timeout.count()),
                          ErrorContext{.operation = "publish_async_complete"});
  }
  return publish_complete_impl(Ref<BusCore>(&core_of(core_, "publish_async_complete")), timeout);
}

std::size_t NatsBus::pending_publishes() const noexcept { return core_ != nullptr ? core_->publisher().in_flight() : 0; }

// ---- replies ----

namespace {

BusMessage build_reply(const ReceivedMessage& request, const ReplyOptions& o, std::string_view op,
                       const std::function<BusMessage(std::string_view, const MessageOptions&)>& make) {
  if (!request.valid()) throw InvalidArgument("empty ReceivedMessage (moved from?)", ErrorContext{.operation = std::string(op)});
  std::string_view target = o.subject;
  if (target.empty()) target = o.final ? request.final_to() : request.reply_on();
  if (target.empty()) {
    throw InvalidArgument(fmt::format("the request has no {} header and no subject was given", o.final ? "x-final-to" : "x-reply-on"),
                          ErrorContext{.operation = std::string(op), .subject = std::string(request.subject())});
  }
  MessageOptions mo;
  mo.sender = o.sender;
  mo.correlation_id = request.correlation_id();
  mo.headers = o.headers;
  mo.compress = o.compress;
  mo.message_type = o.message_type.empty() ? request.message_type() : o.message_type;
  mo.trace_id = request.trace_id();
  mo.parent = request.trace_context();
  return make(target, mo);
}

}  // namespace

Task<void> NatsBus::reply_json_text(const ReceivedMessage& request, std::string json_text, const ReplyOptions& options) {
  BusCore& core = core_of(core_, "reply_json");
  BusMessage m = build_reply(request, options, "reply_json", [&](std::string_view s, const MessageOptions& mo) {
    return detail::json_text_message("reply_json", s, json_text, mo);
  });
  return reply_impl(Ref<BusCore>(&core), std::move(m), options.jetstream);
}

Task<void> NatsBus::reply_text(const ReceivedMessage& request, std::string_view text, const ReplyOptions& options) {
  BusCore& core = core_of(core_, "reply_text");
  BusMessage m = build_reply(request, options, "reply_text",
                             [&](std::string_view s, const MessageOptions& mo) { return BusMessage::from_text(s, text, mo); });
  return reply_impl(Ref<BusCore>(&core), std::move(m), options.jetstream);
}

Task<void> NatsBus::reply_bytes(const ReceivedMessage& request, std::span<const std::byte> data, const ReplyOptions& options) {
  BusCore& core = core_of(core_, "reply_bytes");
  BusMessage m = build_reply(request, options, "reply_bytes",
                             [&](std::string_view s, const MessageOptions& mo) { return BusMessage::from_bytes(s, data, mo); });
  return reply_impl(Ref<BusCore>(&core), std::move(m), options.jetstream);
}

// ---- management ----

namespace {
Task<StreamInfo> create_stream_impl(Ref<BusCore> bus, std::string name, std::vector<std::string> subjects, StreamOptions options,
                                    bool add_missing) {
  co_return co_await bus->js().ensure_stream(std::move(name), std::move(subjects), options, true, add_missing);
}
Task<void> flush_impl(Ref<BusCore> bus, std::chrono::milliseconds timeout) { co_await bus->flush(timeout); }
Task<StreamInfo> stream_info_impl(Ref<BusCore> bus, std::string name) { co_return co_await bus->js().stream_info(std::move(name)); }
Task<void> delete_stream_impl(Ref<BusCore> bus, std::string name) { co_await bus->js().delete_stream(std::move(name)); }
Task<void> purge_stream_impl(Ref<BusCore> bus, std::string name) { co_await bus->js().purge_stream(std::move(name)); }
Task<ConsumerInfo> consumer_info_impl(Ref<BusCore> bus, std::string stream, std::string name) {
  co_return co_await bus->js().consumer_info(std::move(stream), std::move(name));
}
Task<void> delete_consumer_impl(Ref<BusCore> bus, std::string stream, std::string name) {
  co_await bus->js().delete_consumer(std::move(stream), std::move(name));
}
}  // namespace

Task<StreamInfo> NatsBus::create_stream(std::string_view name, std::span<const std::string> subjects, const StreamOptions& options,
                                        bool add_missing_subjects) {
  const std::string_view op = "create_stream";
  detail::check(op, "stream", name, detail::name_problem(name));
  if (subjects.empty()) throw InvalidArgument("a stream needs at least one subject", ErrorContext{.operation = std::string(op)});
  for (const auto& s : subjects) detail::check(op, "subject", s, detail::subject_problem(s, true));
  NatsConfig probe;
  probe.stream = options;
  validate(probe);  // the same checks as NatsConfig.stream
  return create_stream_impl(Ref<BusCore>(&core_of(core_, op)), std::string(name),
                            std::vector<std::string>(subjects.begin(), subjects.end()), options, add_missing_subjects);
}

Task<void> NatsBus::flush(std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) {
    throw InvalidArgument(fmt::format("timeout must be positive, got {} ms", timeout.count()), ErrorContext{.operation = "flush"});
  }
  return flush_impl(Ref<BusCore>(&core_of(core_, "flush")), timeout);
}

Task<StreamInfo> NatsBus::stream_info(std::string_view stream) {
  detail::check("stream_info", "stream", stream, detail::name_problem(stream));
  return stream_info_impl(Ref<BusCore>(&core_of(core_, "stream_info")), std::string(stream));
}

Task<void> NatsBus::delete_stream(std::string_view stream) {
  detail::check("delete_stream", "stream", stream, detail::name_problem(stream));
  return delete_stream_impl(Ref<BusCore>(&core_of(core_, "delete_stream")), std::string(stream));
}

Task<void> NatsBus::purge_stream(std::string_view stream) {
  detail::check("purge_stream", "stream", stream, detail::name_problem(stream));
  return purge_stream_impl(Ref<BusCore>(&core_of(core_, "purge_stream")), std::string(stream));
}

Task<ConsumerInfo> NatsBus::consumer_info(std::string_view stream, std::string_view consumer) {
  detail::check("consumer_info", "stream", stream, detail::name_problem(stream));
  detail::check("consumer_info", "consumer", consumer, detail::name_problem(consumer));
  return consumer_info_impl(Ref<BusCore>(&core_of(core_, "consumer_info")), std::string(stream), std::string(consumer));
}

Task<void> NatsBus::delete_consumer(std::string_view stream, std::string_view consumer) {
  detail::check("delete_consumer", "stream", stream, detail::name_problem(stream));
  detail::check("delete_consumer", "consumer", consumer, detail::name_problem(consumer));
  return delete_consumer_impl(Ref<BusCore>(&core_of(core_, "delete_consumer")), std::string(stream), std::string(consumer));
}

// ---- Subscription ----

Subscription::Subscription(detail::LibraryKey /*key*/, detail::SubCore* core) noexcept : core_(core) {
  if (core_ != nullptr) {
    core_->add_ref();
    core_->add_handle();
  }
}

Subscription& Subscription::operator=(Subscription&& other) noexcept {
  if (this != &other) {
    Subscription old(std::move(*this));
    core_ = std::exchange(other.core_, nullptr);
  }
  return *this;
}

Subscription::~Subscription() {
  if (core_ != nullptr) {
    core_->drop_handle();
    core_->release();
  }
}

void Subscription::unsubscribe() noexcept {
  if (core_ != nullptr) core_->stop();
}

namespace {
Task<void> close_sub_impl(Ref<detail::SubCore> core) {
  core->stop();
  const auto deadline = detail::saturating_deadline(core->bus().config().drain_timeout);
  co_await core->wait_idle(deadline);
}
}  // namespace

Task<void> Subscription::close() {
  if (core_ == nullptr) return []() -> Task<void> { co_return; }();
  return close_sub_impl(Ref<detail::SubCore>(core_));
}

bool Subscription::active() const noexcept { return core_ != nullptr && core_->active(); }
std::string_view Subscription::subject() const noexcept {
  return core_ != nullptr ? std::string_view(core_->subject()) : std::string_view{};
}
std::string_view Subscription::stream() const noexcept { return core_ != nullptr ? std::string_view(core_->stream()) : std::string_view{}; }
std::string_view Subscription::durable() const noexcept {
  return core_ != nullptr ? std::string_view(core_->durable()) : std::string_view{};
}
std::string_view Subscription::queue() const noexcept { return core_ != nullptr ? std::string_view(core_->queue()) : std::string_view{}; }
std::uint64_t Subscription::delivered() const noexcept { return core_ != nullptr ? core_->delivered() : 0; }

detail::SubCore* detail::sub_core_of(const Subscription& sub) noexcept { return sub.core_; }

// ---- PullSubscription ----

PullSubscription::PullSubscription(detail::LibraryKey /*key*/, detail::PullCore* core) noexcept : core_(core) {
  if (core_ != nullptr) {
    core_->add_ref();
    core_->add_handle();
  }
}

PullSubscription& PullSubscription::operator=(PullSubscription&& other) noexcept {
  if (this != &other) {
    PullSubscription old(std::move(*this));
    core_ = std::exchange(other.core_, nullptr);
  }
  return *this;
}

PullSubscription::~PullSubscription() {
  if (core_ != nullptr) {
    core_->drop_handle();
    core_->release();
  }
}

namespace {
Task<std::vector<ReceivedMessage>> fetch_impl(Ref<detail::PullCore> core, int batch, std::chrono::milliseconds timeout, bool no_wait) {
  co_return co_await core->fetch(batch, timeout, no_wait);
}
}  // namespace

Task<std::vector<ReceivedMessage>> PullSubscription::fetch(int batch, std::chrono::milliseconds timeout) {
  if (core_ == nullptr) throw ClosedError("empty PullSubscription (moved from?)", ErrorContext{.operation = "fetch"});
  if (batch < 1) throw InvalidArgument(fmt::format("batch must be >= 1, got {}", batch), ErrorContext{.operation = "fetch"});
  if (timeout.count() <= 0) {
    throw InvalidArgument(fmt::format("timeout must be positive, got {} ms", timeout.count()), ErrorContext{.operation = "fetch"});
  }
  return fetch_impl(Ref<detail::PullCore>(core_), batch, timeout, false);
}

Task<std::vector<ReceivedMessage>> PullSubscription::fetch_no_wait(int batch) {
  if (core_ == nullptr) throw ClosedError("empty PullSubscription (moved from?)", ErrorContext{.operation = "fetch_no_wait"});
  if (batch < 1) throw InvalidArgument(fmt::format("batch must be >= 1, got {}", batch), ErrorContext{.operation = "fetch_no_wait"});
  return fetch_impl(Ref<detail::PullCore>(core_), batch, std::chrono::milliseconds(1000), true);
}

void PullSubscription::unsubscribe() noexcept {
  if (core_ != nullptr) core_->stop();
}

Task<void> PullSubscription::close() {
  if (core_ == nullptr) return []() -> Task<void> { co_return; }();
  return close_sub_impl(Ref<detail::SubCore>(core_));
}

bool PullSubscription::active() const noexcept { return core_ != nullptr && core_->active(); }
std::string_view PullSubscription::stream() const noexcept {
  return core_ != nullptr ? std::string_view(core_->stream()) : std::string_view{};
}
std::string_view PullSubscription::durable() const noexcept {
  return core_ != nullptr ? std::string_view(core_->durable()) : std::string_view{};
}

}  // namespace natbus
