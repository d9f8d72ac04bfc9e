// natbus implementation detail, not API: the awaiters and coroutines behind sleep(), yield(),
// when_all() and with_timeout(). Included by <natbus/task.hpp> after Task.
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

namespace detail {
template <class T>
Task<T> Promise<T>::get_return_object() noexcept {
  return Task<T>{std::coroutine_handle<Promise<T>>::from_promise(*this)};
}
inline Task<void> Promise<void>::get_return_object() noexcept {
  return Task<void>{std::coroutine_handle<Promise<void>>::from_promise(*this)};
}
}  // namespace detail

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

namespace detail {
struct YieldAwaiter {
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) const;
  void await_resume() const noexcept {}
};
}  // namespace detail

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
  [[noreturn]] static void fail(std::chrono::duration<double, std::milli> timeout);

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
Task<T> with_timeout_impl(Task<T> task, std::chrono::steady_clock::time_point deadline, std::chrono::duration<double, std::milli> timeout) {
  CancelScope* outer = co_await CurrentScope();
  TimeoutRace race(outer, deadline);
  co_await TimeoutRaceStart(race, task.handle(), task.handle().promise());
  if (race.timed_out()) TimeoutRace::fail(timeout);  // what the task produced after that is dropped
  co_return task.result();
}

[[noreturn]] void bad_timeout(long double seconds);

}  // namespace detail

namespace detail {
/// Marks `task` as not interruptible by an enclosing with_timeout() (connect, close).
template <class T>
Task<T> shield(Task<T> task) noexcept {
  if (task.valid()) task.handle().promise().shielded = true;
  return task;
}
}  // namespace detail

}  // namespace natbus
