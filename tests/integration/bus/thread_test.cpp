// natbus in a service with other threads, on a real server: BlockingBus from many threads at
// once, handlers that offload CPU work, and with_timeout around requests, publishes, fetches
// and flushes (the abandoned operation leaves nothing behind and its late answer is dropped).
#include <gtest/gtest.h>

#include <time.h>

#include <atomic>
#include <future>
#include <set>
#include <thread>
#include <vector>

#include "support/bus_test.hpp"
#include "support/child_process.hpp"

using namespace std::chrono_literals;
using natbus::BusMessage;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::PubAck;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

namespace {

using Clock = std::chrono::steady_clock;

long long ms_since(Clock::time_point t0) { return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count(); }

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

/// Burns `seconds` of this thread's CPU time (real work: the optimizer cannot drop it).
std::uint64_t burn_cpu(double seconds) {
  const double until = thread_cpu_seconds() + seconds;
  std::uint64_t x = 88172645463325252ULL;
  while (thread_cpu_seconds() < until) {
    for (int i = 0; i < 1000; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
    }
  }
  return x;
}

}  // namespace

TEST(Threads, EightThreadsPublishThroughABlockingBusAndEveryMessageIsStoredOnce) {
  NatsServer server;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 10000;
  {
    natbus::BlockingBus bus(stream_config(server, "MT", "mt.>"));
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&bus, &failures, t] {
        std::vector<std::future<PubAck>> acks;
        acks.reserve(kPerThread);
        for (int i = 0; i < kPerThread; ++i) {
          acks.push_back(bus.publish_async(BusMessage::from_json("mt.t" + std::to_string(t), {{"t", t}, {"i", i}})));
        }
        for (auto& f : acks) {
          try {
            const PubAck a = f.get();
            if (a.stream != "MT" || a.duplicate) ++failures;
          } catch (const std::exception&) {
            ++failures;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
    // A blocking publish and a core publish from this thread too.
    const PubAck last = bus.publish(BusMessage::from_json("mt.last", {{"t", -1}, {"i", 0}}));
    EXPECT_EQ(last.sequence, static_cast<std::uint64_t>(kThreads * kPerThread + 1));
    // A core publish on a stream subject is stored too (the stream captures the subject).
    bus.publish_core(BusMessage::from_json("mt.core", {{"core", true}}));
    bus.flush();
    auto info = bus.submit([](NatsBus& b) { return b.stream_info("MT"); });
    EXPECT_EQ(info.get().messages, static_cast<std::uint64_t>(kThreads * kPerThread + 2));

    // Read everything back on the bus's loop: each (thread, index) exactly once.
    auto seen = bus.submit([](NatsBus& b) -> Task<std::set<std::pair<int, int>>> {
      std::set<std::pair<int, int>> got;
      auto sub = co_await b.pull_subscribe("mt.>", {.durable = "mt-check", .deliver_policy = natbus::DeliverPolicy::all});
      int dupes = 0;
      for (int round = 0; round < 400 && got.size() < kThreads * kPerThread + 2; ++round) {
        auto msgs = co_await sub.fetch(1000, 2s);
        if (msgs.empty()) break;
        for (auto& m : msgs) {
          const auto j = m.as_json();
          if (j.contains("t") && !got.emplace(j.at("t").get<int>(), j.at("i").get<int>()).second) ++dupes;
          co_await m.ack();
        }
      }
      EXPECT_EQ(dupes, 0);
      co_await sub.close();
      co_return got;
    });
    const auto got = seen.get();
    EXPECT_EQ(got.size(), static_cast<std::size_t>(kThreads * kPerThread + 1)) << "every publish stored, none twice";
    for (int t = 0; t < kThreads; ++t) {
      EXPECT_TRUE(got.count({t, 0}) == 1 && got.count({t, kPerThread - 1}) == 1) << "thread " << t;
    }
    const auto m = bus.metrics();
    EXPECT_EQ(m.publish.failed, 0U);
    bus.close();
    EXPECT_EQ(bus.status(), natbus::ConnectionStatus::closed);
    EXPECT_THROW((void)bus.publish(BusMessage::from_json("mt.x", {{"late", true}})), natbus::ClosedError);
  }
}

TEST(Threads, BlockingBusRequestsAndErrorsFromForeignThreads) {
  NatsServer server;
  // The service: a NatsBus on a LoopThread of its own, reached only through submit().
  natbus::LoopThread service_loop;
  std::unique_ptr<NatsBus> service_bus;
  std::optional<natbus::Subscription> service;
  service_loop
      .submit([&]() -> Task<void> {
        service_bus = std::make_unique<NatsBus>(config_for(server));
        co_await service_bus->connect();
        auto on_price = [](ReceivedMessage& m) -> Task<nlohmann::json> {
          const auto q = m.as_json();
          if (q.at("sku") == "bad") throw std::runtime_error("unknown sku");
          co_return nlohmann::json{{"sku", q.at("sku")}, {"price", 12.5}};
        };
        service.emplace(co_await service_bus->serve("mt.prices", on_price, {.queue = "prices"}));
      })
      .get();

  natbus::BlockingBus client(config_for(server));
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        const std::string sku = "s" + std::to_string(t) + "-" + std::to_string(i);
        auto reply = client.request(BusMessage::from_json("mt.prices", {{"sku", sku}}), 5s);
        if (reply.as_json().at("sku") == sku) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 400);
  EXPECT_THROW((void)client.request(BusMessage::from_json("mt.prices", {{"sku", "bad"}}), 5s), natbus::RemoteError);
  EXPECT_THROW((void)client.request(BusMessage::from_json("mt.nobody", {{"x", 1}}), 5s), natbus::NoRespondersError);
  EXPECT_THROW((void)client.publish(BusMessage::from_json("mt.no.stream", {{"x", 1}})), natbus::NoStreamError);
  // Bad input is still a clear error on the calling thread's side.
  EXPECT_THROW((void)client.request(BusMessage::from_json("bad subject", {{"x", 1}}), 5s), natbus::InvalidArgument);
  client.close();

  service_loop
      .submit([&]() -> Task<void> {
        co_await service->close();
        service.reset();
        co_await service_bus->close();
        service_bus.reset();
      })
      .get();
}

TEST(Threads, StoppingALoopThreadClosesTheBusesItsWorkLeftOpen) {
  NatsServer server;
  std::unique_ptr<NatsBus> left_open;
  {
    natbus::LoopThread loop;
    loop.submit([&]() -> Task<void> {
          left_open = std::make_unique<NatsBus>(config_for(server));
          co_await left_open->connect();
        })
        .get();
    EXPECT_EQ(loop.submit([&]() -> Task<natbus::ConnectionStatus> { co_return left_open->status(); }).get(),
              natbus::ConnectionStatus::connected);
  }  // the LoopThread stops and joins here
  EXPECT_EQ(left_open->status(), natbus::ConnectionStatus::closed) << "closed by the loop's shutdown, not left connected";
  left_open.reset();  // the loop thread is gone: destroying it here races with nothing
}

TEST(Threads, ABlockingBusThatCannotConnectThrowsAndStopsItsThread) {
  NatsConfig c;
  c.server = "nats://127.0.0.1:1";
  c.connect_timeout = 200ms;
  c.max_reconnect_attempts = 0;
  EXPECT_THROW(natbus::BlockingBus bus(c), natbus::ConnectionError);
}

TEST(Threads, OffloadedHandlersUseSeveralCores) {
  NatsServer server;
  constexpr int kMessages = 40;
  constexpr double kWork = 0.050;
  auto run_with = [&](int concurrency, const std::string& durable) {
    long long took = 0;
    int peak = 0;
    natbus::run([&]() -> Task<void> {
      NatsBus bus{stream_config(server, "OFF", "off.>")};
      co_await bus.connect();
      int done = 0;
      int running = 0;
      auto on_msg = [&](ReceivedMessage m) -> Task<void> {
        peak = std::max(peak, ++running);
        auto job = [] { return burn_cpu(kWork); };
        (void)co_await natbus::offload(job);
        --running;
        ++done;
        co_await m.ack();
      };
      for (int i = 0; i < kMessages; ++i) {
        auto msg = BusMessage::from_json("off." + durable, {{"i", i}});
        (void)co_await bus.publish(std::move(msg));
      }
      const auto t0 = Clock::now();
      auto sub = co_await bus.push_subscribe(
          "off." + durable, on_msg, {.durable = durable, .deliver_policy = natbus::DeliverPolicy::all, .max_concurrency = concurrency});
      const bool all = co_await eventually([&] { return done == kMessages; }, 60s);
      took = ms_since(t0);
      EXPECT_TRUE(all) << done;
      co_await sub.close();
      co_await bus.close();
    }());
    return std::pair{took, peak};
  };
  const auto [serial, serial_peak] = run_with(1, "serial");
  const auto [parallel, parallel_peak] = run_with(4, "parallel");
  EXPECT_EQ(serial_peak, 1);
  EXPECT_EQ(parallel_peak, 4) << "four handlers of one subscription offloaded at once";
  std::printf("offload: %d messages x %.0f ms CPU: max_concurrency 1: %lld ms, max_concurrency 4: %lld ms (%.2f of serial, %u cores)\n",
              kMessages, kWork * 1000, serial, parallel, static_cast<double>(parallel) / static_cast<double>(serial),
              std::thread::hardware_concurrency());
}

TEST(WithTimeout, AroundARequestTheLateReplyIsDropped) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    int answered = 0;
    auto on_req = [&](ReceivedMessage& m) -> Task<nlohmann::json> {
      if (m.as_json().at("slow").get<bool>()) co_await natbus::sleep(600ms);
      ++answered;
      co_return nlohmann::json{{"ok", true}};
    };
    auto svc = co_await bus.serve("wt.slow", on_req);
    auto slow = BusMessage::from_json("wt.slow", {{"slow", true}});
    const auto t0 = Clock::now();
    EXPECT_THROW((void)co_await natbus::with_timeout(bus.request(std::move(slow), 10s), 100ms), natbus::TimeoutError);
    EXPECT_LT(ms_since(t0), 550) << "interrupted before the reply, not at the request's own 10 s";
    // The reply comes later and finds nobody waiting; the bus goes on.
    const bool late = co_await eventually([&] { return answered == 1; }, 5s);
    EXPECT_TRUE(late);
    co_await natbus::sleep(50ms);
    auto fast = BusMessage::from_json("wt.slow", {{"slow", false}});
    auto reply = co_await natbus::with_timeout(bus.request(std::move(fast), 5s), 5s);
    EXPECT_TRUE(reply.as_json().at("ok").get<bool>());
    co_await svc.close();
    co_await bus.close();
  }());
}

