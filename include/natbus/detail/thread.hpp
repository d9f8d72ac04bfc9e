// natbus implementation detail, not API: what offload() and LoopThread::submit() hand to the
// loop. Included by <natbus/thread.hpp>.
#pragma once

#include <coroutine>
#include <exception>
#include <future>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "natbus/task.hpp"

namespace natbus {

namespace detail {

/// A job for a loop's offload pool: run() on a worker, then `handle` resumes on the loop.
class OffloadJob {
 public:
  OffloadJob() = default;
  OffloadJob(const OffloadJob&) = delete;
  OffloadJob& operator=(const OffloadJob&) = delete;
  virtual ~OffloadJob() = default;
  virtual void run() noexcept = 0;
  std::coroutine_handle<> handle{};
};

/// Queues `job` on the current loop's offload pool (defined in the library). ClosedError when
/// not called on a loop, or once that loop is shutting down.
void offload_start(std::shared_ptr<OffloadJob> job);

template <class F>
class OffloadAwaiter {
 public:
  using R = std::invoke_result_t<F&>;
  explicit OffloadAwaiter(F f) : job_(std::make_shared<JobOf>(std::move(f))) {}
  OffloadAwaiter(const OffloadAwaiter&) = delete;
  OffloadAwaiter& operator=(const OffloadAwaiter&) = delete;
  OffloadAwaiter(OffloadAwaiter&&) noexcept = default;
  OffloadAwaiter& operator=(OffloadAwaiter&&) noexcept = default;
  ~OffloadAwaiter() = default;

  [[nodiscard]] bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    job_->handle = h;
    offload_start(job_);
  }
  R await_resume() {
    if (job_->error) std::rethrow_exception(job_->error);
    if constexpr (!std::is_void_v<R>) return std::move(*job_->value);
  }

 private:
  struct JobOf final : OffloadJob {
    explicit JobOf(F f) : fn(std::move(f)) {}
    void run() noexcept override {
      try {
        if constexpr (std::is_void_v<R>) {
          fn();
        } else {
          value.emplace(fn());
        }
      } catch (...) {
        error = std::current_exception();
      }
    }
    F fn;
    std::optional<std::conditional_t<std::is_void_v<R>, bool, R>> value;
    std::exception_ptr error;
  };
  std::shared_ptr<JobOf> job_;
};

template <class T>
struct IsTask : std::false_type {};
template <class T>
struct IsTask<Task<T>> : std::true_type {};

/// What LoopThread::submit() hands to its loop (type-erased; defined below and in the library).
class Submission {
 public:
  Submission() = default;
  Submission(const Submission&) = delete;
  Submission& operator=(const Submission&) = delete;
  virtual ~Submission() = default;
  /// On the loop: the coroutine that runs the work and fulfils the future.
  virtual Task<void> start() = 0;
};

/// The ClosedError of work cancelled because its LoopThread stopped (defined in the library).
[[nodiscard]] std::exception_ptr stopped_error() noexcept;

/// Fulfils a std::promise exactly once; an unfulfilled one gets a ClosedError when destroyed
/// (the loop stopped before the work finished).
template <class T>
class PromiseGuard {
 public:
  explicit PromiseGuard(std::promise<T> p) noexcept : promise_(std::move(p)) {}
  PromiseGuard(const PromiseGuard&) = delete;
  PromiseGuard& operator=(const PromiseGuard&) = delete;
  ~PromiseGuard() {
    if (!set_) promise_.set_exception(stopped_error());
  }
  template <class... A>
  void set_value(A&&... a) {
    set_ = true;
    promise_.set_value(std::forward<A>(a)...);
  }
  void set_exception(std::exception_ptr e) {
    set_ = true;
    promise_.set_exception(std::move(e));
  }

 private:
  std::promise<T> promise_;
  bool set_ = false;
};

template <class F, class T>
class SubmissionOf final : public Submission {
 public:
  explicit SubmissionOf(F f) : f_(std::move(f)) {}
  SubmissionOf(const SubmissionOf&) = delete;
  SubmissionOf& operator=(const SubmissionOf&) = delete;
  ~SubmissionOf() override {
    if (!started_) promise_.set_exception(stopped_error());  // the loop ended before it ran
  }
  std::future<T> future() { return promise_.get_future(); }
  Task<void> start() override {
    started_ = true;
    return run(std::move(f_), std::move(promise_));
  }

 private:
  // `f` lives in this frame while its task runs: a lambda coroutine's captures stay valid.
  static Task<void> run(F f, std::promise<T> p) {
    PromiseGuard<T> guard(std::move(p));
    try {
      if constexpr (std::is_void_v<T>) {
        co_await f();
        guard.set_value();
      } else {
        T value = co_await f();
        guard.set_value(std::move(value));
      }
    } catch (...) {
      guard.set_exception(std::current_exception());
    }
  }
  F f_;
  std::promise<T> promise_;
  bool started_ = false;
};

struct LoopThreadState;

}  // namespace detail

}  // namespace natbus
