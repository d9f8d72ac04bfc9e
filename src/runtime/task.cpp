// The public coroutine core: frame allocation, sleep, yield, spawn, shutdown_signal.
#include <algorithm>
#include <array>
#include <cstdlib>

#include <fmt/format.h>

#include "natbus/error.hpp"
#include "natbus/task.hpp"
#include "runtime/loop.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NATBUS_NO_FRAME_POOL 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define NATBUS_NO_FRAME_POOL 1
#endif
#endif

namespace natbus {
namespace detail {

namespace {

// Per-thread free lists of coroutine frames in 64-byte size classes up to 2 KiB. A handler
// coroutine per message would otherwise cost a malloc/free pair each; recycled frames cost a
// pointer swap. Each list keeps at most kCachedBytes of blocks (and at least 256 blocks), so
// the cache is bounded; a window of 4096 publishes in flight recycles without missing.
constexpr std::size_t kGranule = 64;
constexpr std::size_t kClasses = 32;  // up to 2048 bytes
constexpr std::size_t kCachedBytes = std::size_t{256} * 1024;
constexpr std::size_t max_cached(std::size_t cls) { return cls == 0 ? 256 : std::max<std::size_t>(256, kCachedBytes / (cls * kGranule)); }

struct FreeNode {
  FreeNode* next;
};

class FramePool {
 public:
  FramePool() = default;
  FramePool(const FramePool&) = delete;
  FramePool& operator=(const FramePool&) = delete;
  ~FramePool() {
    for (auto& head : heads_) {
      while (head != nullptr) {
        FreeNode* n = head;
        head = head->next;
        ::operator delete(n);
      }
    }
  }
  void* alloc(std::size_t size) {
    const std::size_t c = (size + kGranule - 1) / kGranule;
    if (c < kClasses && heads_[c] != nullptr) {
      FreeNode* n = heads_[c];
      heads_[c] = n->next;
      --counts_[c];
      return n;
    }
    return ::operator new(c < kClasses ? c * kGranule : size);
  }
  void free(void* p, std::size_t size) noexcept {
    const std::size_t c = (size + kGranule - 1) / kGranule;
    if (c < kClasses && counts_[c] < max_cached(c)) {
      auto* n = static_cast<FreeNode*>(p);
      n->next = heads_[c];
      heads_[c] = n;
      ++counts_[c];
      return;
    }
    ::operator delete(p);
  }

