// Folder runtime/: the event loop and what runs on it: timers, the remote queue other threads
// post to, the worker pools (natbus' blocking cnats calls, and users' offload()), Task support
// (task.cpp), waits for a condition (wait.hpp), detached coroutines, LoopThread (thread.cpp). It
// calls only base/; everything above runs on it.
//
// The event loop behind natbus::run(): one per run() call, on the calling thread.
//
// - Coroutines resume only here. Other threads (natbus workers, cnats' timer, reconnect and
//   callback threads) hand work over through RemoteQueue: a mutex-protected vector swapped out
//   whole per iteration, and an eventfd written only when the loop is (about to be) asleep.
// - The NATS sockets are driven from here through cnats' event-loop mode (see connection.cpp):
//   reads happen in on_io(); writes accumulate in cnats' buffer and are flushed once per
//   iteration by the iteration hooks, so every ack/publish/reply made during an iteration goes
//   out in one write, with no added delay.
// - Blocking cnats calls run on a small worker pool (offload / blocking()).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "natbus/error.hpp"
#include "natbus/task.hpp"
#include "runtime/detached.hpp"

namespace natbus::detail {

using Clock = std::chrono::steady_clock;

/// A unit of work handed to the loop: fn(a, b, true) runs it on the loop thread;
/// fn(a, b, false) discards it (the loop is gone) on whatever thread posted it, so that owned
/// resources are released.
struct Work {
  void (*fn)(void* a, void* b, bool run) = nullptr;
  void* a = nullptr;
  void* b = nullptr;
};

/// The only way into a loop from another thread. Outlives the loop (shared_ptr).
class RemoteQueue {
 public:
  RemoteQueue();
  ~RemoteQueue();
  RemoteQueue(const RemoteQueue&) = delete;
  RemoteQueue& operator=(const RemoteQueue&) = delete;

  /// Any thread. Returns false (after discarding `w`) when the loop has ended.
  bool post(Work w);
  /// Any thread: makes the loop run an iteration soon.
  void wake() noexcept;

  // Loop side.
  [[nodiscard]] int fd() const noexcept { return efd_; }
  void take(std::vector<Work>& out);
  /// Marks the loop asleep; returns false (and stays awake) if work is already queued.
  bool prepare_sleep();
  void woke() noexcept { sleeping_.store(false, std::memory_order_relaxed); }
  void drain_fd() noexcept;
  /// Ends the queue: pending and later posts are discarded.
  void close();

 private:
  std::mutex mu_;
  std::vector<Work> items_;
  bool closed_ = false;
  std::atomic<bool> sleeping_{false};
  int efd_ = -1;
};

/// Something the loop polls (a NATS socket) or calls once per iteration (write flushing).
class IoHandler {
 public:
  virtual void on_io(std::uint32_t epoll_events) noexcept = 0;
  virtual void on_iteration_end() noexcept {}

 protected:
  IoHandler() = default;
  IoHandler(const IoHandler&) = default;
  IoHandler& operator=(const IoHandler&) = default;
  ~IoHandler() = default;
};

/// Told when the loop ends (before the worker threads are joined): buses close synchronously.
class ShutdownHook {
 public:
  virtual void on_loop_shutdown() noexcept = 0;

 protected:
  ShutdownHook() = default;
  ShutdownHook(const ShutdownHook&) = default;
  ShutdownHook& operator=(const ShutdownHook&) = default;
  ~ShutdownHook() = default;
};

struct TimerKey {
  Clock::time_point when{};
  std::uint64_t id = 0;
  friend bool operator<(const TimerKey& x, const TimerKey& y) noexcept { return x.when < y.when || (x.when == y.when && x.id < y.id); }
  [[nodiscard]] explicit operator bool() const noexcept { return id != 0; }
};

/// A move-only job for the worker pool (std::function would require copyable callables).
class Job {
 public:
  Job() = default;
  template <class F>
  explicit Job(F f) : impl_(std::make_unique<Impl<F>>(std::move(f))) {}
  void operator()() { impl_->run(); }
  explicit operator bool() const noexcept { return impl_ != nullptr; }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual void run() = 0;
  };
  template <class F>
  struct Impl final : Base {
    explicit Impl(F fn) : f(std::move(fn)) {}
    void run() override { f(); }
    F f;
  };
  std::unique_ptr<Base> impl_;
};

