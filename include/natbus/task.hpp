// natbus coroutine core: Task<T>, run(), sleep(), when_all(), shutdown_signal().
//
//   natbus::Task<int> answer() { co_await natbus::sleep(10ms); co_return 42; }
//   int main() { return natbus::run(answer()) == 42 ? 0 : 1; }
//
// Every coroutine started under run() resumes on the thread that called run(): natbus' own
// threads (and cnats') only hand work to that loop. User code needs no locks.
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

// Coroutine frames are recycled through a per-thread free list (sanitizer builds use plain
// operator new so that use-after-free stays visible).
void* frame_alloc(std::size_t size);
void frame_free(void* ptr, std::size_t size) noexcept;

struct PromiseBase;
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

// Runs `root` on a new event loop on this thread until *done is set (defined in the library).
void run_loop(std::coroutine_handle<> root, const bool& done);

}  // namespace detail

/// A lazy coroutine returning T. Move-only; destroying an unfinished Task destroys its frame.
/// Await it exactly once: `T v = co_await task;`. Exceptions propagate to the awaiter.
template <class T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::Promise<T>;
  using value_type = T;

  Task() noexcept = default;
  explicit Task(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { reset(); }

  /// True when the task holds a coroutine (not default-constructed or moved from).
  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(handle_); }
  /// True when the coroutine ran to completion.
  [[nodiscard]] bool done() const noexcept { return handle_ && handle_.done(); }

  // Awaiting runs the task inline until it first suspends. When it finished by then, the
  // awaiting coroutine simply continues (no suspension, no nested resume): a loop of awaits
  // that complete at once keeps a constant stack even in -O0 builds, where compilers do not
  // turn symmetric transfer into tail calls. A task that suspended resumes its awaiter by
  // symmetric transfer when it completes.
  struct Awaiter {
    std::coroutine_handle<promise_type> handle;
    [[nodiscard]] bool await_ready() const noexcept { return !handle || handle.done(); }
    bool await_suspend(std::coroutine_handle<> awaiting) noexcept {
      auto& p = handle.promise();
      p.continuation = awaiting;
      p.starting_inline = true;
      p.completed_inline = false;
      handle.resume();
      p.starting_inline = false;
      return !p.completed_inline;
    }
    T await_resume() {
      if (!handle) throw std::logic_error("natbus::Task: awaiting an empty task");
      return handle.promise().take();
    }
  };
  Awaiter operator co_await() & noexcept { return Awaiter{handle_}; }
  Awaiter operator co_await() && noexcept { return Awaiter{handle_}; }

  /// Library use: the coroutine handle, still owned by this Task.
  [[nodiscard]] std::coroutine_handle<promise_type> handle() const noexcept { return handle_; }
  /// Library use: gives up ownership of the coroutine frame.
  std::coroutine_handle<promise_type> release() noexcept { return std::exchange(handle_, {}); }
  /// Library use: the result of a finished task (rethrows its exception).
  T result() { return handle_.promise().take(); }

 private:
  void reset() noexcept {
    if (handle_) handle_.destroy();
    handle_ = {};
  }
  std::coroutine_handle<promise_type> handle_{};
};

namespace detail {
template <class T>
Task<T> Promise<T>::get_return_object() noexcept {
  return Task<T>{std::coroutine_handle<Promise<T>>::from_promise(*this)};
}
inline Task<void> Promise<void>::get_return_object() noexcept {
  return Task<void>{std::coroutine_handle<Promise<void>>::from_promise(*this)};
}
}  // namespace detail

/// Runs `task` on a new event loop on the calling thread until it finishes, and returns its
/// value (or rethrows its exception), like asyncio.run(). Work still pending when the task
/// finishes (detached handlers, timers) is cancelled. Not reentrant: calling run() from inside
/// run() throws natbus::Error.
template <class T>
T run(Task<T> task) {
  if (!task.valid()) throw std::invalid_argument("natbus::run: empty task");
  bool done = false;
  auto& promise = task.handle().promise();
  promise.on_done_ctx = &done;
  promise.on_done = [](void* ctx, detail::PromiseBase&) noexcept -> std::coroutine_handle<> {
    *static_cast<bool*>(ctx) = true;
    return std::noop_coroutine();
  };
  detail::run_loop(task.handle(), done);
  return task.result();
}

namespace detail {
struct TimerAwaiter {
  std::chrono::steady_clock::time_point deadline;
  std::uint64_t timer_id = 0;
  void* loop = nullptr;
  [[nodiscard]] bool await_ready() const noexcept;
  void await_suspend(std::coroutine_handle<> h);
  void await_resume() noexcept { timer_id = 0; }
  TimerAwaiter(const TimerAwaiter&) = delete;
  TimerAwaiter& operator=(const TimerAwaiter&) = delete;
  explicit TimerAwaiter(std::chrono::steady_clock::time_point d) noexcept : deadline(d) {}
  ~TimerAwaiter();  // cancels the timer when the awaiting coroutine is destroyed early
};
}  // namespace detail

/// Suspends the calling coroutine for `d` without blocking the loop.
namespace detail {
/// steady_clock::now() + d, saturated at time_point::max() instead of overflowing (a timeout of
/// milliseconds::max() means "no deadline").
template <class Rep, class Period>
[[nodiscard]] std::chrono::steady_clock::time_point saturating_deadline(std::chrono::duration<Rep, Period> d) noexcept {
  using std::chrono::steady_clock;
  const auto now = steady_clock::now();
  const auto room = std::chrono::duration_cast<std::chrono::duration<double>>(steady_clock::time_point::max() - now);
  if (std::chrono::duration_cast<std::chrono::duration<double>>(d) >= room) return steady_clock::time_point::max();
  return now + std::chrono::duration_cast<steady_clock::duration>(d);
}
}  // namespace detail

