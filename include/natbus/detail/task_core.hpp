// natbus implementation detail, not API: coroutine promises, frame allocation and the cancel
// scopes of with_timeout(). Included by <natbus/task.hpp> before Task.
#pragma once

#include <chrono>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <new>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace natbus {

template <class T = void>
class Task;

namespace detail {

// GCC before 13 destroys a lambda closure that is a temporary inside a co_await expression
// twice (silent heap corruption). A callable passed as an rvalue with a non-trivial destructor
// (a handler, an offload job) is exactly that pattern, so it is rejected at compile time there;
// bind the lambda to a variable.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
inline constexpr bool kRejectOwningTemporaryHandlers = true;
#else
inline constexpr bool kRejectOwningTemporaryHandlers = false;
#endif

// Coroutine frames are recycled through a per-thread free list (sanitizer builds use plain
// operator new so that use-after-free stays visible).
void* frame_alloc(std::size_t size);
void frame_free(void* ptr, std::size_t size) noexcept;

struct PromiseBase;
class CancelScope;

/// A suspended natbus await that a with_timeout() can interrupt. It links itself into the
/// awaiting coroutine's CancelScope while suspended; cancel() makes it complete at once as if
/// its own deadline had passed (the operation behind it is abandoned, its late result dropped).
class CancelNode {
 public:
  using Fn = void (*)(CancelNode* self) noexcept;
  explicit CancelNode(Fn on_cancel) noexcept : fn_(on_cancel) {}
  CancelNode(const CancelNode&) = delete;
  CancelNode& operator=(const CancelNode&) = delete;
  ~CancelNode() { unlink(); }
  inline void link(CancelScope* scope) noexcept;
  inline void unlink() noexcept;
  [[nodiscard]] bool linked() const noexcept { return scope_ != nullptr; }

 private:
  friend class CancelScope;
  Fn fn_;
  CancelScope* scope_ = nullptr;
  CancelNode* prev_ = nullptr;
  CancelNode* next_ = nullptr;
};

/// What a with_timeout() cancels: every natbus await suspended under it (loop thread only).
class CancelScope {
 public:
  CancelScope() noexcept = default;
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;
  ~CancelScope() {
    while (head_ != nullptr) head_->unlink();
  }
  [[nodiscard]] bool cancelled() const noexcept { return cancelled_; }
  /// Marks the scope cancelled and completes every await linked to it. Awaits that start later
  /// under it complete at once.
  void cancel() noexcept {
    cancelled_ = true;
    while (head_ != nullptr) {
      CancelNode* n = head_;
      n->unlink();
      n->fn_(n);
    }
  }

 private:
  friend class CancelNode;
  CancelNode* head_ = nullptr;
  bool cancelled_ = false;
};

void CancelNode::link(CancelScope* scope) noexcept {
  unlink();
  if (scope == nullptr) return;
  scope_ = scope;
  next_ = scope->head_;
  prev_ = nullptr;
  if (next_ != nullptr) next_->prev_ = this;
  scope->head_ = this;
}

void CancelNode::unlink() noexcept {
  if (scope_ == nullptr) return;
  if (prev_ != nullptr) {
    prev_->next_ = next_;
  } else {
    scope_->head_ = next_;
  }
  if (next_ != nullptr) next_->prev_ = prev_;
  scope_ = nullptr;
  prev_ = next_ = nullptr;
}

// Called at final suspension instead of resuming a continuation (detached tasks, when_all,
// run()). Returns the coroutine to transfer to, or std::noop_coroutine().
using DoneFn = std::coroutine_handle<> (*)(void* ctx, PromiseBase& promise) noexcept;

struct PromiseBase {
  std::coroutine_handle<> continuation{};
  std::exception_ptr error{};
  DoneFn on_done = nullptr;
  void* on_done_ctx = nullptr;
  // Set while the awaiting coroutine's await_suspend is still running this task inline;
  // completed_inline then tells it to continue without suspending (see Task::Awaiter).
  bool starting_inline = false;
  bool completed_inline = false;
  // The with_timeout() scope this coroutine runs under (inherited from its awaiter), unless
  // shielded (connect and close always run to their own end).
  CancelScope* scope = nullptr;
  bool shielded = false;

  static void* operator new(std::size_t size) { return frame_alloc(size); }
  static void operator delete(void* ptr, std::size_t size) noexcept { frame_free(ptr, size); }

  struct FinalAwaiter {
    [[nodiscard]] bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> self) noexcept {
      PromiseBase& p = self.promise();
      if (p.on_done != nullptr) return p.on_done(p.on_done_ctx, p);
      if (p.starting_inline) {
        p.completed_inline = true;  // the awaiter is still on the stack: it continues itself
        return std::noop_coroutine();
      }
      return p.continuation ? p.continuation : std::noop_coroutine();
    }
    void await_resume() const noexcept {}
  };

  [[nodiscard]] std::suspend_always initial_suspend() const noexcept { return {}; }
  [[nodiscard]] FinalAwaiter final_suspend() const noexcept { return {}; }
  void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <class T>
struct Promise : PromiseBase {
  std::optional<T> value;
  Task<T> get_return_object() noexcept;
  template <class U>
  requires std::convertible_to<U&&, T>
  void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) { value.emplace(std::forward<U>(v)); }
  T take() {
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }
};

template <>
struct Promise<void> : PromiseBase {
  Task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void take() const {
    if (error) std::rethrow_exception(error);
  }
};

/// The cancel scope of the coroutine behind `h` (nullptr when it is not a natbus Task).
template <class P>
[[nodiscard]] CancelScope* scope_of(std::coroutine_handle<P> h) noexcept {
  if constexpr (std::is_base_of_v<PromiseBase, P>) {
    return h.promise().scope;
  } else {
    (void)h;
    return nullptr;
  }
}

// Runs `root` on a new event loop on this thread until *done is set (defined in the library).
// offload_threads: the size of the pool behind natbus::offload() (0: the default).
void run_loop(std::coroutine_handle<> root, const bool& done, int offload_threads = 0);

}  // namespace detail

}  // namespace natbus