class WorkerPool {
 public:
  explicit WorkerPool(std::size_t max_threads) : max_threads_(max_threads) {}
  ~WorkerPool() { stop(); }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  /// Throws ClosedError naming `operation` once stop() began.
  void submit(Job job, const char* operation = "blocking call");
  /// Waits for running jobs and (unless `discard_queued`) queued ones, then joins the threads.
  void stop(bool discard_queued = false);
  [[nodiscard]] std::size_t max_threads() const noexcept { return max_threads_; }

 private:
  void worker_main();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  std::vector<std::thread> threads_;
  std::size_t idle_ = 0;
  std::size_t max_threads_;
  bool stopping_ = false;
};

class Loop {
 public:
  /// offload_threads: the pool behind natbus::offload() (0: default_offload_threads()).
  explicit Loop(int offload_threads = 0);
  [[nodiscard]] static int default_offload_threads() noexcept;
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  /// The loop running on this thread, or nullptr.
  static Loop* current() noexcept;
  /// The loop running on this thread; throws natbus::Error naming `operation` otherwise.
  static Loop& require(std::string_view operation);

  // ---- loop thread only ----
  void schedule(std::coroutine_handle<> h) { ready_.push_back(Work{&resume_work, h.address(), nullptr}); }
  void defer(Work w) { ready_.push_back(w); }
  TimerKey add_timer(Clock::time_point when, Work w);
  TimerKey add_timer(Clock::time_point when, std::coroutine_handle<> h) {
    return add_timer(when, Work{&resume_work, h.address(), nullptr});
  }
  bool cancel_timer(TimerKey key) noexcept;
  void spawn(Task<void> task);
  void add_iteration_hook(IoHandler* h) { hooks_.push_back(h); }
  void add_shutdown_hook(ShutdownHook* h) { shutdown_hooks_.push_back(h); }
  void remove_shutdown_hook(ShutdownHook* h) noexcept { std::erase(shutdown_hooks_, h); }
  [[nodiscard]] bool shutting_down() const noexcept { return shut_down_; }
  void remove_iteration_hook(IoHandler* h) noexcept;

  // ---- any thread ----
  [[nodiscard]] const std::shared_ptr<RemoteQueue>& remote() const noexcept { return remote_; }
  void add_io(int fd, std::uint32_t events, IoHandler* h);
  void mod_io(int fd, std::uint32_t events, IoHandler* h) noexcept;
  void del_io(int fd) noexcept;
  /// Runs `job` on a worker thread. The job must not touch loop-owned state; it reports back
  /// through remote()->post().
  template <class F>
  void offload(F job) {
    workers_.submit(Job(std::move(job)));
  }
  /// Runs a user job (natbus::offload) on the user pool, apart from natbus' own blocking calls
  /// so that CPU-heavy work never delays a connect or a flush. ClosedError once shutting down.
  void offload_user(Job job) {
    if (shut_down_) throw ClosedError("the loop is shutting down", ErrorContext{.operation = "offload"});
    user_pool_.submit(std::move(job), "offload");
  }
  [[nodiscard]] std::size_t offload_threads() const noexcept { return user_pool_.max_threads(); }

  /// Signals: the loop's side of shutdown_signal(). watch_signals() installs the handlers (once)
  /// and returns how many SIGINT/SIGTERM arrived so far; a waiter completes on the first signal
  /// after `seen` (at once when one already came).
  std::uint64_t watch_signals();
  [[nodiscard]] std::uint64_t signals_seen() const noexcept { return signals_seen_; }
  [[nodiscard]] int last_signal() const noexcept { return last_signal_; }
  void wait_signal(std::coroutine_handle<> h, int* signo_out);
  void cancel_signal_wait(std::coroutine_handle<> h) noexcept;

  /// Runs iterations until `done` is true.
  void run(const bool& done);
  /// Cancels what is left: destroys unfinished spawned tasks, closes the remote queue,
  /// joins the workers. Called by run_loop() after run().
  void shutdown();

  static void resume_work(void* a, void*, bool run) noexcept {
    if (run) std::coroutine_handle<>::from_address(a).resume();
  }

 private:
  void iterate(const bool& done);
  void on_signal_fd() noexcept;
  friend void detached_link(DetachedNode* node) noexcept;
  friend void detached_unlink(DetachedNode* node) noexcept;

