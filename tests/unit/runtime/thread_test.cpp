// with_timeout, offload and LoopThread without a server: cancellation reaches natbus' awaits
// and leaves nothing behind, offloaded work runs off the loop's thread, and other threads hand
// work to a LoopThread and get results and exceptions back.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

#include "natbus/error.hpp"
#include "natbus/task.hpp"
#include "natbus/thread.hpp"

using namespace std::chrono_literals;
using natbus::Task;

namespace {

using Clock = std::chrono::steady_clock;

Task<int> sleepy(std::chrono::milliseconds d, int v) {
  co_await natbus::sleep(d);
  co_return v;
}

Task<int> sleepy_with_cleanup(std::chrono::milliseconds d, bool& cleaned, bool& finished) {
  struct Cleanup {
    bool& flag;
    ~Cleanup() { flag = true; }
  } cleanup{cleaned};
  co_await natbus::sleep(d);
  finished = true;
  co_return 1;
}

long long ms_since(Clock::time_point t0) { return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count(); }

}  // namespace

TEST(WithTimeout, ReturnsTheValueWhenTheTaskIsInTime) {
  const int v = natbus::run([]() -> Task<int> { co_return co_await natbus::with_timeout(sleepy(10ms, 7), 5s); }());
  EXPECT_EQ(v, 7);
}

TEST(WithTimeout, ATaskThatNeverSuspendsIsNotTimedOut) {
  const int v = natbus::run([]() -> Task<int> {
    auto at_once = []() -> Task<int> { co_return 3; };
    co_return co_await natbus::with_timeout(at_once(), 0ms);
  }());
  EXPECT_EQ(v, 3);
}

TEST(WithTimeout, ZeroTimesOutAtTheFirstSuspension) {
  natbus::run([]() -> Task<void> { EXPECT_THROW((void)co_await natbus::with_timeout(sleepy(0ms, 3), 0ms), natbus::TimeoutError); }());
}

TEST(WithTimeout, InterruptsASleepAndTheTaskUnwindsBeforeItThrows) {
  bool cleaned = false;
  bool finished = false;
  long long took = 0;
  natbus::run([&]() -> Task<void> {
    const auto t0 = Clock::now();
    try {
      (void)co_await natbus::with_timeout(sleepy_with_cleanup(10s, cleaned, finished), 50ms);
      ADD_FAILURE() << "no TimeoutError";
    } catch (const natbus::TimeoutError& e) {
      took = ms_since(t0);
      EXPECT_EQ(e.context().operation, "with_timeout");
      EXPECT_TRUE(cleaned) << "the abandoned task has unwound when with_timeout throws";
    }
  }());
  EXPECT_FALSE(finished);
  EXPECT_GE(took, 50);
  EXPECT_LT(took, 5000) << "interrupted, not run to its 10 s end";
}

TEST(WithTimeout, TheTaskSeesATimeoutErrorAndMayHandleIt) {
  natbus::run([]() -> Task<void> {
    auto inner = []() -> Task<int> {
      bool interrupted = false;
      try {
        co_await natbus::sleep(10s);
      } catch (const natbus::TimeoutError&) {
        interrupted = true;
      }
      EXPECT_TRUE(interrupted);
      // Cleanup code may run; a further natbus await does not suspend again.
      co_await natbus::sleep(10s);  // throws at once: the scope is cancelled
      co_return 0;
    };
    const auto t0 = Clock::now();
    EXPECT_THROW((void)co_await natbus::with_timeout(inner(), 20ms), natbus::TimeoutError);
    EXPECT_LT(ms_since(t0), 5000);
  }());
}

TEST(WithTimeout, NestedTimeoutsTheInnerOneFirst) {
  natbus::run([]() -> Task<void> {
    auto inner = []() -> Task<int> {
      try {
        co_return co_await natbus::with_timeout(sleepy(10s, 1), 20ms);
      } catch (const natbus::TimeoutError&) {
        co_return -1;
      }
    };
    const int v = co_await natbus::with_timeout(inner(), 5s);
    EXPECT_EQ(v, -1);
  }());
}

