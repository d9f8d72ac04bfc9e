// natbus and other threads: the offload pool's entry point and LoopThread.
//
// A LoopThread's thread runs an ordinary natbus loop whose root coroutine (keeper) waits for
// stop(). Other threads reach it only through the loop's RemoteQueue: submit() posts a
// Submission, which the loop turns into a detached coroutine that fulfils the std::future.
#include <condition_variable>
#include <mutex>

#include <fmt/format.h>

#include "natbus/error.hpp"
#include "natbus/log.hpp"
#include "natbus/thread.hpp"
#include "runtime/detached.hpp"
#include "runtime/loop.hpp"
#include "runtime/wait.hpp"

namespace natbus {
namespace detail {

void offload_start(std::shared_ptr<OffloadJob> job) {
  Loop& loop = Loop::require("offload");
  std::shared_ptr<RemoteQueue> queue = loop.remote();
  loop.offload_user(Job([job = std::move(job), queue = std::move(queue)]() mutable {
    job->run();
    // Back on the loop: resume the awaiting coroutine. If the loop ended meanwhile, the post is
    // discarded and the coroutine (destroyed by the loop's shutdown) is never resumed.
    auto* box = new std::shared_ptr<OffloadJob>(std::move(job));
    queue->post(Work{[](void* a, void*, bool run) noexcept {
                       std::unique_ptr<std::shared_ptr<OffloadJob>> owned(static_cast<std::shared_ptr<OffloadJob>*>(a));
                       if (run) (*owned)->handle.resume();
                     },
                     box, nullptr});
  }));
}

std::exception_ptr stopped_error() noexcept {
  try {
    return std::make_exception_ptr(
        ClosedError("the LoopThread stopped before the submitted work finished", ErrorContext{.operation = "LoopThread::submit"}));
  } catch (...) {
    return std::current_exception();
  }
}

struct LoopThreadState {
  explicit LoopThreadState(const LoopThreadOptions& o) : options(o) {}
  LoopThreadOptions options;

  // Any thread, under mu.
  std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<RemoteQueue> queue;
  std::thread::id thread_id{};
  bool started = false;
  bool stopping = false;
  std::exception_ptr start_error;

  // Loop thread only.
  std::size_t active = 0;
  bool stop_requested = false;
  WaitList idle;
  WaitList stop_waiters;
};

namespace {

Task<void> keeper(LoopThreadState& st) {
  while (!st.stop_requested) co_await WaitOn(st.stop_waiters);
  // Submitted work finishes, within the bound; what is left is cancelled by the loop's shutdown.
  const auto deadline = saturating_deadline(st.options.stop_timeout);
  while (st.active > 0) {
    const bool woken = co_await WaitUntil(st.idle, deadline);
    if (!woken) {
      log(LogLevel::warn, "loop_thread_stop_timeout",
          {{"still_running", std::to_string(st.active)}, {"stop_timeout_ms", std::to_string(st.options.stop_timeout.count())}});
      break;
    }
  }
}

Detached run_tracked(Task<void> work, LoopThreadState* st) {
  co_await work;
  if (--st->active == 0) {
    if (Loop* loop = Loop::current(); loop != nullptr) st->idle.wake_all(*loop);
  }
}

void run_submission(void* a, void* b, bool run) noexcept {
  std::unique_ptr<Submission> s(static_cast<Submission*>(a));
  auto* st = static_cast<LoopThreadState*>(b);
  if (!run) return;  // the loop ended first: destroying `s` gives its future a broken promise
  ++st->active;
  run_tracked(s->start(), st);
}

void request_stop(void* a, void*, bool run) noexcept {
  auto* st = static_cast<LoopThreadState*>(a);
  if (!run) return;
  st->stop_requested = true;
  if (Loop* loop = Loop::current(); loop != nullptr) st->stop_waiters.wake_all(*loop);
}

void thread_main(const std::shared_ptr<LoopThreadState>& st) {
  try {
    Loop loop(st->options.offload_threads);
    Task<void> root = keeper(*st);
    bool done = false;
    auto& promise = root.handle().promise();
    promise.on_done_ctx = &done;
    promise.on_done = [](void* ctx, PromiseBase&) noexcept -> std::coroutine_handle<> {
      *static_cast<bool*>(ctx) = true;
      return std::noop_coroutine();
    };
    {
      std::lock_guard lock(st->mu);
      st->queue = loop.remote();
      st->thread_id = std::this_thread::get_id();
      st->started = true;
    }
    st->cv.notify_all();
    loop.schedule(root.handle());
    loop.run(done);
    {
      std::lock_guard lock(st->mu);
      st->stopping = true;  // a stop the loop made itself (it cannot end otherwise, but be safe)
    }
    loop.shutdown();  // cancels what is left, closes open buses, joins the workers
  } catch (...) {
    std::lock_guard lock(st->mu);
    st->start_error = std::current_exception();
    st->started = true;
    st->stopping = true;
    st->cv.notify_all();
  }
}

}  // namespace
}  // namespace detail

LoopThread::LoopThread() : LoopThread(LoopThreadOptions{}) {}

LoopThread::LoopThread(const LoopThreadOptions& options) {
  if (options.offload_threads < 0 || options.offload_threads > 1024) {
    throw InvalidArgument(fmt::format("offload_threads must be within 0..1024, got {}", options.offload_threads),
                          ErrorContext{.operation = "LoopThread"});
  }
  if (options.stop_timeout < std::chrono::milliseconds::zero()) {
    throw InvalidArgument(fmt::format("stop_timeout must not be negative, got {} ms", options.stop_timeout.count()),
                          ErrorContext{.operation = "LoopThread"});
  }
  state_ = std::make_shared<detail::LoopThreadState>(options);
  thread_ = std::thread([st = state_] { detail::thread_main(st); });
  std::unique_lock lock(state_->mu);
  state_->cv.wait(lock, [&] { return state_->started; });
  if (state_->start_error) {
    auto e = state_->start_error;
    lock.unlock();
    thread_.join();
    std::rethrow_exception(e);
  }
}

LoopThread::~LoopThread() {
  if (on_loop_thread()) {
    // Destroyed by its own work: ask the loop to stop and let the thread end by itself.
    std::lock_guard lock(state_->mu);
    if (!state_->stopping) {
      state_->stopping = true;
      state_->queue->post(detail::Work{&detail::request_stop, state_.get(), nullptr});
    }
    thread_.detach();
    return;
  }
  stop();
}

void LoopThread::stop() {
  if (on_loop_thread()) {
    throw Error(errc::invalid_argument, "called on the loop's own thread: it would wait for itself; call it from another thread",
                ErrorContext{.operation = "LoopThread::stop"});
  }
  {
    std::lock_guard lock(state_->mu);
    if (!state_->stopping) {
      state_->stopping = true;
      state_->queue->post(detail::Work{&detail::request_stop, state_.get(), nullptr});
    }
  }
  if (thread_.joinable()) thread_.join();
}

bool LoopThread::stopped() const noexcept {
  std::lock_guard lock(state_->mu);
  return state_->stopping;
}

bool LoopThread::on_loop_thread() const noexcept {
  std::lock_guard lock(state_->mu);
  return state_->thread_id == std::this_thread::get_id();
}

void LoopThread::post(std::unique_ptr<detail::Submission> s) {
  std::lock_guard lock(state_->mu);
  if (state_->stopping) throw ClosedError("the LoopThread is stopped", ErrorContext{.operation = "LoopThread::submit"});
  state_->queue->post(detail::Work{&detail::run_submission, s.release(), state_.get()});
}

}  // namespace natbus
