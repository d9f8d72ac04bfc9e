// Awaiting one reply through the bus' Mux.
#pragma once

#include <chrono>
#include <coroutine>
#include <functional>
#include <string>
#include <utility>

#include "runtime/loop.hpp"
#include "transport/mux.hpp"

namespace natbus::detail {

/// `auto [reply, status] = co_await ReplyAwaiter(bus, subject, data, timeout);`
/// status is NATS_OK (reply set), NATS_TIMEOUT, NATS_NO_RESPONDERS or NATS_CONNECTION_CLOSED.
class ReplyAwaiter final : public Mux::Waiter, CancelNode {
 public:
  /// Plain request (no headers).
  ReplyAwaiter(Mux& mux, std::string subject, std::string data, std::chrono::nanoseconds timeout)
      : CancelNode(&ReplyAwaiter::on_cancel), mux_(mux), subject_(std::move(subject)), data_(std::move(data)), timeout_(timeout) {}
  /// Request built by `build(reply)`, which must publish the message with that reply subject.
  ReplyAwaiter(Mux& mux, std::function<void(const char* reply)> build, std::chrono::nanoseconds timeout)
      : CancelNode(&ReplyAwaiter::on_cancel), mux_(mux), build_(std::move(build)), timeout_(timeout) {}
  ReplyAwaiter(const ReplyAwaiter&) = delete;
  ReplyAwaiter& operator=(const ReplyAwaiter&) = delete;
  ~ReplyAwaiter() {
    if (pending_) mux_.cancel(token_);
  }

  [[nodiscard]] bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return suspend(h, scope_of(h));
  }
  std::pair<MsgPtr, natsStatus> await_resume() noexcept {
    unlink();
    return {std::move(reply_), status_};
  }

  void on_reply(MsgPtr reply, natsStatus status) noexcept override {
    pending_ = false;
    unlink();
    reply_ = std::move(reply);
    status_ = status;
    mux_.loop()->schedule(handle_);
  }

 private:
  bool suspend(std::coroutine_handle<> h, CancelScope* scope) {
    if (scope != nullptr && scope->cancelled()) {
      status_ = NATS_TIMEOUT;  // interrupted before anything was sent
      return false;
    }
    handle_ = h;
    if (build_) {
      char reply[256];
      try {
        build_(mux_.next_reply(reply, sizeof reply, Mux::Lane::solo));
      } catch (...) {
        mux_.abandon_reply();
        throw;
      }
      token_ = mux_.commit(timeout_, this);
    } else {
      token_ = mux_.send(subject_, data_, timeout_, this);
    }
    pending_ = true;
    link(scope);
    return true;
  }
  // A with_timeout() around the request expired: it ends as at its own timeout, and a reply that
  // comes later finds no waiter (the mux drops it).
  static void on_cancel(CancelNode* node) noexcept {
    if (node == nullptr) return;
    auto* self = static_cast<ReplyAwaiter*>(node);
    if (!self->pending_) return;
    self->mux_.cancel(self->token_);
    self->pending_ = false;
    self->status_ = NATS_TIMEOUT;
    if (Loop* loop = self->mux_.loop(); loop != nullptr) loop->schedule(self->handle_);
  }

  Mux& mux_;
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

}  // namespace natbus::detail