TEST(WithTimeout, NestedTimeoutsTheOuterOneCancelsTheInner) {
  natbus::run([]() -> Task<void> {
    auto inner = []() -> Task<int> { co_return co_await natbus::with_timeout(sleepy(10s, 1), 10s); };
    const auto t0 = Clock::now();
    EXPECT_THROW((void)co_await natbus::with_timeout(inner(), 30ms), natbus::TimeoutError);
    EXPECT_LT(ms_since(t0), 5000);
  }());
}

TEST(WithTimeout, ReachesEveryTaskOfAWhenAll) {
  natbus::run([]() -> Task<void> {
    auto both = []() -> Task<int> {
      auto [a, b] = co_await natbus::when_all(sleepy(10s, 1), sleepy(10s, 2));
      co_return a + b;
    };
    const auto t0 = Clock::now();
    EXPECT_THROW((void)co_await natbus::with_timeout(both(), 30ms), natbus::TimeoutError);
    EXPECT_LT(ms_since(t0), 5000);
  }());
}

TEST(WithTimeout, AroundShutdownSignal) {
  natbus::run([]() -> Task<void> {
    auto sig = natbus::shutdown_signal();
    EXPECT_THROW((void)co_await natbus::with_timeout(std::move(sig), 20ms), natbus::TimeoutError);
  }());
}

TEST(WithTimeout, NegativeTimeoutIsAClearError) {
  natbus::run([]() -> Task<void> {
    try {
      (void)natbus::with_timeout(sleepy(1ms, 1), -1ms);
      ADD_FAILURE() << "accepted";
    } catch (const natbus::InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("-0.001"), std::string::npos) << e.what();
    }
    co_return;
  }());
}

TEST(WithTimeout, HugeTimeoutsDoNotOverflow) {
  const int v = natbus::run([]() -> Task<int> { co_return co_await natbus::with_timeout(sleepy(5ms, 9), std::chrono::hours::max()); }());
  EXPECT_EQ(v, 9);
}

TEST(WithTimeout, DestroyedWhileWaitingLeavesNoTimer) {
  // run() ends while a with_timeout is pending inside a spawned task: the loop destroys it;
  // ASan would report the timer firing into freed memory.
  natbus::run([]() -> Task<void> {
    auto waiter = []() -> Task<void> { (void)co_await natbus::with_timeout(sleepy(10s, 1), 50ms); };
    natbus::spawn(waiter());
    co_await natbus::sleep(5ms);
  }());
  SUCCEED();
}

TEST(Offload, RunsOnAnotherThreadAndResumesOnTheLoop) {
  natbus::run([]() -> Task<void> {
    const auto loop_thread = std::this_thread::get_id();
    std::thread::id worker;
    auto job = [&] {
      worker = std::this_thread::get_id();
      return 6 * 7;
    };
    const int v = co_await natbus::offload(job);
    EXPECT_EQ(v, 42);
    EXPECT_NE(worker, loop_thread);
    EXPECT_EQ(std::this_thread::get_id(), loop_thread);
  }());
}

TEST(Offload, PropagatesExceptions) {
  natbus::run([]() -> Task<void> {
    auto job = []() -> int { throw std::runtime_error("cpu says no"); };
    try {
      (void)co_await natbus::offload(job);
      ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "cpu says no");
    }
  }());
}

TEST(Offload, JobsRunConcurrentlyUpToThePoolSize) {
  std::atomic<int> running{0};
  std::atomic<int> peak{0};
  natbus::run(
      [&]() -> Task<void> {
        auto job = [&] {
          const int now = ++running;
          int p = peak.load();
          while (now > p && !peak.compare_exchange_weak(p, now)) {
          }
          std::this_thread::sleep_for(30ms);  // blocking work (a thread's sleep is the point here)
          --running;
        };
        auto one = [&]() -> Task<void> { co_await natbus::offload(job); };
        std::vector<Task<void>> tasks;
        for (int i = 0; i < 6; ++i) tasks.push_back(one());
        co_await natbus::when_all(std::move(tasks));
      }(),
      natbus::RunOptions{.offload_threads = 3});
  EXPECT_EQ(peak.load(), 3) << "three threads, six jobs: exactly three at once";
}

