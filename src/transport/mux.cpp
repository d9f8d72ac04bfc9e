#include "transport/mux.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "base/util.hpp"

namespace natbus::detail {

namespace {

constexpr auto kSweepPeriod = std::chrono::milliseconds(20);

// Live Muxes of this (loop) thread, by id: replies posted from cnats' delivery thread find their
// Mux here, or find nothing once it is gone.
thread_local std::unordered_map<std::uint64_t, Mux*> t_muxes;
std::atomic<std::uint64_t> g_next_mux_id{1};

// The closure of the cnats subscription; freed by cnats' completion callback, after the last
// message callback.
struct Tap {
  std::shared_ptr<RemoteQueue> queue;
  std::uint64_t id;
};

}  // namespace

Mux::~Mux() { stop(NATS_CONNECTION_CLOSED); }

void Mux::start(natsConnection* nc, std::string_view inbox_prefix) {
  prefix_.assign(inbox_prefix);
  prefix_ += '.';
  prefix_ += random_token(22);
  prefix_ += '.';
  fast_prefix_ = prefix_ + "f.";
  resubscribe(nc);
}

void Mux::resubscribe(natsConnection* nc) {
  unsubscribe();
  const std::string wildcard = prefix_ + "*";
  id_ = g_next_mux_id.fetch_add(1);
  auto* tap = new Tap{host_.mux_loop()->remote(), id_};
  natsSubscription* sub = nullptr;
  const natsStatus s = natsConnection_Subscribe(&sub, nc, wildcard.c_str(), &Mux::on_msg_cb, tap);
  if (s != NATS_OK) {
    delete tap;
    id_ = 0;
    throw_status(s, ErrorContext{.operation = "subscribe to reply inbox"});
  }
  natsSubscription_SetOnCompleteCB(sub, &Mux::on_complete_cb, tap);
  // Replies are handed to the loop at once; no cnats limit should drop them.
  natsSubscription_SetPendingLimits(sub, -1, -1);
  sub_ = sub;
  t_muxes[id_] = this;

  const std::string fast_wildcard = fast_prefix_ + "*";
  natsSubscription* fast = nullptr;
  const natsStatus fs = natsConnection_SubscribeSync(&fast, nc, fast_wildcard.c_str());
  if (fs != NATS_OK) {
    unsubscribe();
    throw_status(fs, ErrorContext{.operation = "subscribe to reply inbox"});
  }
  natsSubscription_SetPendingLimits(fast, -1, -1);
  fast_sub_ = fast;
  host_.mux_add_sink(this);
  renew_solo(nc);
}

void Mux::drop_solo() noexcept {
  if (solo_sub_ != nullptr) {
    natsSubscription_Unsubscribe(solo_sub_);
    natsSubscription_Destroy(solo_sub_);
    solo_sub_ = nullptr;
  }
  solo_token_ = 0;
  solo_stale_ = false;
}

void Mux::renew_solo(natsConnection* nc) noexcept {
  drop_solo();
  if (nc == nullptr || fast_sub_ == nullptr) return;
  try {
    solo_prefix_ = prefix_ + "s" + std::to_string(++solo_generation_) + ".";
    const std::string wildcard = solo_prefix_ + "*";
    natsSubscription* solo = nullptr;
    if (natsConnection_SubscribeSync(&solo, nc, wildcard.c_str()) != NATS_OK) return;  // requests take the exact lane
    natsSubscription_SetPendingLimits(solo, -1, -1);
    solo_sub_ = solo;
  } catch (const std::bad_alloc&) {
  }
}

void Mux::solo_ended(std::uint64_t token, bool maybe_late_503) noexcept {
  if (token == 0 || token != solo_token_) return;
  solo_token_ = 0;
  if (maybe_late_503) solo_stale_ = true;
}

void Mux::unsubscribe() noexcept {
  if (id_ != 0) {
    t_muxes.erase(id_);
    id_ = 0;
  }
  if (sub_ != nullptr) {
    natsSubscription_Unsubscribe(sub_);
    natsSubscription_Destroy(sub_);
    sub_ = nullptr;
  }
  drop_solo();
  if (fast_sub_ != nullptr) {
    host_.mux_remove_sink(this);
    natsSubscription_Unsubscribe(fast_sub_);
    natsSubscription_Destroy(fast_sub_);
    fast_sub_ = nullptr;
  }
}

void Mux::drop(natsStatus status) noexcept {
  // Replies to what is outstanding would come on the connection that is going away: their
  // outcome is unknown now, not after their timeout.
  pump();
  unsubscribe();
  fail_all(status);
}

void Mux::stop(natsStatus status) noexcept {
  unsubscribe();
  fail_all(status);
}

void Mux::fail_all(natsStatus status) noexcept {
  std::vector<std::uint64_t> parked;
  parked.reserve(parked_.size());
  for (const auto& [t, e] : parked_) parked.push_back(t);
  for (const std::uint64_t t : parked) complete(t, nullptr, status);
  for (std::uint64_t t = base_; t < next_; ++t) {
    if (find(t) != nullptr) complete(t, nullptr, status);
  }
  entries_.clear();
  parked_.clear();
  base_ = next_;
  live_ = 0;
  if (sweep_timer_) {
    if (Loop* loop = host_.mux_loop(); loop != nullptr) loop->cancel_timer(sweep_timer_);
    sweep_timer_ = {};
  }
}

int Mux::format_reply(char* buf, std::size_t cap, std::uint64_t token, Lane lane) const noexcept {
  const std::string& prefix = lane == Lane::fast ? fast_prefix_ : lane == Lane::solo ? solo_prefix_ : prefix_;
  if (prefix.size() + 21 > cap) return -1;
  std::copy(prefix.begin(), prefix.end(), buf);
  auto [end, ec] = std::to_chars(buf + prefix.size(), buf + cap - 1, token);
  if (ec != std::errc()) return -1;
  *end = '\0';
  return static_cast<int>(end - buf);
}

const char* Mux::next_reply(char* buf, std::size_t cap, Lane want) {
  if (sub_ == nullptr) throw ClosedError("the bus is not connected", ErrorContext{.operation = "request"});
  Lane lane = Lane::exact;
  if (want == Lane::fast && fast_sub_ != nullptr) {
    lane = Lane::fast;
  } else if (want == Lane::solo && solo_token_ == 0) {
    if (solo_stale_) renew_solo(host_.mux_connection());
    if (solo_sub_ != nullptr) lane = Lane::solo;
  }
  if (format_reply(buf, cap, next_, lane) < 0) throw InvalidArgument("inbox prefix too long", ErrorContext{.operation = "request"});
  handed_ = lane;
  return buf;
}

std::uint64_t Mux::commit(std::chrono::nanoseconds timeout, Waiter* waiter) {
  const std::uint64_t token = next_++;
  if (std::exchange(handed_, Lane::exact) == Lane::solo) solo_token_ = token;
  const auto deadline = saturating_deadline(timeout);
  entries_.push_back(Entry{waiter, deadline});
  ++live_;
  arm_sweep(deadline);
  return token;
}

std::uint64_t Mux::send(std::string_view subject, std::string_view data, std::chrono::nanoseconds timeout, Waiter* waiter) {
  if (sub_ == nullptr) throw ClosedError("the bus is not connected", ErrorContext{.operation = "request"});
  char reply[256];
  next_reply(reply, sizeof reply, Lane::solo);
  const std::string subj(subject);
  const natsStatus s =
      natsConnection_PublishRequest(host_.mux_connection(), subj.c_str(), reply, data.data(), static_cast<int>(data.size()));
  if (s != NATS_OK) {
    abandon_reply();
    throw_status(s, ErrorContext{.operation = "request", .subject = subj});
  }
  return commit(timeout, waiter);
}

Mux::Entry* Mux::find(std::uint64_t token) noexcept {
  if (token >= next_) return nullptr;
  if (token < base_) {
    const auto it = parked_.find(token);
    return it != parked_.end() && it->second.waiter != nullptr ? &it->second : nullptr;
  }
  Entry& e = entries_[static_cast<std::size_t>(token - base_)];
  return e.waiter != nullptr ? &e : nullptr;
}

void Mux::trim() noexcept {
  // A live entry at the front is parked (rather than pinning the rest) once the table is large
  // and mostly completed: one long request among many short ones. A full pipeline of
  // outstanding publishes (completed in order) is left alone and costs no allocation.
  constexpr std::size_t kParkAbove = 1024;
  while (!entries_.empty()) {
    Entry& front = entries_.front();
    if (front.waiter != nullptr) {
      if (entries_.size() <= kParkAbove || entries_.size() < 2 * live_) return;
      try {
        parked_.emplace(base_, front);
      } catch (const std::bad_alloc&) {
        return;  // keep it in place
      }
    }
    entries_.pop_front();
    ++base_;
  }
}

void Mux::forget_parked(std::uint64_t token) noexcept {
  if (token < base_) parked_.erase(token);
}

void Mux::complete(std::uint64_t token, MsgPtr reply, natsStatus status) noexcept {
  Entry* e = find(token);
  if (e == nullptr) return;
  Waiter* w = e->waiter;
  e->waiter = nullptr;
  --live_;
  forget_parked(token);
  trim();
  solo_ended(token, status == NATS_TIMEOUT);
  w->on_reply(std::move(reply), status);
}

void Mux::cancel(std::uint64_t token) noexcept {
  Entry* e = find(token);
  if (e == nullptr) return;
  e->waiter = nullptr;
  --live_;
  forget_parked(token);
  trim();
  solo_ended(token, true);
}

void Mux::on_msg_cb(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  const auto* tap = static_cast<Tap*>(closure);
  tap->queue->post(Work{&Mux::deliver_work, reinterpret_cast<void*>(static_cast<std::uintptr_t>(tap->id)), msg});
}

void Mux::on_complete_cb(void* closure) { delete static_cast<Tap*>(closure); }

void Mux::deliver_work(void* a, void* b, bool run) noexcept {
  MsgPtr m(static_cast<natsMsg*>(b));
  if (!run) return;
  const auto it = t_muxes.find(static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(a)));
  if (it != t_muxes.end()) it->second->on_message(std::move(m));
}

