#include "runtime/loop.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>
#include <system_error>

#include <fmt/format.h>

#include "natbus/error.hpp"
#include "natbus/log.hpp"

namespace natbus::detail {

namespace {

thread_local Loop* t_current_loop = nullptr;

// ---- process-wide signal plumbing for shutdown_signal() -------------------------------------
// A signal handler may only do async-signal-safe things: it writes the signal number to the
// pipe of every loop that waits for one. The table is fixed-size and lock-free for that reason.
constexpr int kMaxSignalLoops = 32;
// Each slot holds a pipe's write end + 1 (0: free), so that zero-initialization means empty.
std::atomic<int> g_signal_fds[kMaxSignalLoops];  // NOLINT: process-wide by nature
std::mutex g_signal_mu;                          // install/uninstall only, never in the handler
int g_signal_users = 0;
struct sigaction g_old_int {};
struct sigaction g_old_term {};

void natbus_signal_handler(int signo) {
  const int saved_errno = errno;
  auto byte = static_cast<unsigned char>(signo);
  for (auto& slot : g_signal_fds) {
    const int fd = slot.load(std::memory_order_relaxed) - 1;
    if (fd >= 0) (void)!::write(fd, &byte, 1);
  }
  // A second SIGINT/SIGTERM ends the process the usual way.
  std::signal(signo, SIG_DFL);
  errno = saved_errno;
}

void install_signal_fd(int write_fd) {
  std::lock_guard lock(g_signal_mu);
  bool placed = false;
  for (auto& slot : g_signal_fds) {
    int expected = 0;
    if (slot.compare_exchange_strong(expected, write_fd + 1)) {
      placed = true;
      break;
    }
  }
  if (!placed) throw Error(errc::invalid_argument, "shutdown_signal: too many loops waiting for signals");
  if (g_signal_users++ == 0) {
    struct sigaction sa {};
    sa.sa_handler = &natbus_signal_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &sa, &g_old_int);
    ::sigaction(SIGTERM, &sa, &g_old_term);
  }
}

void uninstall_signal_fd(int write_fd) noexcept {
  std::lock_guard lock(g_signal_mu);
  for (auto& slot : g_signal_fds) {
    int expected = write_fd + 1;
    if (slot.compare_exchange_strong(expected, 0)) break;
  }
  if (--g_signal_users == 0) {
    ::sigaction(SIGINT, &g_old_int, nullptr);
    ::sigaction(SIGTERM, &g_old_term, nullptr);
  }
}

}  // namespace

// ---- RemoteQueue ----------------------------------------------------------------------------

RemoteQueue::RemoteQueue() : efd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (efd_ < 0) throw Error(errc::invalid_argument, std::string("event loop: eventfd failed: ") + std::system_category().message(errno));
}

RemoteQueue::~RemoteQueue() {
  close();
  ::close(efd_);
}

bool RemoteQueue::post(Work w) {
  {
    std::unique_lock lock(mu_);
    if (!closed_) {
      items_.push_back(w);
      lock.unlock();
      if (sleeping_.exchange(false)) wake();
      return true;
    }
  }
  w.fn(w.a, w.b, false);
  return false;
}

void RemoteQueue::wake() noexcept {
  const std::uint64_t one = 1;
  (void)!::write(efd_, &one, sizeof one);
}

void RemoteQueue::take(std::vector<Work>& out) {
  std::lock_guard lock(mu_);
  out.swap(items_);
}

bool RemoteQueue::prepare_sleep() {
  sleeping_.store(true);
  std::lock_guard lock(mu_);
  if (!items_.empty()) {
    sleeping_.store(false);
    return false;
  }
  return true;
}

void RemoteQueue::drain_fd() noexcept {
  std::uint64_t v = 0;
  (void)!::read(efd_, &v, sizeof v);
}

void RemoteQueue::close() {
  std::vector<Work> left;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    left.swap(items_);
  }
  for (auto& w : left) w.fn(w.a, w.b, false);
}

// ---- WorkerPool -----------------------------------------------------------------------------

void WorkerPool::submit(Job job, const char* operation) {
  std::unique_lock lock(mu_);
  if (stopping_) throw ClosedError("the loop's worker pool has stopped", ErrorContext{.operation = operation});
  jobs_.push_back(std::move(job));
  if (idle_ == 0 && threads_.size() < max_threads_) {
    threads_.emplace_back([this] { worker_main(); });
  } else {
    cv_.notify_one();
  }
}

void WorkerPool::worker_main() {
  std::unique_lock lock(mu_);
  for (;;) {
    while (jobs_.empty() && !stopping_) {
      ++idle_;
      cv_.wait(lock);
      --idle_;
    }
    if (jobs_.empty()) return;  // stopping and nothing left
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    try {
      job();
    } catch (...) {
      // Jobs report their own errors; nothing may escape a worker thread.
    }
    lock.lock();
  }
}

void WorkerPool::stop(bool discard_queued) {
  std::vector<std::thread> threads;
  std::deque<Job> dropped;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    threads.swap(threads_);
    if (discard_queued) dropped.swap(jobs_);
  }
  cv_.notify_all();
  for (auto& t : threads) t.join();
}

