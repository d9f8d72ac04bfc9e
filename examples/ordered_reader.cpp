// An ordered consumer: every message on a subject, in stream order, without acks and without a
// durable; natbus recreates the consumer after a gap or a server restart (ADR-17).
//   NATS_SERVER=127.0.0.1:4222 ./ordered_reader
#include <natbus/natbus.hpp>

#include <fmt/format.h>

namespace {

natbus::Task<int> read() {
  const natbus::NatsConfig cfg = natbus::NatsConfig::from_env(natbus::NatsConfig{.username = "nats-user",
                                                                                 .password = "changeme",
                                                                                 .name = "ordered-reader",
                                                                                 .stream_create = true,
                                                                                 .stream_name = "ORDERED_EXAMPLE",
                                                                                 .stream_subjects = {"prices.>"}});
  natbus::NatsBus bus{cfg};
  co_await bus.connect();
  const char* items[] = {"book", "chair", "book", "lamp", "chair"};
  for (int i = 0; i < 5; ++i) {
    auto msg = natbus::BusMessage::from_text(fmt::format("prices.{}", items[i]), std::to_string(10 + i));
    co_await bus.publish(std::move(msg));
  }

  // Everything from the start, in order.
  auto all = co_await bus.ordered_messages("prices.>", {});
  for (int i = 0; i < 5; ++i) {
    const natbus::ReceivedMessage m = co_await all.next();
    fmt::print("all: #{} {} = {}\n", m.metadata()->stream_sequence, m.subject(), m.as_text());
  }
  co_await all.close();

  // Only the newest message of each subject (what a cache warming up wants).
  auto latest = co_await bus.ordered_messages("prices.>", {.deliver_policy = natbus::DeliverPolicy::last_per_subject});
  for (int i = 0; i < 3; ++i) {
    const natbus::ReceivedMessage m = co_await latest.next();
    fmt::print("latest: #{} {} = {}\n", m.metadata()->stream_sequence, m.subject(), m.as_text());
  }
  co_await latest.close();
  co_await bus.delete_stream("ORDERED_EXAMPLE");
  co_await bus.close();
  co_return 0;
}

}  // namespace

int main() { return natbus::run(read()); }