std::uint64_t Mux::parse_token(const char* subject, std::size_t prefix_len) const noexcept {
  const std::size_t len = std::strlen(subject);
  if (len <= prefix_len) return 0;
  std::uint64_t token = 0;
  auto [ptr, ec] = std::from_chars(subject + prefix_len, subject + len, token);
  if (ec != std::errc() || ptr != subject + len) return 0;
  return token;
}

void Mux::on_message(MsgPtr m) noexcept {
  const std::uint64_t token = parse_token(natsMsg_GetSubject(m.get()), prefix_.size());
  if (token == 0) return;
  const natsStatus status = natsMsg_IsNoResponders(m.get()) ? NATS_NO_RESPONDERS : NATS_OK;
  if (status != NATS_OK) m.reset();
  complete(token, std::move(m), status);
}

void Mux::on_fast_message(MsgPtr m) noexcept {
  const std::uint64_t token = parse_token(natsMsg_GetSubject(m.get()), fast_prefix_.size());
  if (token != 0) complete(token, std::move(m), NATS_OK);
}

void Mux::on_solo_message(MsgPtr m) noexcept {
  const std::uint64_t token = parse_token(natsMsg_GetSubject(m.get()), solo_prefix_.size());
  if (token != 0) complete(token, std::move(m), NATS_OK);
}

