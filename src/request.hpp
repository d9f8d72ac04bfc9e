// Awaiting one reply through the bus' Mux.
#pragma once

#include <chrono>
#include <coroutine>
#include <functional>
#include <string>
#include <utility>

#include "bus_core.hpp"

namespace natbus::detail {

/// `auto [reply, status] = co_await ReplyAwaiter(bus, subject, data, timeout);`
/// status is NATS_OK (reply set), NATS_TIMEOUT, NATS_NO_RESPONDERS or NATS_CONNECTION_CLOSED.
class ReplyAwaiter final : public Mux::Waiter {
 public:
  /// Plain request (no headers).
  ReplyAwaiter(BusCore& bus, std::string subject, std::string data, std::chrono::nanoseconds timeout)
      : bus_(bus), subject_(std::move(subject)), data_(std::move(data)), timeout_(timeout) {}
  /// Request built by `build(reply)`, which must publish the message with that reply subject.
  ReplyAwaiter(BusCore& bus, std::function<void(const char* reply)> build, std::chrono::nanoseconds timeout)
      : bus_(bus), build_(std::move(build)), timeout_(timeout) {}
  ReplyAwaiter(const ReplyAwaiter&) = delete;
  ReplyAwaiter& operator=(const ReplyAwaiter&) = delete;
  ~ReplyAwaiter() {
    if (pending_) bus_.mux().cancel(token_);
  }

  [[nodiscard]] bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    handle_ = h;
    if (build_) {
      char reply[256];
      build_(bus_.mux().next_reply(reply, sizeof reply));
      token_ = bus_.mux().commit(timeout_, this);
    } else {
      token_ = bus_.mux().send(subject_, data_, timeout_, this);
    }
    pending_ = true;
  }
  std::pair<MsgPtr, natsStatus> await_resume() noexcept { return {std::move(reply_), status_}; }

  void on_reply(MsgPtr reply, natsStatus status) noexcept override {
    pending_ = false;
    reply_ = std::move(reply);
    status_ = status;
    bus_.loop()->schedule(handle_);
  }

 private:
  BusCore& bus_;
  std::string subject_;
  std::string data_;
  std::function<void(const char*)> build_;
  std::chrono::nanoseconds timeout_;
  std::coroutine_handle<> handle_{};
  std::uint64_t token_ = 0;
  bool pending_ = false;
  MsgPtr reply_;
  natsStatus status_ = NATS_OK;
};

/// Suspends until `list` wakes the coroutine or `deadline` passes; returns false on timeout.
class WaitUntil {
 public:
  WaitUntil(WaitList& list, Clock::time_point deadline) noexcept : list_(list), deadline_(deadline) {}
  WaitUntil(const WaitUntil&) = delete;
  WaitUntil& operator=(const WaitUntil&) = delete;
  ~WaitUntil() { disarm(); }
  [[nodiscard]] bool await_ready() const noexcept { return Clock::now() >= deadline_; }
  void await_suspend(std::coroutine_handle<> h) {
    handle_ = h;
    loop_ = &Loop::require("wait");
    list_.add(h);
    timer_ = loop_->add_timer(deadline_, Work{&WaitUntil::expired, this, nullptr});
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
    self->handle_.resume();
  }
  void disarm() noexcept {
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
