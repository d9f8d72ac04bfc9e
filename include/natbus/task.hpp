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

#include "natbus/detail/task_core.hpp"

namespace natbus {

/// A lazy coroutine returning T. Move-only; destroying an unfinished Task destroys its frame.
/// Await it exactly once: `T v = co_await task;`. Exceptions propagate to the awaiter.
template <class T>
class [[nodiscard]] Task {
 public:
  /// The coroutine's promise type.
  using promise_type = detail::Promise<T>;
  /// What co_await gives.
  using value_type = T;

  Task() noexcept = default;
  /// Library use: takes ownership of a coroutine.
  explicit Task(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  /// Moves the task (the source becomes empty).
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  /// Moves the task; an unfinished one it replaces is destroyed.
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
  /// What `co_await task` uses.
  struct Awaiter {
    std::coroutine_handle<promise_type> handle;  ///< the awaited coroutine
    /// True when there is nothing to wait for.
    [[nodiscard]] bool await_ready() const noexcept { return !handle || handle.done(); }
    template <class P>
    /// Starts the task (inline) and suspends only if it suspends.
    bool await_suspend(std::coroutine_handle<P> awaiting) noexcept {
      auto& p = handle.promise();
      if (!p.shielded) p.scope = detail::scope_of(awaiting);
      p.continuation = awaiting;
      p.starting_inline = true;
      p.completed_inline = false;
      handle.resume();
      p.starting_inline = false;
      return !p.completed_inline;
    }
    /// The task's value, or its exception.
    T await_resume() {
      if (!handle) throw std::logic_error("natbus::Task: awaiting an empty task");
      return handle.promise().take();
    }
  };
  /// `T v = co_await task;`
  Awaiter operator co_await() & noexcept { return Awaiter{handle_}; }
  /// `T v = co_await make_task();`
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

}  // namespace natbus

#include "natbus/detail/task_impl.hpp"  // needs Task complete

namespace natbus {

/// How run() sets up its loop.
struct RunOptions {
  /// Threads behind natbus::offload() on this loop, started when first needed (1..1024; 0: the
  /// default, the number of cores but at least 4).
  int offload_threads = 0;
};

/// Runs `task` on a new event loop on the calling thread until it finishes, and returns its
/// value (or rethrows its exception), like asyncio.run(). Work still pending when the task
/// finishes (detached handlers, timers) is cancelled. Not reentrant: calling run() from inside
/// run() throws natbus::Error.
template <class T>
T run(Task<T> task, const RunOptions& options) {
  if (!task.valid()) throw std::invalid_argument("natbus::run: empty task");
  bool done = false;
  auto& promise = task.handle().promise();
  promise.on_done_ctx = &done;
  promise.on_done = [](void* ctx, detail::PromiseBase&) noexcept -> std::coroutine_handle<> {
    *static_cast<bool*>(ctx) = true;
    return std::noop_coroutine();
  };
  detail::run_loop(task.handle(), done, options.offload_threads);
  return task.result();
}

/// run() with the default options.
template <class T>
T run(Task<T> task) {
  return run(std::move(task), RunOptions{});
}

/// `co_await natbus::sleep(250ms);` A non-positive duration still yields to the loop once.
[[nodiscard]] detail::TimerAwaiter sleep(std::chrono::nanoseconds d);
/// Suspends until `deadline`.
[[nodiscard]] detail::TimerAwaiter sleep_until(std::chrono::steady_clock::time_point deadline);
/// Any duration type, without overflow (sleep(milliseconds::max()) sleeps until the loop ends).
template <class Rep, class Period>
[[nodiscard]] detail::TimerAwaiter sleep(std::chrono::duration<Rep, Period> d) {
  return sleep_until(detail::saturating_deadline(d));
}

/// Lets other ready coroutines and I/O run, then resumes: `co_await natbus::yield();`
[[nodiscard]] detail::YieldAwaiter yield() noexcept;

/// Completes with the signal number on the first SIGINT or SIGTERM received after this call
/// (the handlers are installed by the call, not by the co_await: call it early). A second
/// signal then ends the process the usual way. Must be called on a loop thread.
///   auto stop = natbus::shutdown_signal();   // at start-up
///   ...
///   co_await std::move(stop);
Task<int> shutdown_signal();

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

/// Awaits `task`, but for at most `timeout`: then throws natbus::TimeoutError.
///   auto reply = co_await natbus::with_timeout(bus.request(std::move(msg)), 2s);
/// On timeout, every natbus await inside `task` (requests, PubAcks, fetch, flush, sleep,
/// stream reads, waits for a reconnect...) completes at once as if its own deadline had passed,
/// `task` unwinds, and only then does with_timeout throw: nothing it abandoned is left running,
/// and a reply or PubAck that arrives later is dropped (a publish's outcome is then unknown:
/// retry it with the same msg_id). connect(), close() and offload() work are not interrupted:
/// with_timeout waits for them. A negative timeout is an InvalidArgument; zero times out at
/// the first await that suspends. Must be awaited on a loop thread.
template <class T, class Rep, class Period>
Task<T> with_timeout(Task<T> task, std::chrono::duration<Rep, Period> timeout) {
  if (!task.valid()) throw std::invalid_argument("natbus::with_timeout: empty task");
  if (timeout < std::chrono::duration<Rep, Period>::zero()) {
    detail::bad_timeout(std::chrono::duration_cast<std::chrono::duration<long double>>(timeout).count());
  }
  // The timeout is kept only for the error message: as double milliseconds it cannot overflow.
  return detail::with_timeout_impl(std::move(task), detail::saturating_deadline(timeout),
                                   std::chrono::duration<double, std::milli>(timeout));
}

/// Starts `task` on the current loop without awaiting it. It runs until it finishes or until
/// run() returns, whichever comes first; an exception it throws is logged (event
/// `task_failed`) and dropped. Must be called on a loop thread.
void spawn(Task<void> task);

}  // namespace natbus
