// The coroutine core without a server: Task, run, sleep, when_all, spawn, signals, and
// resumption from other threads.
#include <gtest/gtest.h>

#include <csignal>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "natbus/error.hpp"
#include "natbus/log.hpp"
#include "natbus/task.hpp"
#include "runtime/loop.hpp"

using namespace std::chrono_literals;
using natbus::Task;

namespace {

Task<int> answer() { co_return 42; }

Task<int> add(int a, int b) {
  co_await natbus::yield();
  co_return a + b;
}

Task<void> fail_after_yield() {
  co_await natbus::yield();
  throw std::runtime_error("boom");
}

Task<int> nested(int depth) {
  if (depth == 0) co_return 0;
  co_return 1 + co_await nested(depth - 1);
}

struct Tracked {
  explicit Tracked(int* live) : live_(live) { ++*live_; }
  Tracked(const Tracked&) = delete;
  Tracked& operator=(const Tracked&) = delete;
  ~Tracked() { --*live_; }
  int* live_;
};

}  // namespace

TEST(Task, RunReturnsTheValue) { EXPECT_EQ(natbus::run(answer()), 42); }

TEST(Task, AwaitChainsValues) {
  auto main_task = []() -> Task<int> {
    const int a = co_await add(1, 2);
    const int b = co_await add(a, 10);
    co_return b;
  };
  EXPECT_EQ(natbus::run(main_task()), 13);
}

TEST(Task, ExceptionsPropagateToTheAwaiterAndOutOfRun) {
  auto main_task = []() -> Task<std::string> {
    try {
      co_await fail_after_yield();
    } catch (const std::runtime_error& e) {
      co_return std::string("caught ") + e.what();
    }
    co_return "not caught";
  };
  EXPECT_EQ(natbus::run(main_task()), "caught boom");
  EXPECT_THROW(natbus::run(fail_after_yield()), std::runtime_error);
}

TEST(Task, LoopsOfAwaitsThatCompleteAtOnceKeepAConstantStack) {
  // A million awaits of tasks that finish without suspending (as publish_async does while the
  // window has room): this must not grow the stack, in -O0 (Debug, ASan) builds too.
  auto main_task = []() -> Task<long> {
    long sum = 0;
    for (int i = 0; i < 1000000; ++i) sum += co_await answer();
    co_return sum;
  };
  EXPECT_EQ(natbus::run(main_task()), 42000000L);
}

TEST(Task, LoopsOfAwaitsThatSuspendKeepAConstantStack) {
  auto main_task = []() -> Task<int> {
    int sum = 0;
    for (int i = 0; i < 100000; ++i) sum += co_await add(i % 3, 0);  // add() yields to the loop first
    co_return sum;
  };
  EXPECT_EQ(natbus::run(main_task()), 99999);  // sum of i % 3 below 100000
}

TEST(Task, NestedChains) {
  // Recursion depth costs stack like any recursion; 10k levels are well within it.
  EXPECT_EQ(natbus::run(nested(10000)), 10000);
}

TEST(Task, LazyUntilAwaitedAndDestroyableUnstarted) {
  int live = 0;
  bool ran = false;
  {
    auto t = [](int* l, bool* r) -> Task<void> {
      Tracked guard(l);
      *r = true;
      co_return;
    }(&live, &ran);
    EXPECT_FALSE(ran);  // lazy
  }
  EXPECT_FALSE(ran);
  EXPECT_EQ(live, 0);
}

TEST(Task, UnfinishedTasksAreDestroyedWithoutLeaksWhenRunEnds) {
  int live = 0;
  auto sleeper = [](int* l) -> Task<void> {
    Tracked t(l);
    co_await natbus::sleep(1h);  // never finishes
  };
  auto main_task = [&]() -> Task<int> {
    for (int i = 0; i < 100; ++i) natbus::spawn(sleeper(&live));
    co_await natbus::sleep(10ms);
    co_return live;
  };
  EXPECT_EQ(natbus::run(main_task()), 100);  // all 100 were running
  EXPECT_EQ(live, 0);                        // and were destroyed by run()'s end
}

TEST(Task, TimersFireInDeadlineOrder) {
  auto main_task = []() -> Task<std::vector<int>> {
    auto order = std::make_shared<std::vector<int>>();
    auto after = [](std::chrono::milliseconds d, int id, std::shared_ptr<std::vector<int>> out) -> Task<void> {
      co_await natbus::sleep(d);
      out->push_back(id);
    };
    co_await natbus::when_all(after(30ms, 3, order), after(10ms, 1, order), after(20ms, 2, order));
    co_return *order;
  };
  EXPECT_EQ(natbus::run(main_task()), (std::vector<int>{1, 2, 3}));
}

TEST(Task, SleepWaitsAtLeastItsDuration) {
  auto main_task = []() -> Task<std::chrono::steady_clock::duration> {
    const auto t0 = std::chrono::steady_clock::now();
    co_await natbus::sleep(50ms);
    co_return std::chrono::steady_clock::now() - t0;
  };
  EXPECT_GE(natbus::run(main_task()), 50ms);
}

TEST(Task, WhenAllReturnsResultsInArgumentOrder) {
  auto main_task = []() -> Task<int> {
    auto [a, b, c] = co_await natbus::when_all(add(1, 1), answer(), add(2, 3));
    co_return a * 100 + b + c;
  };
  EXPECT_EQ(natbus::run(main_task()), 247);
}

