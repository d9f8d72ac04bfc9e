// Reading a durable consumer as a stream: `while (auto m = co_await msgs.next())`.
//   NATS_SERVER=127.0.0.1:4222 ./stream_consumer
#include <natbus/natbus.hpp>

#include <fmt/format.h>

namespace {

natbus::Task<int> consume() {
  const natbus::NatsConfig cfg = natbus::NatsConfig::from_env(natbus::NatsConfig{.username = "nats-user",
                                                                                 .password = "changeme",
                                                                                 .name = "stream-consumer",
                                                                                 .stream_create = true,
                                                                                 .stream_name = "STREAM_EXAMPLE",
                                                                                 .stream_subjects = {"stream.>"},
                                                                                 .deliver_policy = natbus::DeliverPolicy::all});
  natbus::NatsBus bus{cfg};
  co_await bus.connect();
  for (int i = 1; i <= 3; ++i) {
    const nlohmann::json order{{"id", i}};
    co_await bus.publish_json("stream.orders", order);
  }
  auto msgs = co_await bus.pull_messages("stream.orders", {.durable = "stream_orders", .batch = 16}, 32);
  int seen = 0;
  while (auto m = co_await msgs.next()) {
    fmt::print("order {} (delivery {}, {} buffered)\n", m.as_json().at("id").get<int>(), m.metadata()->num_delivered, msgs.buffered());
    co_await m.ack();
    if (++seen == 3) co_await msgs.close();  // ends the stream: next() returns an empty message
  }
  fmt::print("stream ended after {} messages\n", seen);
  co_await bus.close();
  co_return 0;
}

}  // namespace

int main() { return natbus::run(consume()); }