void Mux::pump() noexcept {
  // Completions may close the bus (and stop this Mux): re-check the subscription every time.
  while (fast_sub_ != nullptr) {
    int pending = 0;
    if (natsSubscription_GetPending(fast_sub_, &pending, nullptr) != NATS_OK || pending <= 0) break;
    natsMsg* raw = nullptr;
    const natsStatus s = natsSubscription_NextMsg(&raw, fast_sub_, 0);
    if (s == NATS_NO_RESPONDERS) {
      host_.mux_no_responders();
      continue;
    }
    if (s != NATS_OK || raw == nullptr) break;
    on_fast_message(MsgPtr(raw));
  }
  while (solo_sub_ != nullptr) {
    int pending = 0;
    if (natsSubscription_GetPending(solo_sub_, &pending, nullptr) != NATS_OK || pending <= 0) return;
    natsMsg* raw = nullptr;
    const natsStatus s = natsSubscription_NextMsg(&raw, solo_sub_, 0);
    if (s == NATS_NO_RESPONDERS) {
      // At most one request is on this lane: the 503 is its answer (none: a stray, dropped).
      if (solo_token_ != 0) complete(solo_token_, nullptr, NATS_NO_RESPONDERS);
      continue;
    }
    if (s != NATS_OK || raw == nullptr) return;
    on_solo_message(MsgPtr(raw));
  }
}

void Mux::arm_sweep(Clock::time_point deadline) {
  // One timer, at the earliest deadline of what is outstanding (not a periodic scan: with
  // thousands of publishes in flight a scan every few ms would cost more than the publishes).
  if (sweep_timer_ && sweep_at_ <= deadline) return;
  Loop* loop = host_.mux_loop();
  if (loop == nullptr) return;
  if (sweep_timer_) loop->cancel_timer(sweep_timer_);
  sweep_at_ = deadline;
  sweep_timer_ = loop->add_timer(deadline, Work{&Mux::sweep_work, this, nullptr});
}

void Mux::sweep_work(void* a, void*, bool run) noexcept {
  auto* mux = static_cast<Mux*>(a);
  mux->sweep_timer_ = {};
  if (run) mux->sweep();
}

void Mux::sweep() noexcept {
  const auto now = Clock::now();
  auto next = Clock::time_point::max();
  std::vector<std::uint64_t> expired;
  for (const auto& [t, e] : parked_) {
    if (e.waiter == nullptr) continue;
    if (e.deadline <= now) {
      expired.push_back(t);
    } else {
      next = std::min(next, e.deadline);
    }
  }
  for (const std::uint64_t t : expired) complete(t, nullptr, NATS_TIMEOUT);
  for (std::uint64_t t = base_; t < next_; ++t) {
    Entry* e = find(t);
    if (e == nullptr) continue;
    if (e->deadline <= now) {
      complete(t, nullptr, NATS_TIMEOUT);  // may complete others re-entrantly: find() again next time
    } else {
      next = std::min(next, e->deadline);
    }
  }
  // Completions above may have started new requests (and armed a timer already).
  if (live_ > 0 && next != Clock::time_point::max()) arm_sweep(std::max(next, now + kSweepPeriod));
}

}  // namespace natbus::detail