 private:
  std::array<FreeNode*, kClasses> heads_{};
  std::array<std::size_t, kClasses> counts_{};
};

#ifndef NATBUS_NO_FRAME_POOL
FramePool& pool() {
  thread_local FramePool p;
  return p;
}
#endif

}  // namespace

void* frame_alloc(std::size_t size) {
#ifdef NATBUS_NO_FRAME_POOL
  return ::operator new(size);
#else
  return pool().alloc(size);
#endif
}

void frame_free(void* ptr, std::size_t size) noexcept {
#ifdef NATBUS_NO_FRAME_POOL
  (void)size;
  ::operator delete(ptr);
#else
  pool().free(ptr, size);
#endif
}

bool TimerAwaiter::await_ready() const noexcept { return false; }

bool TimerAwaiter::suspend(std::coroutine_handle<> h, CancelScope* scope) {
  Loop& l = Loop::require("natbus::sleep");
  if (scope != nullptr && scope->cancelled()) {
    cancelled = true;
    return false;
  }
  loop = &l;
  handle = h;
  const TimerKey key = l.add_timer(deadline, h);
  timer_id = key.id;
  link(scope);
  return true;
}

void TimerAwaiter::on_cancel(CancelNode* node) noexcept {
  auto* self = static_cast<TimerAwaiter*>(node);
  auto* l = static_cast<Loop*>(self->loop);
  if (self->timer_id == 0 || l == nullptr || !l->cancel_timer(TimerKey{self->deadline, self->timer_id})) return;
  self->timer_id = 0;
  self->cancelled = true;
  l->schedule(self->handle);
}

TimerAwaiter::~TimerAwaiter() {
  // Still registered: the coroutine was destroyed while sleeping.
  if (timer_id != 0 && loop != nullptr && Loop::current() == loop) {
    static_cast<Loop*>(loop)->cancel_timer(TimerKey{deadline, timer_id});
  }
}

void throw_cancelled(const char* operation) {
  throw TimeoutError("interrupted by natbus::with_timeout", ErrorContext{.operation = operation});
}

void bad_timeout(long double seconds) {
  throw InvalidArgument(fmt::format("timeout must not be negative, got {}s", static_cast<double>(seconds)),
                        ErrorContext{.operation = "with_timeout"});
}

// ---- with_timeout ----------------------------------------------------------------------------

TimeoutRace::TimeoutRace(CancelScope* outer, std::chrono::steady_clock::time_point deadline) noexcept
    : CancelNode(&TimeoutRace::on_outer_cancel), outer_(outer), deadline_(deadline) {}

TimeoutRace::~TimeoutRace() {
  // Destroyed while the task still runs (its frame is destroyed right after): disarm.
  if (timer_id_ != 0 && loop_ != nullptr && Loop::current() == loop_) {
    static_cast<Loop*>(loop_)->cancel_timer(TimerKey{deadline_, timer_id_});
  }
}

bool TimeoutRace::start(std::coroutine_handle<> parent, std::coroutine_handle<> child, PromiseBase& child_promise) {
  Loop& loop = Loop::require("natbus::with_timeout");
  parent_ = parent;
  if (!child_promise.shielded) child_promise.scope = &scope_;
  child_promise.on_done = &TimeoutRace::child_done;
  child_promise.on_done_ctx = this;
  if (outer_ != nullptr && outer_->cancelled()) scope_.cancel();
  starting_ = true;
  child.resume();
  starting_ = false;
  if (done_) return false;  // finished without suspending: the parent just continues
  if (scope_.cancelled()) {
    timed_out_ = true;  // the enclosing scope was cancelled already; the task is unwinding
    return true;
  }
  loop_ = &loop;
  timer_id_ = loop.add_timer(deadline_, Work{&TimeoutRace::on_timer, this, nullptr}).id;
  link(outer_);  // an enclosing with_timeout that expires first cancels this one too
  return true;
}

std::coroutine_handle<> TimeoutRace::child_done(void* ctx, PromiseBase&) noexcept {
  auto* self = static_cast<TimeoutRace*>(ctx);
  self->done_ = true;
  self->unlink();
  if (self->timer_id_ != 0) {
    static_cast<Loop*>(self->loop_)->cancel_timer(TimerKey{self->deadline_, self->timer_id_});
    self->timer_id_ = 0;
  }
  if (self->starting_) return std::noop_coroutine();
  return self->parent_;
}

void TimeoutRace::expire() noexcept {
  unlink();
  timed_out_ = true;
  // The task's awaits complete (scheduled, not inline); it unwinds, then child_done resumes us.
  scope_.cancel();
}

void TimeoutRace::on_timer(void* a, void*, bool run) noexcept {
  auto* self = static_cast<TimeoutRace*>(a);
  self->timer_id_ = 0;
  if (run && !self->done_) self->expire();
}

void TimeoutRace::on_outer_cancel(CancelNode* node) noexcept {
  auto* self = static_cast<TimeoutRace*>(node);
  if (self->timer_id_ != 0) {
    static_cast<Loop*>(self->loop_)->cancel_timer(TimerKey{self->deadline_, self->timer_id_});
    self->timer_id_ = 0;
  }
  if (!self->done_) self->expire();
}

void TimeoutRace::fail(std::chrono::duration<double, std::milli> timeout) {
  throw TimeoutError(fmt::format("the awaited operation did not complete within {} ms", timeout.count()),
                     ErrorContext{.operation = "with_timeout"});
}

namespace {
class SignalAwaiter : CancelNode {
 public:
  explicit SignalAwaiter(std::uint64_t seen) noexcept : CancelNode(&SignalAwaiter::on_cancel), seen_(seen) {}
  SignalAwaiter(const SignalAwaiter&) = delete;
  SignalAwaiter& operator=(const SignalAwaiter&) = delete;
  ~SignalAwaiter() {
    if (loop_ != nullptr && signo_ == 0 && Loop::current() == loop_) loop_->cancel_signal_wait(handle_);
  }
  [[nodiscard]] bool await_ready() noexcept {
    // A signal that came after shutdown_signal() was called, before this await: done.
    Loop* loop = Loop::current();
    if (loop != nullptr && loop->signals_seen() > seen_) {
      signo_ = loop->last_signal();
      return true;
    }
    return false;
  }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return suspend(h, scope_of(h));
  }
  [[nodiscard]] int await_resume() const {
    if (cancelled_) throw_cancelled("natbus::shutdown_signal");
    return signo_;
  }

 private:
  bool suspend(std::coroutine_handle<> h, CancelScope* scope) {
    loop_ = &Loop::require("natbus::shutdown_signal");
    if (scope != nullptr && scope->cancelled()) {
      cancelled_ = true;
      loop_ = nullptr;
      return false;
    }
    handle_ = h;
    loop_->wait_signal(h, &signo_);
    link(scope);
    return true;
  }
  static void on_cancel(CancelNode* node) noexcept {
    auto* self = static_cast<SignalAwaiter*>(node);
    if (self->loop_ == nullptr || self->signo_ != 0) return;
    self->loop_->cancel_signal_wait(self->handle_);
    self->cancelled_ = true;
    self->loop_->schedule(self->handle_);
    self->loop_ = nullptr;
  }
  std::uint64_t seen_ = 0;
  Loop* loop_ = nullptr;
  std::coroutine_handle<> handle_{};
  int signo_ = 0;
  bool cancelled_ = false;
};
}  // namespace

}  // namespace detail

detail::TimerAwaiter sleep(std::chrono::nanoseconds d) { return detail::TimerAwaiter(detail::saturating_deadline(d)); }

detail::TimerAwaiter sleep_until(std::chrono::steady_clock::time_point deadline) { return detail::TimerAwaiter(deadline); }

void detail::YieldAwaiter::await_suspend(std::coroutine_handle<> h) const { Loop::require("natbus::yield").schedule(h); }

detail::YieldAwaiter yield() noexcept { return {}; }

namespace detail {
namespace {
Task<int> wait_for_signal(std::uint64_t seen) { co_return co_await SignalAwaiter(seen); }
}  // namespace
}  // namespace detail

Task<int> shutdown_signal() {
  // Installed now, not when awaited: a signal between this call and the co_await is not lost.
  const std::uint64_t seen = detail::Loop::require("natbus::shutdown_signal").watch_signals();
  return detail::wait_for_signal(seen);
}

void spawn(Task<void> task) { detail::Loop::require("natbus::spawn").spawn(std::move(task)); }

}  // namespace natbus
