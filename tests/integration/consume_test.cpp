// Push and pull consumers against a real server.
#include <gtest/gtest.h>

#include "support/bus_test.hpp"

using namespace std::chrono_literals;
using natbus::BusMessage;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

namespace {
NatsConfig stream_config(const NatsServer& server, const std::string& stream, const std::string& subjects) {
  NatsConfig c = config_for(server);
  c.stream_create = true;
  c.stream_name = stream;
  c.stream_subjects = {subjects};
  c.deliver_policy = natbus::DeliverPolicy::all;
  return c;
}
}  // namespace

TEST(Consume, PushDeliversAndAcks) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server, "PUSH1", "push1.*")};
    co_await bus.connect();
    std::vector<std::string> got;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      got.emplace_back(m.as_text());
      co_await m.ack();
    };
    auto sub = co_await bus.push_subscribe("push1.*", handler, {.durable = "d1"});
    for (int i = 0; i < 10; ++i) {
      auto msg = BusMessage::from_text("push1.a", std::to_string(i));
      co_await bus.publish(std::move(msg));
    }
    for (int i = 0; i < 200 && got.size() < 10; ++i) co_await natbus::sleep(10ms);
    EXPECT_EQ(got.size(), 10U);
    if (got.size() == 10) {
      EXPECT_EQ(got[9], "9");
    }
    co_await natbus::sleep(50ms);
    auto info = co_await bus.consumer_info("PUSH1", "d1");
    EXPECT_EQ(info.num_ack_pending, 0U);
    co_await bus.close();
  }());
}

TEST(Consume, PullHandlerAndFetch) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server, "PULL1", "pull1.*")};
    co_await bus.connect();
    for (int i = 0; i < 25; ++i) {
      auto msg = BusMessage::from_text("pull1.a", std::to_string(i));
      co_await bus.publish(std::move(msg));
    }
    auto fetcher = co_await bus.pull_subscribe("pull1.*", {.durable = "f1", .batch = 10});
    auto first = co_await fetcher.fetch(10, 2s);
    EXPECT_EQ(first.size(), 10U);
    for (auto& m : first) co_await m.ack();
    auto none = co_await fetcher.fetch_no_wait(100);
    EXPECT_EQ(none.size(), 15U);
    for (auto& m : none) co_await m.ack();
    const auto t0 = std::chrono::steady_clock::now();
    auto empty = co_await fetcher.fetch(5, 300ms);
    EXPECT_TRUE(empty.empty());
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);

    int handled = 0;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      ++handled;
      co_await m.ack();
    };
    auto sub = co_await bus.pull_subscribe("pull1.*", handler, {.durable = "h1", .batch = 4, .expires = 1s});
    for (int i = 0; i < 300 && handled < 25; ++i) co_await natbus::sleep(10ms);
    EXPECT_EQ(handled, 25);
    co_await bus.close();
  }());
}
