// natbus and other threads: offload() work to natbus' worker pool, and LoopThread, a natbus
// loop on a thread of its own that any thread hands work to.
//
//   natbus::LoopThread loop;                                   // starts the thread
//   std::future<int> f = loop.submit([]() -> natbus::Task<int> { co_return 42; });
//   int v = f.get();                                           // from any thread
//
//   // inside a coroutine on a loop: CPU-heavy or blocking work off the loop's thread
//   auto digest = co_await natbus::offload([&] { return sha256(big_buffer); });
#pragma once

#include <chrono>
#include <concepts>
#include <coroutine>
#include <exception>
#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

#include "natbus/detail/thread.hpp"
#include "natbus/task.hpp"

namespace natbus {

/// `co_await natbus::offload(f)` runs `f()` on a thread of the loop's offload pool and resumes
/// the coroutine on its loop with the result, or rethrows what `f` threw. Use it for blocking or
/// CPU-heavy work: the loop (and every other handler) keeps running meanwhile, so a
/// subscription with max_concurrency = N gets up to N cores. The pool has
/// RunOptions::offload_threads threads (LoopThreadOptions::offload_threads); more jobs queue.
/// `f` runs to its end even under a with_timeout() (a thread cannot be interrupted): the
/// timeout waits for it. If the loop shuts down, running jobs finish and queued ones are
/// dropped; offload() after that (or outside a loop) throws ClosedError. `f` must not touch
/// loop-owned objects (buses, messages) and must not wait for its own loop.
template <class F>
requires std::invocable < std::decay_t<F>
& > [[nodiscard]] detail::OffloadAwaiter<std::decay_t<F>> offload(F&& f) {
  using D = std::decay_t<F>;
  static_assert(!(detail::kRejectOwningTemporaryHandlers && std::is_rvalue_reference_v<F&&> && !std::is_trivially_destructible_v<D>),
                "natbus: GCC < 13 destroys a lambda temporary inside co_await twice. Name the callable first: "
                "`auto job = [v = std::move(v)] { ... };` then `co_await natbus::offload(std::move(job))` is still a "
                "temporary: capture by reference (`[&]`) or pass a named callable by lvalue. See README, 'Compiler notes'.");
  return detail::OffloadAwaiter<D>(std::forward<F>(f));
}

/// How a LoopThread runs.
struct LoopThreadOptions {
  /// How long stop() (and the destructor) lets submitted work finish before cancelling it.
  std::chrono::milliseconds stop_timeout = std::chrono::seconds(10);
  /// Threads behind offload() on this loop (1..1024; 0: the default, see RunOptions).
  int offload_threads = 0;
};

/// A natbus loop on a thread of its own: the way in for code that runs on other threads (an
/// HTTP server's pool, a Qt or Asio loop, workers). Not copyable or movable.
class LoopThread {
 public:
  /// Starts the thread and its loop. InvalidArgument for bad options.
  LoopThread();
  /// Starts the thread with these options.
  explicit LoopThread(const LoopThreadOptions& options);
  /// stop(). On the loop's own thread (from submitted work), it only asks the loop to stop.
  ~LoopThread();
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  /// Any thread: runs `f()` (a callable returning natbus::Task<T>) on the loop and returns a
  /// std::future<T> with its result or its exception. `f` is moved to the loop and lives while
  /// its task runs. Throws ClosedError once stop() began. Do not wait on the future from the
  /// loop's own thread (submitted work that waits for other submitted work deadlocks).
  ///   auto f = loop.submit([&bus]() -> natbus::Task<natbus::PubAck> { co_return co_await bus.publish(...); });
  template <class F>
  requires std::invocable<F&> && detail::IsTask<std::invoke_result_t<F&>>::value
      [[nodiscard]] std::future<typename std::invoke_result_t<F&>::value_type>
      submit(F f) {
    using T = typename std::invoke_result_t<F&>::value_type;
    auto s = std::make_unique<detail::SubmissionOf<F, T>>(std::move(f));
    auto fut = s->future();
    post(std::move(s));
    return fut;
  }

  /// Stops accepting work, lets submitted work finish for up to stop_timeout, then cancels what
  /// is left (its futures get ClosedError), closes every bus still open on the loop and joins
  /// the thread. Idempotent. Throws natbus::Error when called on the loop's own thread.
  void stop();
  /// True once stop() began (or the loop ended).
  [[nodiscard]] bool stopped() const noexcept;
  /// True on the loop's thread (in submitted work).
  [[nodiscard]] bool on_loop_thread() const noexcept;

 private:
  void post(std::unique_ptr<detail::Submission> s);
  std::shared_ptr<detail::LoopThreadState> state_;
  std::thread thread_;
};

}  // namespace natbus