  int epfd_ = -1;
  std::shared_ptr<RemoteQueue> remote_;
  std::vector<Work> ready_;
  std::vector<Work> running_;
  std::vector<Work> remote_batch_;
  std::map<TimerKey, Work> timers_;
  std::uint64_t next_timer_id_ = 1;
  std::vector<IoHandler*> hooks_;
  bool running_hooks_ = false;
  std::vector<ShutdownHook*> shutdown_hooks_;
  DetachedNode detached_;  // sentinel of the circular list of live Detached coroutines
  struct SignalWaiter {
    std::coroutine_handle<> h;
    int* out;
  };
  std::vector<SignalWaiter> signal_waiters_;
  int signal_pipe_[2] = {-1, -1};
  std::uint64_t signals_seen_ = 0;
  int last_signal_ = 0;
  WorkerPool workers_{4};
  WorkerPool user_pool_;
  Loop* previous_ = nullptr;
  bool shut_down_ = false;
};

/// Runs `fn` on a worker thread and resumes the awaiting coroutine on its loop with the result
/// (or exception). If the awaiting coroutine is destroyed first, the result is simply dropped
/// (so make it an owning type when it holds a resource).
template <class F>
class BlockingAwaiter : CancelNode {
 public:
  using R = std::invoke_result_t<F&>;
  explicit BlockingAwaiter(F fn) : CancelNode(&BlockingAwaiter::on_cancel), fn_(std::move(fn)) {}
  BlockingAwaiter(const BlockingAwaiter&) = delete;
  BlockingAwaiter& operator=(const BlockingAwaiter&) = delete;
  ~BlockingAwaiter() {
    if (state_) state_->abandoned.store(true);
  }

  [[nodiscard]] bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return suspend(h, scope_of(h));
  }
  R await_resume() {
    unlink();
    if (cancelled_) throw_cancelled("blocking call");
    auto st = std::move(state_);
    if (st->error) std::rethrow_exception(st->error);
    if constexpr (!std::is_void_v<R>) return std::move(*st->value);
  }

 private:
  bool suspend(std::coroutine_handle<> h, CancelScope* scope) {
    Loop& loop = Loop::require("blocking call");
    if (scope != nullptr && scope->cancelled()) {
      cancelled_ = true;
      return false;
    }
    state_ = std::make_shared<State>();
    state_->handle = h;
    state_->queue = loop.remote();
    loop.offload([st = state_, fn = std::move(fn_)]() mutable {
      try {
        if constexpr (std::is_void_v<R>) {
          fn();
          st->value.emplace(true);
        } else {
          st->value.emplace(fn());
        }
      } catch (...) {
        st->error = std::current_exception();
      }
      auto queue = st->queue;
      queue->post(Work{&State::complete, new std::shared_ptr<State>(std::move(st)), nullptr});
    });
    link(scope);
    return true;
  }
  // The job owns what it works on (it must not touch loop-owned state): it runs to its end on
  // the worker and its result is dropped; the coroutine goes on at once.
  static void on_cancel(CancelNode* node) noexcept {
    auto* self = static_cast<BlockingAwaiter*>(node);
    Loop* loop = Loop::current();
    if (!self->state_ || self->state_->abandoned.load() || loop == nullptr) return;
    self->state_->abandoned.store(true);
    self->cancelled_ = true;
    loop->schedule(self->state_->handle);
  }
  struct State {
    std::conditional_t<std::is_void_v<R>, std::optional<bool>, std::optional<R>> value;
    std::exception_ptr error;
    std::coroutine_handle<> handle;
    std::shared_ptr<RemoteQueue> queue;
    std::atomic<bool> abandoned{false};
    static void complete(void* a, void*, bool run) noexcept {
      auto* box = static_cast<std::shared_ptr<State>*>(a);
      auto st = std::move(*box);
      delete box;
      if (run && !st->abandoned.load()) st->handle.resume();
    }
  };
  F fn_;
  std::shared_ptr<State> state_;
  bool cancelled_ = false;
};

template <class F>
[[nodiscard]] BlockingAwaiter<F> blocking(F fn) {
  return BlockingAwaiter<F>(std::move(fn));
}

}  // namespace natbus::detail
