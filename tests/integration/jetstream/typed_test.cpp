// Typed handlers: push_subscribe<T> / pull_subscribe<T> decode the payload before the handler
// runs; a payload that does not decode is a poison message (logged, terminated, dead-lettered).
#include <gtest/gtest.h>

#include <algorithm>

#include "support/bus_test.hpp"

using namespace std::chrono_literals;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

namespace typed {
struct Order {
  int id = 0;
  std::string item;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Order, id, item)
}  // namespace typed

namespace {

NatsConfig typed_config(const NatsServer& server) {
  NatsConfig c = config_for(server);
  c.stream_create = true;
  c.stream_name = "TYPED";
  c.stream_subjects = {"typed.>", "dlq.>"};
  c.deliver_policy = natbus::DeliverPolicy::all;
  return c;
}

/// Publishes two good orders around two poison messages (not JSON; JSON of the wrong shape).
Task<void> publish_mixed(NatsBus& bus) {
  const nlohmann::json first{{"id", 1}, {"item", "book"}};
  const nlohmann::json wrong_shape{{"id", "not a number"}};
  const nlohmann::json second{{"id", 2}, {"item", "pen"}};
  co_await bus.publish_json("typed.orders", first);                                 // seq 1
  co_await bus.publish(natbus::BusMessage::from_text("typed.orders", "not json"));  // seq 2
  co_await bus.publish_json("typed.orders", wrong_shape);                           // seq 3
  co_await bus.publish_json("typed.orders", second);                                // seq 4
}

Task<bool> settled(NatsBus& bus, const std::string& durable) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto info = co_await bus.consumer_info("TYPED", durable);
    if (info.num_pending == 0 && info.num_ack_pending == 0 && info.delivered_stream_sequence >= 4) co_return true;
    co_await natbus::sleep(20ms);
  }
  co_return false;
}

std::size_t count_lines(const LogCapture& logs, const std::string& needle) {
  const auto lines = logs.lines();
  return static_cast<std::size_t>(
      std::count_if(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(needle) != std::string::npos; }));
}

}  // namespace

TEST(Typed, PushHandlerGetsDecodedValuesPoisonIsTerminatedNotRedelivered) {
  NatsServer server;
  LogCapture logs;
  std::vector<typed::Order> got;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{typed_config(server)};
    co_await bus.connect();
    co_await publish_mixed(bus);
    auto on_order = [&](typed::Order o, ReceivedMessage& m) -> Task<void> {
      got.push_back(o);
      co_await m.ack();
    };
    auto sub = co_await bus.push_subscribe<typed::Order>("typed.orders", on_order, {.durable = "typed_push", .ack_wait = 2s});
    const bool both = co_await eventually([&] { return got.size() >= 2; });
    EXPECT_TRUE(both) << got.size();
    const bool done = co_await settled(bus, "typed_push");
    EXPECT_TRUE(done);
    const auto info = co_await bus.consumer_info("TYPED", "typed_push");
    EXPECT_EQ(info.num_redelivered, 0U) << "a poison message was redelivered";
    co_await bus.close();
  }());
  ASSERT_EQ(got.size(), 2U);
  EXPECT_EQ(got[0].id, 1);
  EXPECT_EQ(got[0].item, "book");
  EXPECT_EQ(got[1].id, 2);
  EXPECT_EQ(got[1].item, "pen");
  EXPECT_EQ(count_lines(logs, "sub_poison_message"), 2U) << logs.all();
  EXPECT_EQ(count_lines(logs, "sub_poison_message subject=typed.orders durable=typed_push stream_seq=2"), 1U) << logs.all();
  EXPECT_EQ(count_lines(logs, "sub_poison_message subject=typed.orders durable=typed_push stream_seq=3"), 1U) << logs.all();
  EXPECT_EQ(count_lines(logs, "sub_handler_error"), 0U) << logs.all();
}

TEST(Typed, PullHandlerDeadLettersPoisonWithItsHeadersAndTheReason) {
  NatsServer server;
  RawSubscriber dlq(server, "dlq.typed");
  LogCapture logs;
  std::vector<int> ids;
  natbus::run([&]() -> Task<void> {
    NatsConfig cfg = typed_config(server);
    cfg.dead_letter_subject = "dlq.typed";
    NatsBus bus{cfg};
    co_await bus.connect();
    co_await publish_mixed(bus);
    auto on_order = [&](typed::Order o, ReceivedMessage& m) -> Task<void> {
      ids.push_back(o.id);
      co_await m.ack();
    };
    auto sub = co_await bus.pull_subscribe<typed::Order>("typed.orders", on_order, {.durable = "typed_pull", .batch = 10});
    const bool both = co_await eventually([&] { return ids.size() >= 2 && count_lines(logs, "sub_dead_lettered") >= 2; });
    EXPECT_TRUE(both) << ids.size() << "\n" << logs.all();
    const bool done = co_await settled(bus, "typed_pull");
    EXPECT_TRUE(done);
    const auto info = co_await bus.consumer_info("TYPED", "typed_pull");
    EXPECT_EQ(info.num_redelivered, 0U);
    co_await bus.close();
  }());
  EXPECT_EQ(ids, (std::vector<int>{1, 2}));
  auto first = dlq.next();
  EXPECT_EQ(first.data, "not json");
  EXPECT_EQ(first.headers["content-type"], std::vector<std::string>{"text/plain; charset=utf-8"});
  EXPECT_EQ(first.headers["x-dead-letter-reason"], std::vector<std::string>{"payload cannot be decoded"});
  EXPECT_EQ(first.headers["x-dead-letter-sequence"], std::vector<std::string>{"2"});
  EXPECT_EQ(first.headers["x-dead-letter-subject"], std::vector<std::string>{"typed.orders"});
  ASSERT_EQ(first.headers["x-dead-letter-error"].size(), 1U);
  EXPECT_NE(first.headers["x-dead-letter-error"][0].find("stream sequence 2"), std::string::npos);
  auto second = dlq.next();
  EXPECT_EQ(second.headers["x-dead-letter-sequence"], std::vector<std::string>{"3"});
  EXPECT_EQ(second.data, R"({"id":"not a number"})");
}
