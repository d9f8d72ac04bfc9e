// The subscription machinery every kind shares (see subscription.hpp).
#include "subscription/subscription.hpp"

#include <fmt/format.h>

#include <array>
#include <cstring>

#include "base/util.hpp"
#include "base/validate.hpp"
#include "message/trace.hpp"
#include "natbus/json.hpp"
#include "transport/request.hpp"

namespace natbus::detail {

AckTokens ack_tokens(std::string_view reply) noexcept {
  if (!reply.starts_with("$JS.ACK.")) return {};
  std::array<std::string_view, 12> tokens{};
  std::size_t n = 0;
  std::size_t start = 0;
  while (n < tokens.size()) {
    const std::size_t dot = reply.find('.', start);
    tokens[n++] = reply.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (n != 9 && n < 12) return {};
  const auto number = [](std::string_view t) {
    std::uint64_t v = 0;
    for (char c : t) {
      if (c < '0' || c > '9') return std::uint64_t{0};
      v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return v;
  };
  const std::size_t at = n == 9 ? 4 : 6;  // v2 adds the domain and the account hash before the stream
  return AckTokens{number(tokens[at]), number(tokens[at + 1]), number(tokens[at + 2]), number(tokens[at + 4])};
}

// ---- SubCore ----------------------------------------------------------------------------------

SubCore::SubCore(SubHost* bus, std::unique_ptr<HandlerBase> handler, DeliverySettings settings)
    : manual_ack_(settings.manual_ack),
      max_concurrency_(settings.max_concurrency),
      dead_letter_subject_(std::move(settings.dead_letter_subject)),
      retry_backoff_(settings.retry_backoff),
      retry_backoff_steps_(std::move(settings.retry_backoff_steps)),
      bus_(bus),
      handler_(std::move(handler)) {}

SubCore::~SubCore() {
  if (sub_ != nullptr) {
    natsSubscription_Unsubscribe(sub_);
    natsSubscription_Destroy(sub_);
    sub_ = nullptr;
  }
  // A start that never finished (its coroutine destroyed while it waited for the server's
  // answer) registered this subscription without a handle to stop it: the bus must forget it.
  bus_->remove_sink(this);
  bus_->unregister_sub(this);
}

void SubCore::drop_handle() noexcept {
  if (--handles_ == 0) stop();
}

namespace {
constexpr auto kDrainPoll = std::chrono::milliseconds(2);  // a drain takes a round trip: look often
}  // namespace

void SubCore::stop() noexcept {
  if (draining_) {
    // Stopped again while draining: on a connection that is going away, end it now.
    if (!bus_->has_connection()) finish_stop();
    return;
  }
  if (!active_ && sub_ == nullptr) return;
  active_ = false;
  if (handler_) handler_->on_stop();
  Loop* loop = bus_->loop();
  // Drain: cnats sends the UNSUB and, on its own thread, waits for the PONG that says nothing
  // more comes; every message that arrives until then is given back (nak'ed), not dropped.
  if (sub_ == nullptr || !drains_on_stop() || !bus_->has_connection() || loop == nullptr) {
    nak_queued();
    finish_stop();
    return;
  }
  draining_ = true;
  unsub_sent_ = false;
  add_ref();  // the drain's reference: released by finish_stop()
  // Messages may still be on their way that an UNSUB now would send into the void, redelivered
  // only after ack_wait (a push consumer's in a slow reader's socket, a pull request being
  // filled): first hold (not nak) what arrives until the consumer kind says nothing more comes.
  if (!begin_hold_before_unsubscribe()) {
    start_drain();
    if (!draining_) return;
  }
  if (!drain_step()) drain_timer_ = loop->add_timer(Clock::now() + kDrainPoll, Work{&SubCore::drain_tick, this, nullptr});
}

void SubCore::start_drain() noexcept {
  const auto timeout = bus_->config().js_api_timeout;
  if (natsSubscription_DrainTimeout(sub_, cnats_ms(timeout)) != NATS_OK) {
    finish_stop();  // nak_queued() ran already
    return;
  }
  unsub_sent_ = true;
  drain_deadline_ = saturating_deadline(std::chrono::duration<double>(timeout) + std::chrono::seconds(1));
}

void SubCore::drain_tick(void* a, void*, bool run) noexcept {
  auto* self = static_cast<SubCore*>(a);
  self->drain_timer_ = {};
  if (!run) {
    self->finish_stop();
    return;
  }
  if (self->drain_step()) return;
  if (Loop* loop = self->bus_->loop(); loop != nullptr) {
    self->drain_timer_ = loop->add_timer(Clock::now() + kDrainPoll, Work{&SubCore::drain_tick, self, nullptr});
  } else {
    self->finish_stop();
  }
}

std::uint64_t SubCore::note_received(natsMsg* m) noexcept {
  const char* reply = natsMsg_GetReply(m);
  if (reply == nullptr) return 0;
  const AckTokens t = ack_tokens(reply);
  max_consumer_seq_ = std::max(max_consumer_seq_, t.consumer_seq);
  return t.delivered;
}

Task<void> SubCore::wait_in_flight(Ref<SubCore> self) {
  // Consumer sequences rise with each delivery: the newest message held is the furthest one.
  if (!self->held_.empty()) (void)self->note_received(self->held_.back().get());
  std::uint64_t target = 0;
  try {
    const ConsumerInfo info = co_await self->bus_->consumer_info(self->stream_, self->durable_);
    target = info.delivered_consumer_sequence;
  } catch (const std::exception& e) {
    log(LogLevel::debug, "sub_drain_info_failed", {{"durable", self->durable_}, {"error", e.what()}});
  }
  self->in_flight_target_ = target;
  self->in_flight_known_ = true;
}

bool SubCore::drain_step() noexcept {
  if (!draining_) return true;
  if (!unsub_sent_) {
    hold_queued();
    const auto now = Clock::now();
    if (!ready_to_unsubscribe(now) && now <= drain_deadline_ && bus_->has_connection() && sub_ != nullptr) return false;
    if (sub_ == nullptr || !bus_->has_connection()) {
      finish_stop();
      return true;
    }
    start_drain();
    if (!draining_) return true;
  }
  drain_queued();
  // The drain is complete once the PONG came and cnats' queue is empty (anything else than
  // "still in progress" ends it: done, or the subscription or connection closed meanwhile),
  // and nothing waits in held_ (a subscription that answers what it holds before it stops).
  const bool gone = sub_ == nullptr || !bus_->has_connection() || Clock::now() > drain_deadline_;
  if (gone || (held_.empty() && natsSubscription_DrainCompletionStatus(sub_) != NATS_ILLEGAL_STATE)) {
    finish_stop();
    return true;
  }
  return false;
}

void SubCore::finish_stop() noexcept {
  const bool was_draining = std::exchange(draining_, false);
  if (drain_timer_) {
    if (Loop* loop = bus_->loop(); loop != nullptr) loop->cancel_timer(drain_timer_);
    drain_timer_ = {};
  }
  active_ = false;
  if (sub_ != nullptr) {
    natsSubscription_Unsubscribe(sub_);  // a no-op after a drain
    natsSubscription_Destroy(sub_);
    sub_ = nullptr;
  }
  held_.clear();  // what could not be nak'ed (no connection) comes back after ack_wait
  held_bytes_ = 0;
  bus_->remove_sink(this);
  bus_->unregister_sub(this);
  if (running_ == 0 && bus_->loop() != nullptr) idle_.wake_all(*bus_->loop());
  if (was_draining) release();  // may free this
}

void SubCore::on_disconnected() noexcept {
  hold_queued();
  if (sub_ != nullptr) {
    std::int64_t d = 0;
    if (natsSubscription_GetDropped(sub_, &d) == NATS_OK && d > 0) dropped_before_ += static_cast<std::uint64_t>(d);
    natsSubscription_Unsubscribe(sub_);  // a no-op on a closed connection; leaving a live one (lame duck): UNSUB
    natsSubscription_Destroy(sub_);
    sub_ = nullptr;
  }
}

void SubCore::subscribe_on(natsConnection* nc, const ErrorContext& ctx) {
  natsSubscription* sub = nullptr;
  const natsStatus s = wire_queue_.empty() ? natsConnection_SubscribeSync(&sub, nc, wire_subject_.c_str())
                                           : natsConnection_QueueSubscribeSync(&sub, nc, wire_subject_.c_str(), wire_queue_.c_str());
  if (s != NATS_OK) throw_status(s, ctx, "subscribing");
  natsSubscription_SetPendingLimits(sub, pending_msgs_, pending_bytes_);
  sub_ = sub;
}

void SubCore::resubscribe(natsConnection* nc) noexcept {
  if (!active_ || sub_ != nullptr || nc == nullptr) return;
  try {
    ErrorContext ctx;
    ctx.operation = "resubscribe";
    ctx.subject = wire_subject_;
    ctx.stream = stream_;
    ctx.durable = durable_;
    subscribe_on(nc, ctx);
  } catch (const std::exception& e) {
    log(LogLevel::error, "sub_resubscribe_failed", {{"subject", subject_}, {"durable", durable_}, {"error", e.what()}});
  }
}

void SubCore::hold_queued() noexcept {
  if (sub_ == nullptr) return;
  while (held_.size() < hold_limit_ && held_bytes_ < hold_bytes_limit_) {
    int pending = 0;
    if (natsSubscription_GetPending(sub_, &pending, nullptr) != NATS_OK || pending <= 0) return;
    natsMsg* raw = nullptr;
    const natsStatus s = natsSubscription_NextMsg(&raw, sub_, 0);
    if (s == NATS_NO_RESPONDERS) {
      // NextMsg swallowed a 503 (a pull request nobody answered: stream or consumer gone).
      on_no_responders();
      if (sub_ == nullptr) return;
      continue;
    }
    if (s == NATS_SLOW_CONSUMER) {
      // cnats dropped messages (its queue was full): JetStream redelivers them after ack_wait.
      report_drops();
      continue;
    }
    if (s != NATS_OK || raw == nullptr) return;
    if (draining_) {
      note_received(raw);  // otherwise dispatch() notes it
      if (!keep_while_draining(raw)) {
        NatsMsgDeleter{}(raw);
        continue;
      }
    }
    try {
      held_.emplace_back(raw);
      held_bytes_ += static_cast<std::size_t>(natsMsg_GetDataLength(raw)) + std::strlen(natsMsg_GetSubject(raw));
    } catch (const std::bad_alloc&) {
      NatsMsgDeleter{}(raw);  // JetStream redelivers it after ack_wait
      return;
    }
  }
}

std::uint64_t SubCore::dropped() const noexcept {
  std::int64_t now = 0;
  if (sub_ != nullptr) natsSubscription_GetDropped(sub_, &now);
  return dropped_before_ + static_cast<std::uint64_t>(std::max<std::int64_t>(now, 0));
}

void SubCore::report_drops() noexcept {
  const std::uint64_t total = dropped();
  if (total == dropped_logged_) return;
  const auto now = Clock::now();
  if (dropped_logged_ != 0 && now - drop_logged_at_ < std::chrono::seconds(10)) return;
  log(LogLevel::warn, "sub_slow_consumer",
      {{"subject", subject_},
       {"durable", durable_},
       {"queue", queue_},
       {"dropped", std::to_string(total - dropped_logged_)},
       {"dropped_total", std::to_string(total)},
       {"queued", std::to_string(held_.size())},
       {"effect", durable_.empty() && stream_.empty() ? "lost (core NATS)" : "redelivered after ack_wait"}});
  dropped_logged_ = total;
  drop_logged_at_ = now;
}

bool SubCore::next_message(MsgPtr& out) noexcept {
  if (held_.empty()) hold_queued();
  if (held_.empty()) return false;
  out = std::move(held_.front());
  held_.pop_front();
  const std::size_t size = static_cast<std::size_t>(natsMsg_GetDataLength(out.get())) + std::strlen(natsMsg_GetSubject(out.get()));
  held_bytes_ = held_bytes_ > size ? held_bytes_ - size : 0;
  return true;
}

std::size_t SubCore::queued() const noexcept {
  int pending = 0;
  if (sub_ != nullptr) natsSubscription_GetPending(sub_, &pending, nullptr);
  return held_.size() + static_cast<std::size_t>(std::max(pending, 0));
}

void SubCore::nak_queued() noexcept {
  // Draining, the UNSUB is out: a message goes back with a short delay, so that the server has
  // noticed the lost interest (a push consumer learns it asynchronously) before it redelivers
  // it, to another subscriber rather than into the void.
  constexpr auto kGiveBackDelay = std::chrono::milliseconds(500);
  static const std::string delayed = nak_body(std::chrono::nanoseconds(kGiveBackDelay));
  static const std::string plain = nak_body(std::nullopt);
  MsgPtr m;
  int naked = 0;
  while (next_message(m)) {
    const char* reply = natsMsg_GetReply(m.get());
    if (reply == nullptr || !std::string_view(reply).starts_with("$JS.ACK.") || !bus_->has_connection()) continue;
    if (draining_) {
      natsConnection_Publish(bus_->nc(), reply, delayed.data(), static_cast<int>(delayed.size()));
    } else {
      natsConnection_Publish(bus_->nc(), reply, plain.data(), static_cast<int>(plain.size()));
    }
    ++naked;
  }
  if (naked > 0)
    log(LogLevel::debug, "sub_stopped_naked", {{"subject", subject_}, {"durable", durable_}, {"count", std::to_string(naked)}});
}

namespace {

/// Owns one reference to a MsgImpl (a Detached coroutine's parameter must release it even when
/// the loop destroys the coroutine unfinished).
class MsgHold {
 public:
  explicit MsgHold(MsgImpl* m) noexcept : m_(m) {}
  MsgHold(MsgHold&& o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
  MsgHold(const MsgHold&) = delete;
  MsgHold& operator=(const MsgHold&) = delete;
  MsgHold& operator=(MsgHold&&) = delete;
  ~MsgHold() {
    if (m_ != nullptr) m_->release();
  }
  MsgImpl* release() noexcept { return std::exchange(m_, nullptr); }
  [[nodiscard]] MsgImpl* get() const noexcept { return m_; }

 private:
  MsgImpl* m_;
};

Detached run_handler(Ref<SubCore> sub, MsgHold hold) {
  std::exception_ptr error;
  const TraceHooks& hooks = trace_hooks();
  TraceContext incoming{};
  if (hooks.on_handler_start != nullptr || hooks.on_handler_end != nullptr) {
    hold.get()->add_ref();
    const ReceivedMessage view(kLibrary, hold.get());  // released before the handler runs
    incoming = view.trace_context();
    if (hooks.on_handler_start != nullptr) hooks.on_handler_start(view, incoming, hooks.user);
  }
  try {
    hold.get()->add_ref();
    ReceivedMessage msg(kLibrary, hold.get());  // lives until the handler has finished
    co_await sub->handler().invoke(msg);
  } catch (...) {
    error = std::current_exception();
  }
  if (hooks.on_handler_end != nullptr) {
    hold.get()->add_ref();
    const ReceivedMessage view(kLibrary, hold.get());
    hooks.on_handler_end(view, incoming, error, hooks.user);
  }
  if (sub->wants_dead_letter(*hold.get(), error)) co_await sub->dead_letter(*hold.get(), error);
  sub->handler_done(hold.release(), error);
}

std::string error_text(const std::exception_ptr& error) {
  if (!error) return "handler rejected the message (nak)";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
  }
  return "unknown exception";
}

/// The delivery count in a $JS.ACK reply subject, 0 otherwise.
std::uint64_t delivery_count(std::string_view reply) noexcept { return ack_tokens(reply).delivered; }

bool is_poison(const std::exception_ptr& error) {
  if (!error) return false;
  try {
    std::rethrow_exception(error);
  } catch (const PoisonMessageError&) {
    return true;
  } catch (...) {
  }
  return false;
}

}  // namespace

bool SubCore::wants_dead_letter(const MsgImpl& msg, const std::exception_ptr& error) const {
  if (dead_letter_subject_.empty()) return false;
  if (is_poison(error)) return msg.state == AckState::none;  // it would fail on every delivery
  if (max_deliver_ <= 0) return false;
  const bool failed = error ? msg.state == AckState::none : msg.state == AckState::naked;
  if (!failed) return false;
  const char* reply = natsMsg_GetReply(msg.msg.get());
  const auto md = parse_metadata(reply == nullptr ? "" : reply);
  return md && md->num_delivered >= static_cast<std::uint64_t>(max_deliver_);
}

Task<void> SubCore::dead_letter(MsgImpl& msg, std::exception_ptr error) {
  Ref<SubCore> keep(this);
  msg.add_ref();
  const ReceivedMessage m(kLibrary, &msg);
  const auto md = m.metadata();
  const std::string reason = is_poison(error) ? "payload cannot be decoded"
                             : error          ? "handler failed on the last delivery"
                                              : "handler rejected the last delivery";
  try {
    MessageOptions o;
    o.ensure_trace = false;
    o.correlation_id = m.correlation_id();
    auto dlq = BusMessage::from_bytes(dead_letter_subject_, m.raw_payload(), o);
    // The original headers, as they were (content-type, trace, encoding...).
    for (const auto& name : {"content-type", "x-correlation-id"}) dlq.remove_header(name);
    for (const auto& [k, v] : m.headers()) {
      if (header_name_problem(k).empty() && header_value_problem(v).empty()) dlq.add_header(k, v);
    }
    if (!dlq.header("x-correlation-id")) dlq.set_header("x-correlation-id", uuid4());
    dlq.set_header("x-dead-letter-reason", reason);
    std::string why = error_text(error);
    for (auto& c : why) {
      if (c == '\r' || c == '\n' || static_cast<unsigned char>(c) >= 0x80 || static_cast<unsigned char>(c) < 0x20) c = ' ';
    }
    dlq.set_header("x-dead-letter-error", why.substr(0, 512));
    dlq.set_header("x-dead-letter-subject", m.subject());
    dlq.set_header("x-dead-letter-stream", stream_);
    dlq.set_header("x-dead-letter-durable", durable_);
    dlq.set_header("x-dead-letter-sequence", std::to_string(md ? md->stream_sequence : 0));
    dlq.set_header("x-dead-letter-deliveries", std::to_string(md ? md->num_delivered : 0));
    auto future = co_await bus_->publish(std::move(dlq));
    co_await std::move(future);
    if (msg.state == AckState::none) send_ack(msg, "term", "+TERM", AckState::termed);
    log(LogLevel::warn, "sub_dead_lettered",
        {{"subject", std::string(m.subject())},
         {"durable", durable_},
         {"dead_letter_subject", dead_letter_subject_},
         {"deliveries", std::to_string(md ? md->num_delivered : 0)},
         {"reason", reason}});
  } catch (const std::exception& e) {
    log(LogLevel::error, "sub_dead_letter_failed",
        {{"subject", std::string(m.subject())}, {"durable", durable_}, {"dead_letter_subject", dead_letter_subject_}, {"error", e.what()}});
  }
}

void SubCore::dispatch(MsgPtr m) {
  auto* impl = new MsgImpl(std::move(m), bus_->ack_target());
  impl->no_ack = no_ack_;
  impl->started = Clock::now();
  if (note_received(impl->msg.get()) > 1) ++redelivered_;
  ++running_;
  ++delivered_;
  bus_->handler_started();
  run_handler(Ref<SubCore>(this), MsgHold(impl));
}

void SubCore::handler_done(MsgImpl* msg, const std::exception_ptr& error) noexcept {
  MsgHold hold(msg);
  handler_seconds_.observe(std::chrono::duration<double>(Clock::now() - msg->started).count());
  if (error) ++handler_errors_;
  const bool jetstream =
      natsMsg_GetReply(msg->msg.get()) != nullptr && std::string_view(natsMsg_GetReply(msg->msg.get())).starts_with("$JS.ACK.");
  if (error && is_poison(error)) {
    // Decoding fails the same way on every redelivery: terminate, never nak.
    const char* reply = natsMsg_GetReply(msg->msg.get());
    const auto md = parse_metadata(reply == nullptr ? "" : reply);
    log(LogLevel::error, "sub_poison_message",
        {{"subject", std::string(natsMsg_GetSubject(msg->msg.get()))},
         {"durable", durable_},
         {"stream_seq", std::to_string(md ? md->stream_sequence : 0)},
         {"error", error_text(error)}});
    if (jetstream && msg->state == AckState::none) {
      try {
        send_ack(*msg, "term", "+TERM", AckState::termed);
      } catch (const std::exception& e) {
        log(LogLevel::warn, "sub_term_failed", {{"durable", durable_}, {"error", e.what()}});
      }
    }
  } else if (error) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    // Nak with a delay that grows with the delivery count: a handler failing because its
    // database is down must not replay the message at network speed.
    const bool naks = jetstream && msg->state == AckState::none;
    const auto delay = naks ? backoff_delay(retry_backoff_, retry_backoff_steps_, delivery_count(natsMsg_GetReply(msg->msg.get())))
                            : std::chrono::milliseconds(0);
    log(LogLevel::error, "sub_handler_error",
        {{"subject", std::string(natsMsg_GetSubject(msg->msg.get()))},
         {"durable", durable_},
         {"queue", queue_},
         {"error", what},
         {"redelivery_delay_ms", naks ? std::to_string(delay.count()) : std::string("-")}});
    if (naks) {
      try {
        send_nak(*msg, "nak", delay.count() > 0 ? std::optional(saturating_ns(delay)) : std::nullopt);
      } catch (const std::exception& e) {
        log(LogLevel::warn, "sub_nak_failed", {{"durable", durable_}, {"error", e.what()}});
      }
    }
  } else if (!manual_ack_ && jetstream && msg->state == AckState::none) {
    try {
      send_ack(*msg, "ack", "+ACK", AckState::acked);
    } catch (const std::exception& e) {
      log(LogLevel::warn, "sub_ack_failed", {{"durable", durable_}, {"error", e.what()}});
    }
  }
  --running_;
  bus_->handler_finished();
  if (running_ == 0 && bus_->loop() != nullptr) idle_.wake_all(*bus_->loop());
  if (active_ && !pumping_) {
    pump();
    after_handler();
  }
}

Task<void> SubCore::wait_idle(Clock::time_point deadline) {
  Ref<SubCore> keep(this);
  while (running_ > 0 || draining_) {
    const bool woken = co_await WaitUntil(idle_, deadline);
    if (!woken) break;
  }
}

}  // namespace natbus::detail

namespace natbus::detail {

void throw_poison(const ReceivedMessage& msg, const std::string& decode_error) {
  const auto md = msg.metadata();
  throw PoisonMessageError(
      fmt::format("payload cannot be decoded for the typed handler (stream sequence {}): {}", md ? md->stream_sequence : 0, decode_error),
      ErrorContext{.operation = "typed handler", .subject = std::string(msg.subject()), .stream = md ? md->stream : std::string()});
}

}  // namespace natbus::detail