/// `co_await natbus::sleep(250ms);` A non-positive duration still yields to the loop once.
[[nodiscard]] detail::TimerAwaiter sleep(std::chrono::nanoseconds d);
/// Suspends until `deadline`.
[[nodiscard]] detail::TimerAwaiter sleep_until(std::chrono::steady_clock::time_point deadline);
/// Any duration type, without overflow (sleep(milliseconds::max()) sleeps until the loop ends).
template <class Rep, class Period>
[[nodiscard]] detail::TimerAwaiter sleep(std::chrono::duration<Rep, Period> d) {
  return sleep_until(detail::saturating_deadline(d));
}

namespace detail {
struct YieldAwaiter {
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) const;
  void await_resume() const noexcept {}
};
}  // namespace detail

/// Lets other ready coroutines and I/O run, then resumes: `co_await natbus::yield();`
[[nodiscard]] detail::YieldAwaiter yield() noexcept;

/// Completes with the signal number on the first SIGINT or SIGTERM received after this call
/// (the handlers are installed by the call, not by the co_await: call it early). A second
/// signal then ends the process the usual way. Must be called on a loop thread.
///   auto stop = natbus::shutdown_signal();   // at start-up
///   ...
///   co_await std::move(stop);
Task<int> shutdown_signal();

namespace detail {

struct WhenAllState {
  std::size_t remaining = 0;
  std::coroutine_handle<> parent{};
  static std::coroutine_handle<> arrive(void* ctx, PromiseBase&) noexcept {
    auto* st = static_cast<WhenAllState*>(ctx);
    return --st->remaining == 0 ? st->parent : std::noop_coroutine();
  }
};

// Not an aggregate on purpose: GCC 12 destroys aggregate temporaries in co_await twice.
class WhenAllStart {
 public:
  WhenAllStart(WhenAllState& st, std::vector<std::coroutine_handle<>> ch) noexcept : state(st), children(std::move(ch)) {}
  [[nodiscard]] bool await_ready() const noexcept { return children.empty(); }
  bool await_suspend(std::coroutine_handle<> parent) noexcept {
    state.parent = parent;
    state.remaining = children.size() + 1;  // +1: ours, dropped once every child was started
    for (auto c : children) c.resume();
    return --state.remaining != 0;
  }
  void await_resume() const noexcept {}

 private:
  WhenAllState& state;
  std::vector<std::coroutine_handle<>> children;
};

template <class T>
void hook_child(Task<T>& t, WhenAllState& st, std::vector<std::coroutine_handle<>>& out) {
  if (!t.valid()) throw std::invalid_argument("natbus::when_all: empty task");
  auto& p = t.handle().promise();
  p.on_done = &WhenAllState::arrive;
  p.on_done_ctx = &st;
  out.push_back(t.handle());
}

template <class T>
using NonVoid = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
NonVoid<T> take_result(Task<T>& t) {
  if constexpr (std::is_void_v<T>) {
    t.result();
    return {};
  } else {
    return t.result();
  }
}

template <class... Ts>
Task<std::tuple<NonVoid<Ts>...>> when_all_impl(Task<Ts>... tasks) {
  WhenAllState st;
  std::vector<std::coroutine_handle<>> children;
  children.reserve(sizeof...(Ts));
  (hook_child(tasks, st, children), ...);
  co_await WhenAllStart{st, std::move(children)};
  // Every task has finished; the first exception (in argument order) is rethrown.
  co_return std::tuple<NonVoid<Ts>...>{take_result(tasks)...};
}

template <class T>
Task<std::vector<NonVoid<T>>> when_all_vec(std::vector<Task<T>> tasks) {
  WhenAllState st;
  std::vector<std::coroutine_handle<>> children;
  children.reserve(tasks.size());
  for (auto& t : tasks) hook_child(t, st, children);
  co_await WhenAllStart{st, std::move(children)};
  std::vector<NonVoid<T>> out;
  out.reserve(tasks.size());
  for (auto& t : tasks) out.push_back(take_result(t));
  co_return out;
}

}  // namespace detail

/// Runs the tasks concurrently on the loop and completes when all have finished. Returns their
/// results as a tuple (void becomes std::monostate). If any failed, the first exception in
/// argument order is rethrown once all have finished.
/// `auto [a, b] = co_await natbus::when_all(fetch_a(), fetch_b());`
template <class... Ts>
Task<std::tuple<detail::NonVoid<Ts>...>> when_all(Task<Ts>... tasks) {
  return detail::when_all_impl(std::move(tasks)...);
}

/// Same for a run-time number of tasks of one type.
template <class T>
Task<std::vector<detail::NonVoid<T>>> when_all(std::vector<Task<T>> tasks) {
  return detail::when_all_vec(std::move(tasks));
}

/// Starts `task` on the current loop without awaiting it. It runs until it finishes or until
/// run() returns, whichever comes first; an exception it throws is logged (event
/// `task_failed`) and dropped. Must be called on a loop thread.
void spawn(Task<void> task);

}  // namespace natbus
