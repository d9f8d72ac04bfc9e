// Push consumers: durable (bound by name) and ephemeral.
#include <cstring>

#include <fmt/format.h>

#include "jetstream/consumer.hpp"
#include "natbus/task.hpp"

namespace natbus::detail {

Task<void> PushCore::start(ConsumerSpec spec) {
  SubHost& bus = *bus_;
  subject_ = spec.filter_subject;
  stream_ = spec.stream;
  durable_ = spec.durable;
  queue_ = spec.queue;
  idle_heartbeat_ = spec.idle_heartbeat;
  ErrorContext ctx;
  ctx.operation = spec.op;
  ctx.subject = spec.filter_subject;
  ctx.stream = spec.stream;
  ctx.durable = spec.durable;

  ConsumerInfo info = co_await ensure_consumer(bus.js(), spec);
  if (durable_.empty()) durable_ = info.name;  // ephemeral: the server's name, for logs
  max_deliver_ = info.raw["config"].value("max_deliver", -1);

  // A durable without deliver group delivers to one subscriber only. When the server still
  // thinks an earlier subscriber is alive (a frozen or partitioned pod), wait for it to let go.
  if (!spec.durable.empty() && spec.queue.empty() && info.push_bound) {
    const auto started = Clock::now();
    const auto deadline = saturating_deadline(spec.bind_timeout);
    auto backoff = std::chrono::milliseconds(100);
    log(LogLevel::warn, "js_consumer_bound_elsewhere",
        {{"stream", spec.stream},
         {"durable", spec.durable},
         {"action", fmt::format("retrying for up to {} ms", spec.bind_timeout.count())}});
    for (;;) {
      if (Clock::now() > deadline - backoff) {
        throw AlreadyBoundError(
            fmt::format("durable is still bound to another subscriber after {} ms (bind_timeout). Another live process "
                        "uses it, or the server has not yet noticed that a frozen one is gone (it does after ping_interval x "
                        "ping_max of the server). Use a queue group to share a durable between processes",
                        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()),
            ctx);
      }
      co_await natbus::sleep(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
      info = co_await bus.js().consumer_info(spec.stream, spec.durable);
      if (!info.push_bound) break;
    }
    log(LogLevel::info, "js_consumer_released",
        {{"stream", spec.stream},
         {"durable", spec.durable},
         {"waited_ms", std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count())}});
  }

  bus.ensure_open(spec.op);
  wire_subject_ = spec.deliver_subject;
  wire_queue_ = spec.queue;
  // The server bounds what is in flight by max_ack_pending; the queues must hold that much.
  // Unlimited (-1), or more than fits in 64 MiB: cnats drops the excess, and every drop is
  // counted (metrics) and logged (sub_slow_consumer); JetStream redelivers after ack_wait.
  pending_msgs_ = spec.max_ack_pending > 65536 ? spec.max_ack_pending : 65536;
  pending_bytes_ = kQueueBytes;
  hold_limit_ = static_cast<std::size_t>(pending_msgs_);
  hold_bytes_limit_ = kQueueBytes;
  subscribe_on(bus.nc(), ctx);
  active_ = true;
  bus.add_sink(this);
  bus.register_sub(this);
  if (idle_heartbeat_.count() > 0) arm_heartbeat_watch();
  // Return once the server has the interest: a caller that tells another process "subscribed"
  // (or freezes, or publishes from elsewhere) right after push_subscribe can rely on it.
  try {
    co_await bus.flush(bus.config().js_api_timeout);
  } catch (const std::exception& e) {
    log(LogLevel::warn, "sub_flush_failed", {{"durable", durable_}, {"error", e.what()}});
  }
  log(LogLevel::info, "sub_started",
      {{"kind", spec.durable.empty() ? "ephemeral_push" : "push"},
       {"subject", subject_},
       {"stream", stream_},
       {"durable", durable_},
       {"queue", queue_},
       {"manual_ack", manual_ack_ ? "true" : "false"},
       {"max_concurrency", std::to_string(max_concurrency_)}});
}

bool PushCore::handle_control(natsMsg* m) noexcept {
  // Status messages (idle heartbeat, flow control) have no payload and a Status header.
  if (natsMsg_GetDataLength(m) != 0) return false;
  const char* status = nullptr;
  if (natsMsgHeader_Get(m, "Status", &status) != NATS_OK || status == nullptr) return false;
  last_activity_ = Clock::now();
  hb_warned_ = false;
  const char* desc = nullptr;
  natsMsgHeader_Get(m, "Description", &desc);
  if (std::strcmp(status, "100") == 0 && desc != nullptr && std::strstr(desc, "FlowControl") != nullptr) {
    // Answering when we take it off the queue (not when it arrives) is the backpressure.
    if (const char* reply = natsMsg_GetReply(m); reply != nullptr && bus_->nc() != nullptr) {
      natsConnection_Publish(bus_->nc(), reply, nullptr, 0);
    }
  } else if (std::strcmp(status, "100") == 0 && desc != nullptr && std::strstr(desc, "Idle Heartbeat") != nullptr) {
    // The heartbeat may carry a stalled flow control reply subject.
    const char* fc = nullptr;
    if (natsMsgHeader_Get(m, "Nats-Consumer-Stalled", &fc) == NATS_OK && fc != nullptr && bus_->nc() != nullptr) {
      natsConnection_Publish(bus_->nc(), fc, nullptr, 0);
    }
  }
  return true;
}

void PushCore::pump() noexcept {
  if (!active_ || pumping_) return;
  pumping_ = true;
  hold_queued();
  MsgPtr m;
  while (can_dispatch() && running_ < max_concurrency_ && next_message(m)) {
    if (handle_control(m.get())) continue;
    last_activity_ = Clock::now();
    try {
      dispatch(std::move(m));
    } catch (const std::exception& e) {
      log(LogLevel::error, "sub_dispatch_failed", {{"durable", durable_}, {"error", e.what()}});
    }
  }
  pumping_ = false;
}

void PushCore::resubscribe(natsConnection* nc) noexcept {
  SubCore::resubscribe(nc);
  last_activity_ = Clock::now();  // the server's heartbeats start again on this connection
  hb_warned_ = false;
}

bool PushCore::begin_hold_before_unsubscribe() noexcept {
  Loop* loop = bus_->loop();
  if (durable_.empty() || !queue_.empty() || loop == nullptr) return false;
  // The consumer's messages may still be on their way out of the server (a slow reader's
  // socket): ask it how far it delivered, and hold everything until that far has arrived.
  drain_deadline_ = saturating_deadline(bus_->config().js_api_timeout);
  loop->spawn(wait_in_flight(Ref<SubCore>(this)));
  return true;
}

bool PushCore::ready_to_unsubscribe(Clock::time_point /*now*/) noexcept {
  return in_flight_known_ && max_consumer_seq_ >= in_flight_target_;
}

void PushCore::stop() noexcept {
  // Callers hold a reference, so dropping the timer's own one here cannot free `this`.
  const bool cancelled = hb_timer_ && bus_->loop() != nullptr && bus_->loop()->cancel_timer(hb_timer_);
  hb_timer_ = {};
  SubCore::stop();
  if (cancelled) release();
}

void PushCore::arm_heartbeat_watch() {
  Loop* loop = bus_->loop();
  if (loop == nullptr) return;
  last_activity_ = Clock::now();
  add_ref();  // the timer's reference
  hb_timer_ = loop->add_timer(saturating_deadline(idle_heartbeat_), Work{&PushCore::heartbeat_check, this, nullptr});
}

void PushCore::heartbeat_check(void* a, void*, bool run) noexcept {
  auto* self = static_cast<PushCore*>(a);
  self->hb_timer_ = {};
  if (run && self->active_) {
    // Messages may be waiting in cnats' queue behind busy handlers: that is activity too.
    if (self->queued() > 0 || self->running_ > 0) self->last_activity_ = Clock::now();
    if (Clock::now() - self->last_activity_ > 2 * self->idle_heartbeat_ && !self->hb_warned_) {
      self->hb_warned_ = true;
      log(LogLevel::warn, "sub_heartbeat_missed",
          {{"stream", self->stream_},
           {"durable", self->durable_},
           {"hint", "no message or heartbeat for 2 idle_heartbeat intervals: consumer deleted or connection stalled"}});
    }
    if (Loop* loop = self->bus_->loop(); loop != nullptr) {
      self->add_ref();
      self->hb_timer_ = loop->add_timer(saturating_deadline(self->idle_heartbeat_), Work{&PushCore::heartbeat_check, self, nullptr});
    }
  }
  self->release();
}

}  // namespace natbus::detail
