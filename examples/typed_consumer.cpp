// Typed handlers: the payload arrives decoded into your type. A message that does not decode
// is a poison message: logged, terminated (never redelivered) and sent to the dead-letter
// subject.   NATS_SERVER=127.0.0.1:4222 timeout -s INT 5 ./typed_consumer
#include <natbus/natbus.hpp>

#include <fmt/format.h>

#include <string>

namespace {

struct Order {
  int id = 0;
  std::string item;
  double price = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Order, id, item, price)

natbus::Task<int> service() {
  const natbus::NatsConfig cfg = natbus::NatsConfig::from_env(natbus::NatsConfig{.username = "nats-user",
                                                                                 .password = "changeme",
                                                                                 .name = "typed-consumer",
                                                                                 .stream_create = true,
                                                                                 .stream_name = "TYPED_EXAMPLE",
                                                                                 .stream_subjects = {"typed.>"},
                                                                                 .dead_letter_subject = "typed.dead"});
  natbus::NatsBus bus{cfg};
  co_await bus.connect();

  auto on_order = [](Order o, natbus::ReceivedMessage& m) -> natbus::Task<void> {
    fmt::print("order {}: {} at {:.2f} (stream seq {})\n", o.id, o.item, o.price, m.metadata()->stream_sequence);
    co_await m.ack();
  };
  auto orders = co_await bus.push_subscribe<Order>("typed.orders", on_order, {.durable = "typed_orders"});
  auto on_dead = [](natbus::ReceivedMessage& m) -> natbus::Task<void> {
    fmt::print("dead letter: '{}' reason={}\n", std::string(m.payload()), m.header("x-dead-letter-reason").value_or(""));
    co_await m.ack();
  };
  auto dead = co_await bus.push_subscribe("typed.dead", on_dead, {.durable = "typed_dead"});

  const Order book{.id = 1, .item = "book", .price = 12.5};
  auto good = natbus::BusMessage::from_json("typed.orders", book);
  auto poison = natbus::BusMessage::from_text("typed.orders", "this is not an order");
  co_await bus.publish(std::move(good));
  co_await bus.publish(std::move(poison));

  co_await natbus::shutdown_signal();
  co_await bus.close();
  co_return 0;
}

}  // namespace

int main() { return natbus::run(service()); }
