// Detached: a fire-and-forget coroutine type for natbus' own background work (running a
// handler, a pull loop). It starts at once, destroys itself when it finishes, and registers
// with the loop so that the loop can destroy it (running RAII cleanup) if run() ends first.
#pragma once

#include <coroutine>
#include <exception>

#include "natbus/task.hpp"

namespace natbus::detail {

class Loop;

struct DetachedNode {
  DetachedNode* prev = nullptr;
  DetachedNode* next = nullptr;
  void* frame = nullptr;
  Loop* loop = nullptr;  // the loop it was started on (nullptr: none)
};

// Loop-side registry (loop.cpp).
void detached_link(DetachedNode* node) noexcept;
void detached_unlink(DetachedNode* node) noexcept;
void detached_failed(const std::exception_ptr& e) noexcept;

struct Detached {
  struct promise_type : DetachedNode {
    promise_type() noexcept {
      frame = std::coroutine_handle<promise_type>::from_promise(*this).address();
      detached_link(this);
    }
    promise_type(const promise_type&) = delete;
    promise_type& operator=(const promise_type&) = delete;
    ~promise_type() { detached_unlink(this); }
    static void* operator new(std::size_t size) { return frame_alloc(size); }
    static void operator delete(void* ptr, std::size_t size) noexcept { frame_free(ptr, size); }
    Detached get_return_object() const noexcept { return {}; }
    [[nodiscard]] std::suspend_never initial_suspend() const noexcept { return {}; }
    [[nodiscard]] std::suspend_never final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { detached_failed(std::current_exception()); }
  };
};

}  // namespace natbus::detail
