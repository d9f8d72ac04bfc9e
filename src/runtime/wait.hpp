// Waiting on the loop for a condition: WaitList (who waits), WaitOn (until woken) and WaitUntil
// (until woken or a deadline). Both are interruptible by natbus::with_timeout(): WaitUntil then
// returns false as at its deadline, WaitOn throws TimeoutError.
#pragma once

#include <algorithm>
#include <coroutine>
#include <vector>

#include "natbus/task.hpp"
#include "runtime/loop.hpp"

namespace natbus::detail {

/// Resumes coroutines waiting for a condition (loop thread; resumption is scheduled, never inline).
class WaitList {
 public:
  void add(std::coroutine_handle<> h) { waiters_.push_back(h); }
  void remove(std::coroutine_handle<> h) noexcept { std::erase(waiters_, h); }
  void wake_all(Loop& loop) {
    for (auto h : waiters_) loop.schedule(h);
    waiters_.clear();
  }
  bool wake_one(Loop& loop) {
    if (waiters_.empty()) return false;
    loop.schedule(waiters_.front());
    waiters_.erase(waiters_.begin());
    return true;
  }
  [[nodiscard]] bool empty() const noexcept { return waiters_.empty(); }
  [[nodiscard]] bool contains(std::coroutine_handle<> h) const noexcept {
    return std::find(waiters_.begin(), waiters_.end(), h) != waiters_.end();
  }

 private:
  std::vector<std::coroutine_handle<>> waiters_;
};

/// `co_await WaitOn{list}` suspends until the list wakes it (or the awaiting frame dies).
class WaitOn : CancelNode {
 public:
  explicit WaitOn(WaitList& list) noexcept : CancelNode(&WaitOn::on_cancel), list_(list) {}
  WaitOn(const WaitOn&) = delete;
  WaitOn& operator=(const WaitOn&) = delete;
  ~WaitOn() {
    if (handle_) list_.remove(handle_);
  }
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return suspend(h, scope_of(h));
  }
  bool suspend(std::coroutine_handle<> h, CancelScope* scope) {
    if (scope != nullptr && scope->cancelled()) {
      cancelled_ = true;
      return false;
    }
    handle_ = h;
    list_.add(h);
    link(scope);
    return true;
  }
  void await_resume() {
    handle_ = {};
    unlink();
    if (cancelled_) throw_cancelled("wait");
  }

 private:
  static void on_cancel(CancelNode* node) noexcept {
    auto* self = static_cast<WaitOn*>(node);
    Loop* loop = Loop::current();
    // Already woken through the list (and scheduled): that resumption wins.
    if (!self->handle_ || loop == nullptr || !self->list_.contains(self->handle_)) return;
    self->list_.remove(self->handle_);
    self->cancelled_ = true;
    loop->schedule(self->handle_);
  }
  WaitList& list_;
  std::coroutine_handle<> handle_{};
  bool cancelled_ = false;
};

/// Suspends until `list` wakes the coroutine or `deadline` passes; returns false on timeout (or
/// when a with_timeout() around it expired: callers treat both alike and must stop waiting).
class WaitUntil : CancelNode {
 public:
  WaitUntil(WaitList& list, Clock::time_point deadline) noexcept : CancelNode(&WaitUntil::on_cancel), list_(list), deadline_(deadline) {}
  WaitUntil(const WaitUntil&) = delete;
  WaitUntil& operator=(const WaitUntil&) = delete;
  ~WaitUntil() { disarm(); }
  [[nodiscard]] bool await_ready() const noexcept { return Clock::now() >= deadline_; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return suspend(h, scope_of(h));
  }
  bool suspend(std::coroutine_handle<> h, CancelScope* scope) {
    loop_ = &Loop::require("wait");
    if (scope != nullptr && scope->cancelled()) {
      timed_out_ = true;
      return false;
    }
    handle_ = h;
    list_.add(h);
    timer_ = loop_->add_timer(deadline_, Work{&WaitUntil::expired, this, nullptr});
    link(scope);
    return true;
  }
  [[nodiscard]] bool await_resume() noexcept {
    const bool woken = !timed_out_;
    disarm();
    return woken;
  }

 private:
  static void expired(void* a, void*, bool run) noexcept {
    auto* self = static_cast<WaitUntil*>(a);
    self->timer_ = {};
    // Already woken through the list (and scheduled): that resumption wins.
    if (!run || !self->list_.contains(self->handle_)) return;
    self->timed_out_ = true;
    self->list_.remove(self->handle_);
    self->unlink();
    self->handle_.resume();
  }
  static void on_cancel(CancelNode* node) noexcept {
    auto* self = static_cast<WaitUntil*>(node);
    if (!self->handle_ || !self->list_.contains(self->handle_)) return;
    self->timed_out_ = true;
    self->list_.remove(self->handle_);
    if (self->timer_ && self->loop_ != nullptr) self->loop_->cancel_timer(self->timer_);
    self->timer_ = {};
    self->loop_->schedule(self->handle_);
  }
  void disarm() noexcept {
    unlink();
    if (timer_ && loop_ != nullptr) loop_->cancel_timer(timer_);
    timer_ = {};
    if (handle_ && !timed_out_) list_.remove(handle_);
    handle_ = {};
  }
  WaitList& list_;
  Clock::time_point deadline_;
  Loop* loop_ = nullptr;
  std::coroutine_handle<> handle_{};
  TimerKey timer_{};
  bool timed_out_ = false;
};

}  // namespace natbus::detail
