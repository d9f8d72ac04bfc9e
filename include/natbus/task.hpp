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

namespace detail {
template <class T>
Task<T> Promise<T>::get_return_object() noexcept {
  return Task<T>{std::coroutine_handle<Promise<T>>::from_promise(*this)};
}
inline Task<void> Promise<void>::get_return_object() noexcept {
  return Task<void>{std::coroutine_handle<Promise<void>>::from_promise(*this)};
}
}  // namespace detail

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

namespace detail {
/// Throws natbus::TimeoutError for an await that a with_timeout() interrupted.
[[noreturn]] void throw_cancelled(const char* operation);

struct TimerAwaiter : CancelNode {
  std::chrono::steady_clock::time_point deadline;
  std::uint64_t timer_id = 0;
  void* loop = nullptr;
  std::coroutine_handle<> handle{};
  bool cancelled = false;
  [[nodiscard]] bool await_ready() const noexcept;
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return suspend(h, scope_of(h));
  }
  bool suspend(std::coroutine_handle<> h, CancelScope* scope);
  void await_resume() {
    timer_id = 0;
    if (cancelled) throw_cancelled("natbus::sleep");
  }
  static void on_cancel(CancelNode* node) noexcept;
  TimerAwaiter(const TimerAwaiter&) = delete;
  TimerAwaiter& operator=(const TimerAwaiter&) = delete;
  explicit TimerAwaiter(std::chrono::steady_clock::time_point d) noexcept : CancelNode(&TimerAwaiter::on_cancel), deadline(d) {}
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

using Children = std::vector<std::pair<std::coroutine_handle<>, PromiseBase*>>;

// Not an aggregate on purpose: GCC 12 destroys aggregate temporaries in co_await twice.
class WhenAllStart {
 public:
  WhenAllStart(WhenAllState& st, Children ch) noexcept : state(st), children(std::move(ch)) {}
  [[nodiscard]] bool await_ready() const noexcept { return children.empty(); }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> parent) noexcept {
    state.parent = parent;
    state.remaining = children.size() + 1;  // +1: ours, dropped once every child was started
    CancelScope* scope = scope_of(parent);  // a with_timeout() around when_all reaches every child
    for (auto [c, p] : children) {
      if (!p->shielded) p->scope = scope;
      c.resume();
    }
    return --state.remaining != 0;
  }
  void await_resume() const noexcept {}

 private:
  WhenAllState& state;
  Children children;
};

template <class T>
void hook_child(Task<T>& t, WhenAllState& st, Children& out) {
  if (!t.valid()) throw std::invalid_argument("natbus::when_all: empty task");
  auto& p = t.handle().promise();
  p.on_done = &WhenAllState::arrive;
  p.on_done_ctx = &st;
  out.emplace_back(t.handle(), &p);
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
  Children children;
  children.reserve(sizeof...(Ts));
  (hook_child(tasks, st, children), ...);
  co_await WhenAllStart{st, std::move(children)};
  // Every task has finished; the first exception (in argument order) is rethrown.
  co_return std::tuple<NonVoid<Ts>...>{take_result(tasks)...};
}

template <class T>
Task<std::vector<NonVoid<T>>> when_all_vec(std::vector<Task<T>> tasks) {
  WhenAllState st;
  Children children;
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

namespace detail {

/// Awaiting it gives the calling coroutine's cancel scope, without suspending.
class CurrentScope {
 public:
  CurrentScope() noexcept = default;
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    scope_ = scope_of(h);
    return false;
  }
  [[nodiscard]] CancelScope* await_resume() const noexcept { return scope_; }

 private:
  CancelScope* scope_ = nullptr;
};

/// with_timeout()'s race between a task and a timer (defined in the library).
class TimeoutRace : CancelNode {
 public:
  TimeoutRace(CancelScope* outer, std::chrono::steady_clock::time_point deadline) noexcept;
  TimeoutRace(const TimeoutRace&) = delete;
  TimeoutRace& operator=(const TimeoutRace&) = delete;
  ~TimeoutRace();
  /// Runs `child` under this race's scope; false when it finished without suspending.
  bool start(std::coroutine_handle<> parent, std::coroutine_handle<> child, PromiseBase& child_promise);
  [[nodiscard]] bool timed_out() const noexcept { return timed_out_; }
  [[noreturn]] static void fail(std::chrono::nanoseconds timeout);

 private:
  static std::coroutine_handle<> child_done(void* ctx, PromiseBase& p) noexcept;
  static void on_timer(void* a, void* b, bool run) noexcept;
  static void on_outer_cancel(CancelNode* node) noexcept;
  void expire() noexcept;
  CancelScope scope_;
  CancelScope* outer_;
  std::chrono::steady_clock::time_point deadline_;
  std::coroutine_handle<> parent_{};
  void* loop_ = nullptr;
  std::uint64_t timer_id_ = 0;
  bool starting_ = false;
  bool done_ = false;
  bool timed_out_ = false;
};

class TimeoutRaceStart {
 public:
  TimeoutRaceStart(TimeoutRace& race, std::coroutine_handle<> child, PromiseBase& promise) noexcept
      : race_(race), child_(child), promise_(promise) {}
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> parent) { return race_.start(parent, child_, promise_); }
  void await_resume() const noexcept {}

 private:
  TimeoutRace& race_;
  std::coroutine_handle<> child_;
  PromiseBase& promise_;
};

template <class T>
Task<T> with_timeout_impl(Task<T> task, std::chrono::steady_clock::time_point deadline, std::chrono::nanoseconds timeout) {
  CancelScope* outer = co_await CurrentScope();
  TimeoutRace race(outer, deadline);
  co_await TimeoutRaceStart(race, task.handle(), task.handle().promise());
  if (race.timed_out()) TimeoutRace::fail(timeout);  // what the task produced after that is dropped
  co_return task.result();
}

[[noreturn]] void bad_timeout(long double seconds);

}  // namespace detail

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
  const auto ns = std::chrono::duration_cast<std::chrono::duration<double, std::nano>>(timeout).count() >= 9.2e18
                      ? std::chrono::nanoseconds::max()
                      : std::chrono::duration_cast<std::chrono::nanoseconds>(timeout);
  return detail::with_timeout_impl(std::move(task), detail::saturating_deadline(timeout), ns);
}

namespace detail {
/// Marks `task` as not interruptible by an enclosing with_timeout() (connect, close).
template <class T>
Task<T> shield(Task<T> task) noexcept {
  if (task.valid()) task.handle().promise().shielded = true;
  return task;
}
}  // namespace detail

/// Starts `task` on the current loop without awaiting it. It runs until it finishes or until
/// run() returns, whichever comes first; an exception it throws is logged (event
/// `task_failed`) and dropped. Must be called on a loop thread.
void spawn(Task<void> task);

}  // namespace natbus
