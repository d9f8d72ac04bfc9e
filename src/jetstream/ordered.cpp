// Ordered consumers (ADR-17): see OrderedCore in consumer.hpp.
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "jetstream/consumer.hpp"
#include "natbus/task.hpp"

namespace natbus::detail {

namespace {

/// Deletes a consumer that is no longer read, without waiting for the answer to matter: the
/// server removes an ephemeral push consumer without interest by itself after a few seconds.
Task<void> delete_quietly(Ref<SubHost> bus, std::string stream, std::string consumer) {
  try {
    if (bus->is_open() && bus->has_connection()) co_await bus->js().delete_consumer(std::move(stream), std::move(consumer));
  } catch (const std::exception& e) {
    log(LogLevel::debug, "ordered_consumer_delete_failed", {{"error", e.what()}});
  }
}

/// True when `error` says that the stream is gone (reading can never go on).
bool stream_gone(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const NotFoundError& e) {
    return e.js_code() == 10059;
  } catch (...) {
  }
  return false;
}

bool bus_closed(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const ClosedError&) {
    return true;
  } catch (...) {
  }
  return false;
}

std::string what_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
  }
  return "unknown exception";
}

}  // namespace

OrderedCore::OrderedCore(SubHost* bus, std::unique_ptr<HandlerBase> handler) : SubCore(bus, std::move(handler)) { no_ack_ = true; }

Task<void> OrderedCore::start(ConsumerSpec spec) {
  spec_ = std::move(spec);
  spec_.durable.clear();
  spec_.push = true;
  spec_.ack_none = true;
  spec_.max_deliver = 1;
  spec_.flow_control = true;
  spec_.memory_storage = true;
  spec_.replicas = 1;
  subject_ = spec_.filter_subject;
  stream_ = spec_.stream;
  // The reader's buffer bounds what runs; cnats and held_ hold what the server sends ahead,
  // which flow control bounds (a flow-control request is answered when it is taken off).
  pending_msgs_ = 65536;
  pending_bytes_ = kQueueBytes;
  hold_limit_ = 65536;
  hold_bytes_limit_ = kQueueBytes;
  co_await open_consumer();
  active_ = true;
  bus_->add_sink(this);
  bus_->register_sub(this);
  arm_heartbeat_watch();
  pump();  // what arrived while the consumer was being created
  log(LogLevel::info, "sub_started",
      {{"kind", "ordered"},
       {"subject", subject_},
       {"stream", stream_},
       {"consumer", consumer_},
       {"deliver_policy", std::string(to_string(spec_.deliver_policy))}});
}

Task<void> OrderedCore::open_consumer() {
  Ref<OrderedCore> keep(this);
  SubHost& bus = *bus_;
  bus.ensure_open(spec_.op);
  drop_subscription();
  ErrorContext ctx;
  ctx.operation = spec_.op;
  ctx.subject = spec_.filter_subject;
  ctx.stream = spec_.stream;
  if (bus.nc() == nullptr) throw ConnectionError("not connected to NATS", ctx);
  ConsumerSpec spec = spec_;
  if (stream_seq_ > 0) {
    // Go on after the last message handed to the reader.
    spec.deliver_policy = DeliverPolicy::by_start_sequence;
    spec.start_sequence = stream_seq_ + 1;
    spec.start_time = {};
  }
  spec.deliver_subject = bus.js().new_inbox();
  wire_subject_ = spec.deliver_subject;
  consumer_seq_ = 0;
  // Listen first: the consumer delivers as soon as it exists.
  subscribe_on(bus.nc(), ctx);
  natsSubscription* const mine = sub_;
  ConsumerInfo info = co_await ensure_consumer(bus.js(), spec);
  consumer_ = info.name;
  durable_ = info.name;  // for logs and metrics (it changes with every reset)
  if (sub_ != mine) {
    // Dropped while the consumer was being created (a reconnect, a stop): nobody reads it.
    bus.loop()->spawn(delete_quietly(Ref<SubHost>(bus_.get()), stream_, consumer_));
    consumer_.clear();
    throw ConnectionError("the subscription was lost while the consumer was created", ctx);
  }
  if (!active_) initial_pending_ = info.num_pending;  // the first consumer's
  last_activity_ = Clock::now();
}