TEST(WithTimeout, AroundAPublishAndAFlushWhileTheServerIsFrozen) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server, "WT", "wt.>")};
    co_await bus.connect();
    server.freeze();
    auto msg = BusMessage::from_json("wt.a", {{"n", 1}});
    auto t0 = Clock::now();
    EXPECT_THROW((void)co_await natbus::with_timeout(bus.publish(std::move(msg)), 150ms), natbus::TimeoutError);
    EXPECT_LT(ms_since(t0), 3000);
    t0 = Clock::now();
    EXPECT_THROW(co_await natbus::with_timeout(bus.flush(10s), 150ms), natbus::TimeoutError);
    EXPECT_LT(ms_since(t0), 3000);
    server.thaw();
    // The PubAck of the first publish arrives now and is dropped; the bus works on.
    co_await bus.flush(5s);
    auto again = BusMessage::from_json("wt.a", {{"n", 2}});
    const PubAck ack = co_await natbus::with_timeout(bus.publish(std::move(again)), 5s);
    EXPECT_EQ(ack.sequence, 2U) << "the interrupted publish had reached the server (its outcome was unknown, not lost)";
    EXPECT_EQ(bus.pending_publishes(), 0U);
    co_await bus.close();
  }());
}

TEST(WithTimeout, AroundAFetchNothingIsLostForTheNextOne) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server, "WF", "wf.>")};
    co_await bus.connect();
    auto sub = co_await bus.pull_subscribe("wf.>", {.durable = "wf"});
    const auto t0 = Clock::now();
    EXPECT_THROW((void)co_await natbus::with_timeout(sub.fetch(5, 10s), 150ms), natbus::TimeoutError);
    EXPECT_LT(ms_since(t0), 3000);
    // The abandoned pull request is still open on the server: what it delivers is kept.
    for (int i = 0; i < 3; ++i) {
      auto msg = BusMessage::from_json("wf.x", {{"i", i}});
      (void)co_await bus.publish(std::move(msg));
    }
    std::vector<int> got;
    for (int round = 0; round < 10 && got.size() < 3; ++round) {
      auto msgs = co_await natbus::with_timeout(sub.fetch(5, 1s), 5s);
      for (auto& m : msgs) {
        got.push_back(m.as_json().at("i").get<int>());
        co_await m.ack();
      }
    }
    EXPECT_EQ(got, (std::vector<int>{0, 1, 2}));
    co_await sub.close();
    co_await bus.close();
  }());
}

#ifdef NATBUS_EXAMPLE_THREADS
TEST(Example, ThreadsExampleRunsEndToEnd) {
  NatsServer server(ServerOptions{.user = "nats-user", .password = "changeme"});
  ChildProcess example({NATBUS_EXAMPLE_THREADS}, {"NATS_SERVER=" + server.url(), "NATS_USERNAME=nats-user", "NATS_PASSWORD=changeme"});
  const auto handled = example.wait_for_line("100 jobs handled in", 60s);
  ASSERT_TRUE(handled) << ::testing::PrintToString(example.output());
  EXPECT_EQ(example.wait(30s), 0);
  int pings = 0;
  for (const auto& l : example.output()) {
    if (l.find("ping answered {\"ok\":true}") != std::string::npos) ++pings;
  }
  EXPECT_EQ(pings, 4) << ::testing::PrintToString(example.output());
  std::printf("%s\n", handled->c_str());
}
#endif
