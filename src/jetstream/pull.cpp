// Pull consumers on the JetStream pull protocol, over a core subscription on a private inbox.
#include <algorithm>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "base/util.hpp"
#include "jetstream/consumer.hpp"
#include "jetstream/server_errors.hpp"
#include "transport/request.hpp"

namespace natbus::detail {

namespace {

constexpr auto kLostGrace = std::chrono::milliseconds(2000);
// Unanswered requests in a row after which the consumer is checked (and recreated if gone).
constexpr int kLostBeforeRecovery = 4;
constexpr auto kBackoff = std::chrono::milliseconds(1000);

template <class D>
std::int64_t ns(D d) {
  return static_cast<std::int64_t>(saturating_ns(d).count());
}

// Stopping: no arrival for this long, and no handler running (whose ack could free the
// server to send one more), means no request is being filled right now.
constexpr auto kQuietBeforeUnsubscribe = std::chrono::milliseconds(100);
// Our clock starts a request's expiry when it leaves, the server's when it arrives.
constexpr auto kExpiryGrace = std::chrono::milliseconds(100);

bool is_status(natsMsg* m) {
  if (natsMsg_GetDataLength(m) != 0) return false;
  const char* s = nullptr;
  return natsMsgHeader_Get(m, "Status", &s) == NATS_OK && s != nullptr;
}

}  // namespace

Task<void> PullCore::start(ConsumerSpec spec, int batch, std::chrono::milliseconds expires, std::chrono::milliseconds heartbeat) {
  SubHost& bus = *bus_;
  subject_ = spec.filter_subject;
  stream_ = spec.stream;
  durable_ = spec.durable;
  batch_ = batch;
  expires_ = expires;
  heartbeat_ = heartbeat;
  const ConsumerInfo info = co_await ensure_consumer(bus.js(), spec);
  max_deliver_ = info.raw["config"].value("max_deliver", -1);
  spec_ = spec;
  bus.ensure_open(spec.op);
  inbox_ = bus.js().new_inbox() + ".";
  next_subject_ = bus.js().api_subject(fmt::format("CONSUMER.MSG.NEXT.{}.{}", stream_, durable_));
  wire_subject_ = inbox_ + "*";
  pending_msgs_ = -1;  // bounded by the two requests in flight
  pending_bytes_ = -1;
  {
    ErrorContext ctx;
    ctx.operation = spec.op;
    ctx.stream = stream_;
    ctx.durable = durable_;
    subscribe_on(bus.nc(), ctx);
  }
  active_ = true;
  bus.add_sink(this);
  bus.register_sub(this);
  arm_watchdog();
  if (handler_) request_more();
  log(LogLevel::info, "sub_started",
      {{"kind", handler_ ? "pull" : "pull_fetch"},
       {"subject", subject_},
       {"stream", stream_},
       {"durable", durable_},
       {"batch", std::to_string(batch_)},
       {"expires_ms", std::to_string(expires_.count())},
       {"manual_ack", manual_ack_ ? "true" : "false"}});
}

PullCore::Request* PullCore::find_request(std::uint64_t id) noexcept {
  for (auto& r : requests_) {
    if (r.id == id) return &r;
  }
  return nullptr;
}

void PullCore::erase_request(std::uint64_t id) noexcept {
  std::erase_if(requests_, [id](const Request& r) { return r.id == id; });
}

std::uint64_t PullCore::send_request(int batch, std::chrono::milliseconds expires, bool no_wait) {
  const std::uint64_t id = next_request_++;
  nlohmann::json body = {{"batch", batch}};
  if (no_wait) {
    body["no_wait"] = true;
  } else {
    body["expires"] = ns(expires);
    if (heartbeat_.count() > 0 && heartbeat_ * 2 <= expires) body["idle_heartbeat"] = ns(heartbeat_);
  }
  if (!bus_->has_connection()) {
    ErrorContext ctx;
    ctx.operation = "pull";
    ctx.stream = stream_;
    ctx.durable = durable_;
    throw ConnectionError("not connected to NATS (reconnecting): the pull request was not sent", ctx);
  }
  const std::string reply = inbox_ + std::to_string(id);
  const std::string data = body.dump();
  const natsStatus s =
      natsConnection_PublishRequest(bus_->nc(), next_subject_.c_str(), reply.c_str(), data.data(), static_cast<int>(data.size()));
  if (s != NATS_OK) {
    ErrorContext ctx;
    ctx.operation = "pull";
    ctx.stream = stream_;
    ctx.durable = durable_;
    throw_status(s, ctx, "sending a pull request");
  }
  const auto now = Clock::now();
  const auto life = no_wait ? bus_->config().js_api_timeout : expires;
  requests_.push_back(Request{id, batch, life >= std::chrono::hours(24 * 365) ? Clock::time_point::max() : now + life, now});
  return id;
}

void PullCore::consume_credit() noexcept {
  if (requests_.empty()) return;  // a late message of a request we gave up on
  Request& r = requests_.front();
  r.last_seen = Clock::now();
  if (--r.remaining <= 0) {
    const std::uint64_t id = r.id;
    requests_.pop_front();
    if (fetch_ != nullptr && fetch_->request == id) fetch_->finished = true;
  }
}

void PullCore::request_more() noexcept {
  if (!handler_ || !active_ || backoff_timer_ || recovering_ || sub_ == nullptr || !bus_->has_connection()) return;
  const int queued = static_cast<int>(std::min<std::size_t>(this->queued(), 1U << 30U));
  int outstanding = 0;
  for (const auto& r : requests_) outstanding += r.remaining;
  // Keep the next batch requested while this one is handled: at most two batches ahead.
  try {
    while (queued + outstanding <= batch_ && requests_.size() < 2) {
      send_request(batch_, expires_, false);
      outstanding += batch_;
    }
  } catch (const std::exception& e) {
    log(LogLevel::warn, "pull_request_failed", {{"stream", stream_}, {"durable", durable_}, {"error", e.what()}});
  }
}

std::uint64_t PullCore::request_of(natsMsg* m) const noexcept {
  const char* subject = natsMsg_GetSubject(m);
  const std::string_view subj(subject == nullptr ? "" : subject);
  std::uint64_t id = 0;
  if (subj.size() > inbox_.size()) {
    const std::string_view tail = subj.substr(inbox_.size());
    std::from_chars(tail.data(), tail.data() + tail.size(), id);
  }
  return id;
}

void PullCore::on_status(natsMsg* m) noexcept {
  const std::uint64_t id = request_of(m);
  const char* code_c = nullptr;
  const char* desc_c = nullptr;
  natsMsgHeader_Get(m, "Status", &code_c);
  natsMsgHeader_Get(m, "Description", &desc_c);
  const std::string_view code(code_c == nullptr ? "" : code_c);
  const std::string desc(desc_c == nullptr ? "" : desc_c);
  Request* r = find_request(id);
  if (code == "100") {  // idle heartbeat of a waiting request
    if (r != nullptr) r->last_seen = Clock::now();
    return;
  }
  if (r == nullptr) return;  // the status of a request already given up on: stale, ignore
  erase_request(id);
  const bool ends_fetch = fetch_ != nullptr && fetch_->request == id;
  if (code == "404" || code == "408") {  // no messages / request expired: nothing wrong
    if (ends_fetch) fetch_->finished = true;
    return;
  }
  const bool leadership = desc.find("Leadership Change") != std::string::npos;
  const bool deleted = desc.find("Consumer Deleted") != std::string::npos || code == "503";
  const bool max_waiting = desc.find("MaxWaiting") != std::string::npos;
  if (ends_fetch) {
    fetch_->finished = true;
    if (!leadership && !max_waiting) {
      ErrorContext ctx;
      ctx.operation = "fetch";
      ctx.stream = stream_;
      ctx.durable = durable_;
      fetch_->error = pull_status_error(code, desc, std::move(ctx));
    }
  }
  if (leadership) {
    log(LogLevel::info, "pull_leadership_change", {{"stream", stream_}, {"durable", durable_}});
    return;  // request_more() re-pulls at once
  }
  log(deleted ? LogLevel::error : LogLevel::warn, "pull_request_refused",
      {{"stream", stream_}, {"durable", durable_}, {"status", std::string(code)}, {"description", desc}});
  if (deleted) {
    recover();
    return;
  }
  // MaxWaiting, MaxRequestBatch, MaxBytes...: back off instead of hammering the server.
  if (handler_ && !backoff_timer_ && bus_->loop() != nullptr) {
    add_ref();
    backoff_timer_ = bus_->loop()->add_timer(Clock::now() + kBackoff, Work{&PullCore::resume_requests, this, nullptr});
  }
}

void PullCore::on_no_responders() noexcept {
  // Which request it answered is lost (cnats destroyed the status): all of them are void.
  log(LogLevel::error, "pull_request_refused",
      {{"stream", stream_}, {"durable", durable_}, {"status", "503"}, {"description", "no responders: stream or consumer gone"}});
  requests_.clear();
  if (fetch_ != nullptr && !fetch_->finished) {
    ErrorContext ctx;
    ctx.operation = "fetch";
    ctx.stream = stream_;
    ctx.durable = durable_;
    fetch_->error =
        std::make_exception_ptr(NotFoundError("no JetStream consumer answered the pull request (stream or consumer deleted?)", ctx));
    fetch_->finished = true;
  }
  if (handler_) recover();
}

void PullCore::resume_requests(void* a, void*, bool run) noexcept {
  auto* self = static_cast<PullCore*>(a);
  self->backoff_timer_ = {};
  if (run) self->request_more();
  self->release();
}

void PullCore::pump() noexcept {
  if (pumping_ || (sub_ == nullptr && held_.empty())) return;
  pumping_ = true;
  hold_queued();
  MsgPtr m;
  for (;;) {
    if (handler_) {
      if (!can_dispatch() || running_ >= max_concurrency_) break;
    } else if (fetch_ == nullptr || fetch_->finished) {
      break;  // fetch mode: messages wait in the queue for the next fetch
    }
    if (!next_message(m)) break;
    lost_in_a_row_ = 0;  // the server answers
    if (is_status(m.get())) {
      on_status(m.get());
      continue;
    }
    consume_credit();
    if (handler_) {
      try {
        dispatch(std::move(m));
      } catch (const std::exception& e) {
        log(LogLevel::error, "sub_dispatch_failed", {{"durable", durable_}, {"error", e.what()}});
      }
    } else {
      try {
        fetch_->msgs.emplace_back(kLibrary, new MsgImpl(std::move(m), bus_->ack_target()));
      } catch (const std::bad_alloc&) {
        fetch_->error = std::current_exception();
        fetch_->finished = true;
      }
      if (static_cast<int>(fetch_->msgs.size()) >= fetch_->batch) fetch_->finished = true;
    }
  }
  pumping_ = false;
  if (fetch_ != nullptr && fetch_->finished && bus_->loop() != nullptr) fetch_->wake.wake_all(*bus_->loop());
  if (handler_ && active_) request_more();
}

void PullCore::on_disconnected() noexcept {
  SubCore::on_disconnected();
  // Waiting requests belonged to the old connection (a pull parked there is never waited for,
  // ADR-37): forget them; the new connection gets fresh ones.
  requests_.clear();
  if (fetch_ != nullptr) {
    fetch_->finished = true;
    if (bus_->loop() != nullptr) fetch_->wake.wake_all(*bus_->loop());
  }
}

void PullCore::resubscribe(natsConnection* nc) noexcept {
  SubCore::resubscribe(nc);
  request_more();
}

void PullCore::arm_watchdog() {
  Loop* loop = bus_->loop();
  if (loop == nullptr || watchdog_timer_) return;
  const auto period =
      std::max(std::chrono::milliseconds(250), std::min(heartbeat_.count() > 0 ? heartbeat_ : expires_, std::chrono::milliseconds(5000)));
  add_ref();
  watchdog_timer_ = loop->add_timer(Clock::now() + period, Work{&PullCore::watchdog, this, nullptr});
}

void PullCore::watchdog(void* a, void*, bool run) noexcept {
  auto* self = static_cast<PullCore*>(a);
  self->watchdog_timer_ = {};
  if (run && self->active_) {
    const auto now = Clock::now();
    const bool busy = self->queued() > 0 || self->running_ > 0;
    int lost = 0;
    std::erase_if(self->requests_, [&](const Request& r) {
      // A request whose heartbeats stopped (server restart, lost interest) or that outlived its
      // expiry without a 408 is gone: replace it.
      const bool hb_lost =
          self->heartbeat_.count() > 0 && !busy && now - r.last_seen > 2 * self->heartbeat_ + std::chrono::milliseconds(500);
      const bool expired = now - kLostGrace > r.expires_at;
      if ((hb_lost || expired) && self->fetch_ != nullptr && self->fetch_->request == r.id) self->fetch_->finished = true;
      if (hb_lost || expired) {
        log(LogLevel::debug, "pull_request_lost", {{"durable", self->durable_}, {"request", std::to_string(r.id)}});
        ++lost;
      }
      return hb_lost || expired;
    });
    // Requests swallowed without a word, again and again (a consumer deleted with its stream
    // while requests waited, or a stalled server-side consumer): check and recreate it rather
    // than keep asking into the void.
    self->lost_in_a_row_ += lost;
    if (self->lost_in_a_row_ >= kLostBeforeRecovery && self->handler_) {
      log(LogLevel::warn, "pull_requests_unanswered",
          {{"stream", self->stream_}, {"durable", self->durable_}, {"requests", std::to_string(self->lost_in_a_row_)}});
      self->lost_in_a_row_ = 0;
      self->recover();
    }
    if (self->fetch_ != nullptr && self->fetch_->finished && self->bus_->loop() != nullptr) {
      self->fetch_->wake.wake_all(*self->bus_->loop());
    }
    self->request_more();
    self->arm_watchdog();
  }
  self->release();
}

namespace {
Detached run_recovery(Task<void> attempt) { co_await attempt; }
}  // namespace

Task<void> PullCore::recover_loop(Ref<PullCore> self) {
  while (self->active_ && self->bus_->is_open()) {
    bool ok = false;
    try {
      ConsumerSpec spec = self->spec_;
      co_await ensure_consumer(self->bus_->js(), spec);
      log(LogLevel::info, "pull_consumer_recovered", {{"stream", self->stream_}, {"durable", self->durable_}});
      ok = true;
    } catch (const std::exception& e) {
      log(LogLevel::error, "pull_consumer_recover_failed", {{"stream", self->stream_}, {"durable", self->durable_}, {"error", e.what()}});
    }
    if (ok) break;
    co_await natbus::sleep(std::chrono::seconds(2));
  }
  self->recovering_ = false;
  self->request_more();
}

void PullCore::recover() noexcept {
  if (recovering_ || !active_ || bus_->loop() == nullptr) return;
  recovering_ = true;
  requests_.clear();
  try {
    run_recovery(recover_loop(Ref<PullCore>(this)));
  } catch (...) {
    recovering_ = false;
  }
}

bool PullCore::begin_hold_before_unsubscribe() noexcept {
  if (requests_.empty()) return false;
  const auto now = Clock::now();
  // Past the latest expiry the server has ended every request; js_api_timeout bounds the wait
  // (a handler that runs long, requests that never expire).
  const auto cap = saturating_deadline(bus_->config().js_api_timeout);
  auto last = now;
  for (const auto& r : requests_) last = std::max(last, r.expires_at);
  drain_deadline_ = last < cap - kExpiryGrace ? last + kExpiryGrace : cap;
  last_arrival_ = now;
  return true;
}

bool PullCore::ready_to_unsubscribe(Clock::time_point now) noexcept {
  std::erase_if(requests_, [&](const Request& r) { return now - kExpiryGrace > r.expires_at; });
  return requests_.empty() || (running_ == 0 && now - last_arrival_ >= kQuietBeforeUnsubscribe);
}

bool PullCore::keep_while_draining(natsMsg* m) noexcept {
  if (unsub_sent_) return true;  // after the UNSUB only the naks matter
  last_arrival_ = Clock::now();
  if (is_status(m)) {
    // A request's end (408 expired, 409...), or a heartbeat of one that still waits.
    const char* code = nullptr;
    natsMsgHeader_Get(m, "Status", &code);
    if (code == nullptr || std::string_view(code) != "100") erase_request(request_of(m));
    return false;
  }
  consume_credit();
  return true;
}

void PullCore::stop() noexcept {
  Loop* loop = bus_->loop();
  int releases = 0;
  if (watchdog_timer_ && loop != nullptr && loop->cancel_timer(watchdog_timer_)) ++releases;
  if (backoff_timer_ && loop != nullptr && loop->cancel_timer(backoff_timer_)) ++releases;
  watchdog_timer_ = {};
  backoff_timer_ = {};
  if (fetch_ != nullptr) {
    fetch_->finished = true;
    if (loop != nullptr) fetch_->wake.wake_all(*loop);
  }
  SubCore::stop();  // holds until the open requests are done (begin_hold_before_unsubscribe)
  if (!draining_) requests_.clear();
  // Callers hold a reference: dropping the timers' ones cannot free `this` here.
  for (int i = 0; i < releases; ++i) release();
}

Task<std::vector<ReceivedMessage>> PullCore::fetch(int batch, std::chrono::milliseconds timeout, bool no_wait_only) {
  Ref<PullCore> keep(this);
  ErrorContext ctx;
  ctx.operation = no_wait_only ? "fetch_no_wait" : "fetch";
  ctx.stream = stream_;
  ctx.durable = durable_;
  while (fetch_ != nullptr) co_await WaitOn(fetch_queue_);
  if (!active_) {
    const std::string& why = bus_->closed_reason();
    throw ClosedError(why.empty() ? std::string("the pull subscription is closed") : fmt::format("the pull subscription ended: {}", why),
                      ctx);
  }
  // Reconnecting: wait for the new connection within the fetch's time; nothing came meanwhile.
  if (bus_->reconnecting()) {
    const bool up = co_await bus_->wait_connected(saturating_deadline(timeout));
    if (!up && bus_->reconnecting()) co_return std::vector<ReceivedMessage>{};
  }
  if (!active_) throw ClosedError(fmt::format("the pull subscription ended: {}", bus_->closed_reason()), ctx);
  bus_->ensure_open(ctx.operation);
  Fetch f;
  f.batch = batch;
  fetch_ = &f;
  struct Release {
    PullCore& core;
    ~Release() {
      core.fetch_ = nullptr;
      if (core.bus_->loop() != nullptr) core.fetch_queue_.wake_one(*core.bus_->loop());
    }
  } release_fetch{*this};

  auto run_step = [&](bool no_wait, Clock::time_point deadline) -> Task<void> {
    f.finished = false;
    // The connection was lost under this fetch: wait for the next one within the fetch's time.
    if (bus_->reconnecting()) {
      const bool up = co_await bus_->wait_connected(deadline);
      if (!up) co_return;
    }
    if (!active_ || !bus_->has_connection()) co_return;
    f.request = send_request(batch, timeout, no_wait);
    while (!f.finished) {
      pump();
      if (f.finished) break;
      // GCC 12 miscompiles co_await directly in an if condition: bind the result first.
      const bool woken = co_await WaitUntil(f.wake, deadline);
      if (!woken) {
        erase_request(f.request);
        break;
      }
    }
  };
  // Messages left from an earlier request come first.
  pump();
  if (f.msgs.empty()) {
    // 1. Whatever is available right now (the server answers at once).
    co_await run_step(true, saturating_deadline(bus_->config().js_api_timeout));
  }
  // A with_timeout() around this fetch that expired during step 1: no new request.
  CancelScope* scope = co_await CurrentScope();
  if (f.msgs.empty() && !no_wait_only && !f.error && (scope == nullptr || !scope->cancelled())) {
    // 2. Wait up to `timeout` on the server for the batch.
    co_await run_step(false, saturating_deadline(std::chrono::duration<double>(timeout) + std::chrono::seconds(1)));
  }
  if (f.error) std::rethrow_exception(f.error);
  co_return std::move(f.msgs);
}

}  // namespace natbus::detail