// ---- Loop -------------------------------------------------------------------------------------

int Loop::default_offload_threads() noexcept { return static_cast<int>(std::max<unsigned>(4, std::thread::hardware_concurrency())); }

Loop::Loop(int offload_threads)
    : epfd_(::epoll_create1(EPOLL_CLOEXEC)),
      remote_(std::make_shared<RemoteQueue>()),
      user_pool_(static_cast<std::size_t>(offload_threads > 0 ? offload_threads : default_offload_threads())) {
  if (epfd_ < 0)
    throw Error(errc::invalid_argument, std::string("event loop: epoll_create1 failed: ") + std::system_category().message(errno));
  if (t_current_loop != nullptr) {
    ::close(epfd_);
    throw Error(errc::invalid_argument, "natbus::run: this thread is already running a natbus loop (run() is not reentrant)");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // nullptr: the remote queue's eventfd
  ::epoll_ctl(epfd_, EPOLL_CTL_ADD, remote_->fd(), &ev);
  detached_.next = detached_.prev = &detached_;
  ready_.reserve(256);
  running_.reserve(256);
  previous_ = t_current_loop;
  t_current_loop = this;
}

Loop::~Loop() {
  shutdown();
  t_current_loop = previous_;
  ::close(epfd_);
}

Loop* Loop::current() noexcept { return t_current_loop; }

Loop& Loop::require(std::string_view operation) {
  if (t_current_loop == nullptr) {
    throw ClosedError("must be called from a coroutine running under natbus::run()", ErrorContext{.operation = std::string(operation)});
  }
  return *t_current_loop;
}

TimerKey Loop::add_timer(Clock::time_point when, Work w) {
  TimerKey key{when, next_timer_id_++};
  timers_.emplace(key, w);
  return key;
}

bool Loop::cancel_timer(TimerKey key) noexcept { return timers_.erase(key) != 0; }

void Loop::remove_iteration_hook(IoHandler* h) noexcept {
  // A hook may remove itself (or another) while the hooks run: blank it, compact afterwards.
  std::replace(hooks_.begin(), hooks_.end(), h, static_cast<IoHandler*>(nullptr));
  if (!running_hooks_) std::erase(hooks_, nullptr);
}

void Loop::add_io(int fd, std::uint32_t events, IoHandler* h) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = h;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST) {
    ::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
  }
}

void Loop::mod_io(int fd, std::uint32_t events, IoHandler* h) noexcept {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = h;
  ::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
}

void Loop::del_io(int fd) noexcept { ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr); }

namespace {
struct Reschedule {
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) const { Loop::require("natbus::spawn").schedule(h); }
  void await_resume() const noexcept {}
};

Detached run_spawned(Task<void> task) {
  co_await Reschedule{};
  co_await task;
}
}  // namespace

void detached_link(DetachedNode* node) noexcept {
  Loop* loop = t_current_loop;
  node->loop = loop;
  if (loop == nullptr) return;
  DetachedNode& head = loop->detached_;
  node->next = head.next;
  node->prev = &head;
  head.next->prev = node;
  head.next = node;
}

void detached_unlink(DetachedNode* node) noexcept {
  if (node->loop == nullptr) return;
  node->prev->next = node->next;
  node->next->prev = node->prev;
  node->prev = node->next = nullptr;
}

void detached_failed(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    log(LogLevel::error, "task_failed", {{"error", ex.what()}});
  } catch (...) {
    log(LogLevel::error, "task_failed", {{"error", "unknown exception"}});
  }
}

void Loop::spawn(Task<void> task) {
  if (!task.valid()) throw std::invalid_argument("natbus::spawn: empty task");
  run_spawned(std::move(task));
}

std::uint64_t Loop::watch_signals() {
  if (signal_pipe_[0] < 0) {
    if (::pipe2(signal_pipe_, O_NONBLOCK | O_CLOEXEC) != 0) {
      throw Error(errc::invalid_argument, std::string("shutdown_signal: pipe2 failed: ") + std::system_category().message(errno));
    }
    install_signal_fd(signal_pipe_[1]);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &signal_pipe_;  // sentinel: the signal pipe
    ::epoll_ctl(epfd_, EPOLL_CTL_ADD, signal_pipe_[0], &ev);
  }
  return signals_seen_;
}

void Loop::wait_signal(std::coroutine_handle<> h, int* signo_out) {
  watch_signals();
  signal_waiters_.push_back(SignalWaiter{h, signo_out});
}

void Loop::cancel_signal_wait(std::coroutine_handle<> h) noexcept {
  std::erase_if(signal_waiters_, [h](const SignalWaiter& w) { return w.h == h; });
}

