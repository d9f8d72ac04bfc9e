// Durables across processes (pods): resuming where the old one left off, a killed or frozen pod
// replaced without "already bound" or loss, and the example service end to end.
#include <gtest/gtest.h>
#include <signal.h>

#include <map>

#include "support/bus_test.hpp"
#include "support/child_process.hpp"

using namespace std::chrono_literals;
using natbus::BusMessage;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

namespace {
std::vector<std::string> consumer_args(const NatsServer& server, const std::string& durable, const std::string& queue, int n,
                                       const std::string& kind = "push") {
  return {NATBUS_TEST_CONSUMER, server.url(), "RESUME", "resume.*", durable, queue, std::to_string(n), kind};
}
}  // namespace

TEST(Durable, ResumesInANewProcessWhereTheOldOneLeftOff) {
  NatsServer server;
  NatsConfig cfg = consume_config(server, "RESUME", "resume.*");
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    co_await publish_n(bus, "resume.a", 5);
    co_await bus.close();
  }());
  {
    ChildProcess first(consumer_args(server, "pod", "", 5));
    EXPECT_TRUE(first.wait_for_line("DONE 5", 20s)) << ::testing::PrintToString(first.output());
    EXPECT_EQ(first.wait(10s), 0);
  }
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    co_await publish_n(bus, "resume.a", 3, 5);  // published while no pod runs
    co_await bus.close();
  }());
  ChildProcess second(consumer_args(server, "pod", "", 3));
  EXPECT_TRUE(second.wait_for_line("DONE 3", 20s)) << ::testing::PrintToString(second.output());
  EXPECT_EQ(second.wait(10s), 0);
  std::vector<std::string> got;
  for (const auto& l : second.output()) {
    if (l.rfind("MSG ", 0) == 0) got.push_back(l.substr(4));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"5", "6", "7"}));  // only what the first did not ack
}

TEST(Durable, KilledPodIsReplacedWithoutAlreadyBoundAndUnackedWorkComesBack) {
  NatsServer server;
  NatsConfig cfg = consume_config(server, "RESUME", "resume.*");
  cfg.ack_wait = 2s;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    co_await publish_n(bus, "resume.a", 4);
    co_await bus.close();
  }());
  // The old pod takes the 4 messages and dies before acking them.
  ChildProcess old_pod(consumer_args(server, "killed", "", 1000), {"NOACK=1", "ACK_WAIT_MS=2000"});
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(old_pod.wait_for_line("MSG ", 20s)) << ::testing::PrintToString(old_pod.output());
  old_pod.signal(SIGKILL);
  EXPECT_EQ(old_pod.wait(10s), -SIGKILL);
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    std::map<std::string, std::uint64_t> delivered;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      delivered[std::string(m.as_text())] = m.metadata()->num_delivered;
      co_await m.ack();
    };
    const auto t0 = std::chrono::steady_clock::now();
    auto sub = co_await bus.push_subscribe("resume.*", handler, {.durable = "killed"});
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);                     // the binding of a dead pod is gone at once
    EXPECT_TRUE(co_await eventually([&] { return delivered.size() == 4; }));  // after ack_wait (2 s)
    for (const auto& [body, n] : delivered) EXPECT_GE(n, 2U) << body;
    co_await bus.close();
  }());
}