TEST(Task, WhenAllVectorAndVoid) {
  auto main_task = []() -> Task<int> {
    std::vector<Task<int>> tasks;
    for (int i = 0; i < 50; ++i) tasks.push_back(add(i, 0));
    auto results = co_await natbus::when_all(std::move(tasks));
    int sum = 0;
    for (int r : results) sum += r;
    std::vector<Task<void>> voids;
    voids.push_back([]() -> Task<void> { co_await natbus::yield(); }());
    auto v = co_await natbus::when_all(std::move(voids));
    co_return sum + static_cast<int>(v.size());
  };
  EXPECT_EQ(natbus::run(main_task()), 1225 + 1);
}

TEST(Task, WhenAllWaitsForAllThenRethrowsTheFirstError) {
  auto finished = std::make_shared<int>(0);
  auto slow = [](std::shared_ptr<int> f) -> Task<int> {
    co_await natbus::sleep(20ms);
    ++*f;
    co_return 1;
  };
  auto main_task = [&]() -> Task<void> {
    co_await natbus::when_all(
        slow(finished),
        []() -> Task<int> {
          co_await natbus::yield();
          throw std::logic_error("first");
        }(),
        slow(finished));
  };
  EXPECT_THROW(natbus::run(main_task()), std::logic_error);
  EXPECT_EQ(*finished, 2);
}

TEST(Task, TensOfThousandsOfSpawnedTasksAllRun) {
  constexpr int kTasks = 50000;
  auto counter = std::make_shared<int>(0);
  auto worker = [](std::shared_ptr<int> c) -> Task<void> {
    co_await natbus::yield();
    ++*c;
  };
  auto main_task = [&]() -> Task<int> {
    for (int i = 0; i < kTasks; ++i) natbus::spawn(worker(counter));
    while (*counter < kTasks) co_await natbus::yield();
    co_return *counter;
  };
  EXPECT_EQ(natbus::run(main_task()), kTasks);
}

TEST(Task, SpawnedTaskExceptionsAreLogged) {
  std::vector<std::string> events;
  natbus::set_log_sink([&](const natbus::LogRecord& r) { events.emplace_back(r.event); });
  auto main_task = []() -> Task<void> {
    natbus::spawn(fail_after_yield());
    co_await natbus::sleep(5ms);
  };
  natbus::run(main_task());
  natbus::set_log_sink({});
  EXPECT_NE(std::find(events.begin(), events.end(), "task_failed"), events.end());
}

TEST(Task, BlockingWorkResumesOnTheLoopThread) {
  auto main_task = []() -> Task<bool> {
    const auto loop_thread = std::this_thread::get_id();
    std::vector<std::thread::id> seen;
    for (int i = 0; i < 20; ++i) {
      auto job = [] { return std::this_thread::get_id(); };
      const auto worker = co_await natbus::detail::blocking(std::move(job));
      if (worker == loop_thread) co_return false;  // the job must not run on the loop
      seen.push_back(std::this_thread::get_id());
    }
    for (auto id : seen) {
      if (id != loop_thread) co_return false;
    }
    co_return true;
  };
  EXPECT_TRUE(natbus::run(main_task()));
}

TEST(Task, BlockingWorkPropagatesExceptions) {
  auto main_task = []() -> Task<void> {
    auto job = []() -> int { throw std::out_of_range("from worker"); };
    co_await natbus::detail::blocking(std::move(job));
  };
  EXPECT_THROW(natbus::run(main_task()), std::out_of_range);
}

TEST(Task, PostFromManyThreadsWakesTheLoop) {
  // Cross-thread resumption: 4 threads post 10k completions each through the remote queue.
  auto main_task = []() -> Task<int> {
    auto& loop = natbus::detail::Loop::require("test");
    auto remote = loop.remote();
    auto count = std::make_shared<int>(0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([remote, count] {
        for (int i = 0; i < 10000; ++i) {
          remote->post(natbus::detail::Work{[](void* a, void*, bool run) {
                                              if (run) ++*static_cast<int*>(a);
                                            },
                                            count.get(), nullptr});
        }
      });
    }
    for (auto& t : threads) t.join();
    while (*count < 40000) co_await natbus::sleep(1ms);
    co_return *count;
  };
  EXPECT_EQ(natbus::run(main_task()), 40000);
}

TEST(Task, RunIsNotReentrant) {
  auto main_task = []() -> Task<void> {
    natbus::run(answer());
    co_return;
  };
  EXPECT_THROW(natbus::run(main_task()), natbus::Error);
}

TEST(Task, SleepOutsideRunIsAClearError) {
  auto t = []() -> Task<void> { co_await natbus::sleep(1ms); }();
  // Driving the coroutine by hand (no loop): the sleep must throw, not crash.
  t.handle().resume();
  ASSERT_TRUE(t.done());
  EXPECT_THROW(t.result(), natbus::ClosedError);
}

TEST(Task, ShutdownSignalCompletesOnSigterm) {
  auto main_task = []() -> Task<int> {
    natbus::spawn([]() -> Task<void> {
      co_await natbus::sleep(20ms);
      std::raise(SIGTERM);
    }());
    co_return co_await natbus::shutdown_signal();
  };
  EXPECT_EQ(natbus::run(main_task()), SIGTERM);
}

TEST(Task, ShutdownSignalCompletesOnSigint) {
  auto main_task = []() -> Task<int> {
    natbus::spawn([]() -> Task<void> {
      co_await natbus::sleep(20ms);
      std::raise(SIGINT);
    }());
    co_return co_await natbus::shutdown_signal();
  };
  EXPECT_EQ(natbus::run(main_task()), SIGINT);
}