void Loop::on_signal_fd() noexcept {
  unsigned char buf[64];
  int signo = 0;
  for (;;) {
    const ssize_t n = ::read(signal_pipe_[0], buf, sizeof buf);
    if (n <= 0) break;
    signo = buf[n - 1];
    signals_seen_ += static_cast<std::uint64_t>(n);
  }
  if (signo == 0) return;
  last_signal_ = signo;
  log(LogLevel::info, "shutdown_signal", {{"signal", signo == SIGINT ? "SIGINT" : signo == SIGTERM ? "SIGTERM" : std::to_string(signo)}});
  auto waiters = std::move(signal_waiters_);
  signal_waiters_.clear();
  for (auto& w : waiters) {
    *w.out = signo;
    schedule(w.h);
  }
}

void Loop::iterate(const bool& done) {
  // 1. Ready work, in FIFO order. Work queued while running goes to the next round, so that
  //    I/O is never starved by coroutines that keep rescheduling themselves.
  running_.swap(ready_);
  for (auto& w : running_) w.fn(w.a, w.b, true);
  running_.clear();

  // 2. Work from other threads.
  remote_->take(remote_batch_);
  for (auto& w : remote_batch_) w.fn(w.a, w.b, true);
  remote_batch_.clear();

  // 3. Due timers.
  //    Timers added while firing (even already due) wait for the next iteration, so that a
  //    coroutine re-arming a due timer cannot starve the rest of the loop.
  if (!timers_.empty()) {
    const auto now = Clock::now();
    const std::uint64_t limit = next_timer_id_;
    for (;;) {
      auto it = timers_.begin();
      while (it != timers_.end() && it->first.when <= now && it->first.id >= limit) ++it;
      if (it == timers_.end() || it->first.when > now) break;
      auto node = timers_.extract(it);
      node.mapped().fn(node.mapped().a, node.mapped().b, true);
    }
  }

  // 4. Flush what this iteration wrote (acks, publishes, replies): one write per connection.
  running_hooks_ = true;
  for (std::size_t i = 0; i < hooks_.size(); ++i) {
    if (hooks_[i] != nullptr) hooks_[i]->on_iteration_end();
  }
  running_hooks_ = false;
  std::erase(hooks_, nullptr);

  // 5. Poll: without blocking when there is work, else until the next timer.
  int timeout_ms = 0;
  if (!done && ready_.empty()) {
    if (timers_.empty()) {
      timeout_ms = 1000;  // nothing scheduled: wake up now and then anyway
    } else {
      const auto until = timers_.begin()->first.when - Clock::now();
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(until).count();
      timeout_ms = static_cast<int>(std::clamp<long long>(ms, 0, 1000));
    }
    if (timeout_ms > 0 && !remote_->prepare_sleep()) timeout_ms = 0;
  }
  epoll_event events[64];
  const int n = ::epoll_wait(epfd_, events, 64, timeout_ms);
  if (timeout_ms > 0) remote_->woke();
  for (int i = 0; i < n; ++i) {
    void* p = events[i].data.ptr;
    if (p == nullptr) {
      remote_->drain_fd();
    } else if (p == static_cast<void*>(&signal_pipe_)) {
      on_signal_fd();
    } else {
      static_cast<IoHandler*>(p)->on_io(events[i].events);
    }
  }
}

void Loop::run(const bool& done) {
  while (!done) iterate(done);
}

void Loop::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  // Offloaded user work that is running finishes first (it may use what the coroutines that
  // wait for it own); what has not started is dropped, and its coroutines are destroyed below.
  user_pool_.stop(true);
  // Unfinished detached coroutines are destroyed here: their awaiters unregister themselves
  // and their RAII members release what they hold.
  while (detached_.next != &detached_) {
    std::coroutine_handle<>::from_address(detached_.next->frame).destroy();
  }
  // Buses still open close synchronously (bounded), before the workers are joined.
  while (!shutdown_hooks_.empty()) {
    ShutdownHook* hook = shutdown_hooks_.back();
    shutdown_hooks_.pop_back();
    hook->on_loop_shutdown();
  }
  while (detached_.next != &detached_) {
    std::coroutine_handle<>::from_address(detached_.next->frame).destroy();
  }
  // Owners of timers and deferred work get to release what they hold (run == false).
  auto timers = std::move(timers_);
  timers_.clear();
  for (auto& [key, w] : timers) w.fn(w.a, w.b, false);
  auto ready = std::move(ready_);
  ready_.clear();
  for (auto& w : ready) w.fn(w.a, w.b, false);
  signal_waiters_.clear();
  if (signal_pipe_[0] >= 0) {
    uninstall_signal_fd(signal_pipe_[1]);
    ::close(signal_pipe_[0]);
    ::close(signal_pipe_[1]);
    signal_pipe_[0] = signal_pipe_[1] = -1;
  }
  remote_->close();
  workers_.stop();
  remote_->close();  // anything the last jobs posted
}

// ---- public entry points ----------------------------------------------------------------------

void run_loop(std::coroutine_handle<> root, const bool& done, int offload_threads) {
  if (offload_threads < 0 || offload_threads > 1024) {
    throw InvalidArgument(fmt::format("offload_threads must be within 0..1024, got {}", offload_threads),
                          ErrorContext{.operation = "natbus::run"});
  }
  Loop loop(offload_threads);
  loop.schedule(root);
  loop.run(done);
  loop.shutdown();
}

}  // namespace natbus::detail