void OrderedCore::drop_subscription() noexcept {
  if (sub_ != nullptr) {
    std::int64_t d = 0;
    if (natsSubscription_GetDropped(sub_, &d) == NATS_OK && d > 0) dropped_before_ += static_cast<std::uint64_t>(d);
    natsSubscription_Unsubscribe(sub_);
    natsSubscription_Destroy(sub_);
    sub_ = nullptr;
  }
  // Everything after the last message handed on comes again from the next consumer.
  held_.clear();
  held_bytes_ = 0;
}

void OrderedCore::reset(std::string_view why) noexcept {
  if (!active_) return;
  drop_subscription();
  drops_seen_ = dropped();
  if (recreating_) {
    reset_again_ = true;
    return;
  }
  recreating_ = true;
  ++resets_;
  log(LogLevel::info, "ordered_consumer_reset",
      {{"stream", stream_}, {"subject", subject_}, {"reason", std::string(why)}, {"next_stream_seq", std::to_string(stream_seq_ + 1)}});
  if (Loop* loop = bus_->loop(); loop != nullptr) {
    loop->spawn(recreate(Ref<OrderedCore>(this)));
  } else {
    recreating_ = false;
  }
}

Task<void> OrderedCore::recreate(Ref<OrderedCore> self) {
  auto backoff = std::chrono::milliseconds(100);
  while (self->active_) {
    self->reset_again_ = false;
    if (!self->consumer_.empty()) {
      self->bus_->loop()->spawn(delete_quietly(Ref<SubHost>(self->bus_.get()), self->stream_, self->consumer_));
      self->consumer_.clear();
    }
    if (self->bus_->nc() == nullptr || !self->bus_->has_connection()) {
      // Reconnecting: the bus calls resubscribe() when it is back, which resets again.
      (void)co_await self->bus_->wait_connected(saturating_deadline(std::chrono::seconds(1)));
      continue;
    }
    std::exception_ptr error;
    try {
      co_await self->open_consumer();
    } catch (...) {
      error = std::current_exception();
    }
    if (!self->active_) {
      self->drop_subscription();
      break;
    }
    if (!error) {
      if (self->reset_again_) continue;
      self->pump();
      break;
    }
    if (bus_closed(error)) break;
    if (stream_gone(error)) {
      log(LogLevel::error, "ordered_consumer_ended",
          {{"stream", self->stream_}, {"subject", self->subject_}, {"reason", "the stream is gone"}, {"error", what_of(error)}});
      self->recreating_ = false;
      self->stop();
      co_return;
    }
    log(LogLevel::warn, "ordered_consumer_reset_failed",
        {{"stream", self->stream_},
         {"subject", self->subject_},
         {"error", what_of(error)},
         {"retry_in_ms", std::to_string(backoff.count())}});
    (void)co_await WaitUntil(self->stopped_, Clock::now() + backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
  self->recreating_ = false;
}

bool OrderedCore::handle_control(natsMsg* m) noexcept {
  if (natsMsg_GetDataLength(m) != 0) return false;
  const char* status = nullptr;
  if (natsMsgHeader_Get(m, "Status", &status) != NATS_OK || status == nullptr) return false;
  const char* desc = nullptr;
  natsMsgHeader_Get(m, "Description", &desc);
  if (std::strcmp(status, "100") != 0 || desc == nullptr) return true;
  if (std::strstr(desc, "FlowControl") != nullptr) {
    if (const char* reply = natsMsg_GetReply(m); reply != nullptr && bus_->nc() != nullptr) {
      natsConnection_Publish(bus_->nc(), reply, nullptr, 0);
    }
  } else if (std::strstr(desc, "Idle Heartbeat") != nullptr) {
    const char* fc = nullptr;
    if (natsMsgHeader_Get(m, "Nats-Consumer-Stalled", &fc) == NATS_OK && fc != nullptr && bus_->nc() != nullptr) {
      natsConnection_Publish(bus_->nc(), fc, nullptr, 0);
    }
    // Everything before the heartbeat was taken off already: its last consumer sequence must
    // be the one handed on last, or messages went missing on the way.
    const char* last = nullptr;
    if (natsMsgHeader_Get(m, "Nats-Last-Consumer", &last) == NATS_OK && last != nullptr) {
      const std::uint64_t seq = std::strtoull(last, nullptr, 10);
      if (seq != consumer_seq_) reset(fmt::format("heartbeat reports consumer sequence {}, the last received was {}", seq, consumer_seq_));
    }
  }
  return true;
}

void OrderedCore::pump() noexcept {
  if (!active_ || pumping_) return;
  pumping_ = true;
  hold_queued();
  MsgPtr m;
  while (can_dispatch() && running_ < max_concurrency_ && next_message(m)) {
    last_activity_ = Clock::now();
    if (handle_control(m.get())) {
      if (sub_ == nullptr) break;  // reset
      continue;
    }
    const char* reply = natsMsg_GetReply(m.get());
    const AckTokens t = ack_tokens(reply == nullptr ? std::string_view() : std::string_view(reply));
    if (t.consumer_seq == 0) continue;  // not a delivery of this consumer
    if (t.consumer_seq != consumer_seq_ + 1) {
      reset(fmt::format("consumer sequence {} after {}", t.consumer_seq, consumer_seq_));
      break;
    }
    consumer_seq_ = t.consumer_seq;
    stream_seq_ = t.stream_seq;
    try {
      dispatch(std::move(m));
    } catch (const std::exception& e) {
      log(LogLevel::error, "sub_dispatch_failed", {{"subject", subject_}, {"error", e.what()}});
    }
  }
  // cnats drops what arrives when its queue is full: everything queued came before the first
  // drop. Once that is taken, go on from there now rather than at the next heartbeat.
  if (sub_ != nullptr && held_.empty() && queued() == 0 && dropped() != drops_seen_) {
    reset(fmt::format("cnats dropped {} messages (the reader fell behind)", dropped() - drops_seen_));
  }
  pumping_ = false;
}

void OrderedCore::limit_queue(int messages) noexcept {
  pending_msgs_ = messages;
  hold_limit_ = static_cast<std::size_t>(messages);
  if (sub_ != nullptr) natsSubscription_SetPendingLimits(sub_, pending_msgs_, pending_bytes_);
}

void OrderedCore::on_disconnected() noexcept {
  // What arrived on the lost connection comes again from the consumer opened after it.
  drop_subscription();
}

void OrderedCore::resubscribe(natsConnection* nc) noexcept {
  if (!active_ || nc == nullptr) return;
  // The consumer lives in the server's memory: after a reconnect it may be gone, or have sent
  // into the void meanwhile. A new one goes on where the reader is.
  reset("reconnected");
}

void OrderedCore::stop() noexcept {
  const bool cancelled = hb_timer_ && bus_->loop() != nullptr && bus_->loop()->cancel_timer(hb_timer_);
  hb_timer_ = {};
  const bool was_active = active_;
  drop_subscription();
  if (was_active && !consumer_.empty() && bus_->is_open() && bus_->loop() != nullptr) {
    bus_->loop()->spawn(delete_quietly(Ref<SubHost>(bus_.get()), stream_, consumer_));
  }
  consumer_.clear();
  if (Loop* loop = bus_->loop(); loop != nullptr) stopped_.wake_all(*loop);
  SubCore::stop();
  if (cancelled) release();
}

void OrderedCore::arm_heartbeat_watch() {
  Loop* loop = bus_->loop();
  if (loop == nullptr || spec_.idle_heartbeat.count() <= 0) return;
  last_activity_ = Clock::now();
  add_ref();  // the timer's reference
  hb_timer_ = loop->add_timer(saturating_deadline(spec_.idle_heartbeat), Work{&OrderedCore::heartbeat_check, this, nullptr});
}

void OrderedCore::heartbeat_check(void* a, void*, bool run) noexcept {
  auto* self = static_cast<OrderedCore*>(a);
  self->hb_timer_ = {};
  if (run && self->active_) {
    // Messages waiting behind a slow reader are activity too: the server is not gone.
    if (self->queued() > 0 || self->running_ > 0 || self->recreating_) self->last_activity_ = Clock::now();
    if (Clock::now() - self->last_activity_ > 3 * self->spec_.idle_heartbeat && self->bus_->has_connection()) {
      self->reset("no message or heartbeat for three idle_heartbeat intervals");
    }
    if (Loop* loop = self->bus_->loop(); loop != nullptr && self->active_) {
      self->add_ref();
      self->hb_timer_ =
          loop->add_timer(saturating_deadline(self->spec_.idle_heartbeat), Work{&OrderedCore::heartbeat_check, self, nullptr});
    }
  }
  self->release();
}

}  // namespace natbus::detail