TEST(Offload, WithTimeoutWaitsForTheJobThenThrows) {
  natbus::run([]() -> Task<void> {
    std::atomic<bool> job_done{false};
    auto job = [&] {
      std::this_thread::sleep_for(100ms);
      job_done = true;
    };
    auto offloaded = [&]() -> Task<void> { co_await natbus::offload(job); };
    EXPECT_THROW(co_await natbus::with_timeout(offloaded(), 10ms), natbus::TimeoutError);
    EXPECT_TRUE(job_done.load()) << "the job (which uses this frame) finished before the frame moved on";
  }());
}

TEST(Offload, OutsideALoopOrWithBadOptionsIsAClearError) {
  auto job = [] { return 1; };
  auto awaiter = natbus::offload(job);
  EXPECT_THROW(awaiter.await_suspend(std::noop_coroutine()), natbus::ClosedError);
  EXPECT_THROW(natbus::run(sleepy(1ms, 1), natbus::RunOptions{.offload_threads = -1}), natbus::InvalidArgument);
  EXPECT_THROW(natbus::run(sleepy(1ms, 1), natbus::RunOptions{.offload_threads = 5000}), natbus::InvalidArgument);
}

TEST(LoopThread, SubmitFromOtherThreadsReturnsResultsAndExceptions) {
  natbus::LoopThread loop;
  EXPECT_FALSE(loop.on_loop_thread());
  std::vector<std::future<int>> results;
  std::vector<std::thread> threads;
  std::mutex mu;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto f = loop.submit([t, i]() -> Task<int> {
          co_await natbus::yield();
          co_return t * 1000 + i;
        });
        std::lock_guard lock(mu);
        results.push_back(std::move(f));
      }
    });
  }
  for (auto& th : threads) th.join();
  long long sum = 0;
  for (auto& f : results) sum += f.get();
  long long want = 0;
  for (int t = 0; t < 4; ++t)
    for (int i = 0; i < 50; ++i) want += t * 1000 + i;
  EXPECT_EQ(sum, want);

  auto bad = loop.submit([]() -> Task<void> {
    co_await natbus::sleep(1ms);
    throw natbus::InvalidArgument("bad thing", natbus::ErrorContext{.operation = "test"});
  });
  EXPECT_THROW(bad.get(), natbus::InvalidArgument);

  auto where = loop.submit([&loop]() -> Task<bool> { co_return loop.on_loop_thread(); });
  EXPECT_TRUE(where.get());
}

TEST(LoopThread, StopLetsWorkFinishThenSubmitThrowsClosedError) {
  natbus::LoopThread loop;
  std::atomic<bool> finished{false};
  auto f = loop.submit([&]() -> Task<int> {
    co_await natbus::sleep(50ms);
    finished = true;
    co_return 5;
  });
  loop.stop();
  EXPECT_TRUE(finished.load());
  EXPECT_EQ(f.get(), 5);
  EXPECT_TRUE(loop.stopped());
  EXPECT_THROW((void)loop.submit([]() -> Task<void> { co_return; }), natbus::ClosedError);
  loop.stop();  // idempotent
}

TEST(LoopThread, StopCancelsWorkThatOutlivesTheBound) {
  natbus::LoopThread loop({.stop_timeout = 50ms});
  auto f = loop.submit([]() -> Task<int> {
    co_await natbus::sleep(1h);
    co_return 1;
  });
  const auto t0 = Clock::now();
  loop.stop();
  EXPECT_LT(ms_since(t0), 5000);
  EXPECT_THROW(f.get(), natbus::ClosedError);
}

TEST(LoopThread, StopFromItsOwnThreadIsAClearError) {
  natbus::LoopThread loop;
  auto f = loop.submit([&loop]() -> Task<void> {
    loop.stop();
    co_return;
  });
  EXPECT_THROW(f.get(), natbus::Error);
}

TEST(LoopThread, OffloadFromSubmittedWork) {
  natbus::LoopThread loop({.offload_threads = 2});
  auto f = loop.submit([]() -> Task<int> {
    auto job = [] { return 11; };
    co_return co_await natbus::offload(job);
  });
  EXPECT_EQ(f.get(), 11);
}

TEST(LoopThread, BadOptionsAreClearErrors) {
  EXPECT_THROW(natbus::LoopThread({.offload_threads = -3}), natbus::InvalidArgument);
  EXPECT_THROW(natbus::LoopThread({.stop_timeout = -1ms}), natbus::InvalidArgument);
}