TEST(Durable, FrozenPodHoldsTheBindingUntilTheServerDropsIt) {
  // A frozen pod keeps its subscription alive on the server until the server's pings time out
  // (here ping_interval 1.5 s x ping_max 2, so 3-4.5 s: long enough that a slow sanitizer
  // build reaches the short-bind_timeout check while the frozen pod still holds the durable):
  // the new pod waits it out with backoff.
  NatsServer server(ServerOptions{.ping_interval = 1500ms, .ping_max = 2});
  NatsConfig cfg = consume_config(server, "RESUME", "resume.*");
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    co_await bus.close();
  }());
  ChildProcess frozen(consumer_args(server, "frozen", "", 1000));
  ASSERT_TRUE(frozen.wait_for_line("READY", 20s));
  frozen.signal(SIGSTOP);
  LogCapture logs;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    auto handler = [](ReceivedMessage m) -> Task<void> { co_await m.ack(); };
    // A short bind_timeout gives up with an error that says why.
    try {
      auto sub = co_await bus.push_subscribe("resume.*", handler, {.durable = "frozen", .bind_timeout = 200ms});
      ADD_FAILURE() << "bound while the frozen pod still held the durable";
    } catch (const natbus::AlreadyBoundError& e) {
      EXPECT_NE(std::string(e.what()).find("bind_timeout"), std::string::npos) << e.what();
    }
    // A long enough one succeeds once the server has dropped the frozen connection.
    const auto t0 = std::chrono::steady_clock::now();
    auto sub = co_await bus.push_subscribe("resume.*", handler, {.durable = "frozen", .bind_timeout = 20s});
    EXPECT_TRUE(sub.active());
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 15s);
    co_await bus.close();
  }());
  EXPECT_TRUE(logs.has_event("js_consumer_bound_elsewhere")) << logs.all();
  EXPECT_TRUE(logs.has_event("js_consumer_released")) << logs.all();
}

TEST(Durable, QueueGroupPodJoinsWhileAnotherIsFrozen) {
  NatsServer server;
  NatsConfig cfg = consume_config(server, "RESUME", "resume.*");
  ChildProcess frozen(consumer_args(server, "qpod", "workers", 1000));
  ASSERT_TRUE(frozen.wait_for_line("READY", 20s));
  frozen.signal(SIGSTOP);
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    int handled = 0;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      ++handled;
      co_await m.ack();
    };
    const auto t0 = std::chrono::steady_clock::now();
    auto sub = co_await bus.push_subscribe("resume.*", handler, {.durable = "qpod", .queue = "workers"});
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);  // no exclusivity with a deliver group
    co_await publish_n(bus, "resume.a", 10);
    EXPECT_TRUE(co_await eventually([&] { return handled > 0; }));
    co_await bus.close();
  }());
}

#ifdef NATBUS_EXAMPLE_ORDERS
TEST(Example, OrdersServiceRunsEndToEnd) {
  NatsServer server(ServerOptions{.user = "nats-user", .password = "changeme"});
  ChildProcess service({NATBUS_EXAMPLE_ORDERS}, {"NATS_SERVER=" + server.url(), "NATS_USERNAME=nats-user", "NATS_PASSWORD=changeme"});
  int push = 0;
  int pull = 0;
  bool json_text = false;
  bool jpeg_binary = false;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while ((push < 2 || pull < 2 || !json_text || !jpeg_binary) && std::chrono::steady_clock::now() < deadline) {
    auto line = service.read_line(1s);
    if (!line) continue;
    if (line->rfind("PUSH RX: test.stream", 0) == 0) ++push;
    if (line->rfind("PULL RX: test.stream", 0) == 0) ++pull;
    if (*line == R"(  text: {"hello":"world"})") json_text = true;
    if (line->find("binary payload: 16 bytes") != std::string::npos) jpeg_binary = true;
  }
  EXPECT_EQ(push, 2) << ::testing::PrintToString(service.output());
  EXPECT_EQ(pull, 2);
  EXPECT_TRUE(json_text);
  EXPECT_TRUE(jpeg_binary);
  bool typed = false;
  bool sender = false;
  for (const auto& l : service.output()) {
    if (l.find("content_type=image/jpeg") != std::string::npos) typed = true;
    if (l.find("sender=orders-svc") != std::string::npos) sender = true;
  }
  EXPECT_TRUE(typed);
  EXPECT_TRUE(sender);
  service.signal(SIGTERM);
  EXPECT_EQ(service.wait(20s), 0);
  EXPECT_EQ(service.output().back(), "CLOSED");
}
#endif

// The one handler convention: every subscription kind takes the message by reference, and the
// message stays valid across the handler's suspensions until its task has finished.
