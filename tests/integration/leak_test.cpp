// Leaks: a connect/publish/consume/close cycle repeated 1000 times leaves the heap where it was
// (measured with mallinfo2 in plain builds; the ASan build's LeakSanitizer checks at exit).
#include <gtest/gtest.h>
#include <malloc.h>

#include "support/bus_test.hpp"

using namespace std::chrono_literals;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kCycles = 200;  // sanitizer allocators make heap figures meaningless; LSan checks leaks
constexpr bool kMeasureHeap = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr int kCycles = 200;
constexpr bool kMeasureHeap = false;
#else
constexpr int kCycles = 1000;
constexpr bool kMeasureHeap = true;
#endif
#else
constexpr int kCycles = 1000;
constexpr bool kMeasureHeap = true;
#endif

namespace {

Task<void> cycles(NatsConfig cfg, int n) {
  for (int i = 0; i < n; ++i) {
    NatsBus bus{cfg};
    co_await bus.connect();
    int got = 0;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      ++got;
      co_await m.ack();
    };
    auto push = co_await bus.push_subscribe("leak.*", handler, {.durable = "leak_push"});
    auto pull = co_await bus.pull_subscribe("leak.*", {.durable = "leak_pull"});
    auto msg = natbus::BusMessage::from_json("leak.a", {{"i", i}}, {.compress = (i % 2) == 0});
    co_await bus.publish(std::move(msg));
    auto fetched = co_await pull.fetch(1, 2s);
    for (auto& m : fetched) {
      (void)m.as_json();
      co_await m.ack();
    }
    for (int k = 0; k < 200 && got == 0; ++k) co_await natbus::sleep(5ms);
    EXPECT_EQ(got, 1);
    EXPECT_EQ(fetched.size(), 1U);
    co_await bus.close();
  }
}

}  // namespace

TEST(Leak, ConnectPublishConsumeCloseCyclesDoNotGrowTheHeap) {
  NatsServer server;
  NatsConfig cfg = config_for(server);
  cfg.stream_create = true;
  cfg.stream_name = "LEAK";
  cfg.stream_subjects = {"leak.*"};
  cfg.stream.storage = natbus::StorageType::memory;
  cfg.stream.max_msgs = 100;
  natbus::run(cycles(cfg, 50));  // warm-up: frame pools, cnats' caches
  const auto before = mallinfo2().uordblks;
  const auto t0 = std::chrono::steady_clock::now();
  natbus::run(cycles(cfg, kCycles));
  const auto took = std::chrono::steady_clock::now() - t0;
  const auto after = mallinfo2().uordblks;
  const long growth = static_cast<long>(after) - static_cast<long>(before);
  std::printf("[leak] %d connect/publish/consume/close cycles in %.1f s, heap in use %zu -> %zu bytes (%+ld)\n", kCycles,
              std::chrono::duration<double>(took).count(), before, after, growth);
  if (kMeasureHeap) {
    EXPECT_LT(growth, 256 * 1024) << "heap grew by " << growth << " bytes over " << kCycles << " cycles";
  }
}
