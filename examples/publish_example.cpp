// Publishing JSON, text and bytes (compressed and not), one at a time and pipelined, printing
// the PubAcks.   NATS_SERVER=127.0.0.1:4222 ./publish_example
#include <natbus/natbus.hpp>

#include <fmt/format.h>

#include <vector>

namespace {

struct Order {
  int id = 0;
  std::string item;
  double price = 0;
};
void to_json(nlohmann::json& j, const Order& o) { j = {{"id", o.id}, {"item", o.item}, {"price", o.price}}; }

void print_ack(std::string_view what, const natbus::PubAck& ack) {
  fmt::print("{:<22} stream={} seq={} duplicate={}\n", what, ack.stream, ack.sequence, ack.duplicate);
}

natbus::Task<int> publish_all() {
  const natbus::NatsConfig cfg = natbus::NatsConfig::from_env(natbus::NatsConfig{.username = "nats-user",
                                                                                 .password = "changeme",
                                                                                 .name = "publish-example",
                                                                                 .stream_create = true,
                                                                                 .stream_name = "EXAMPLES",
                                                                                 .stream_subjects = {"examples.>"}});
  natbus::NatsBus bus{cfg};
  co_await bus.connect();

  auto json = natbus::BusMessage::from_json("examples.orders", Order{.id = 1, .item = "book", .price = 12.5},
                                            {.sender = "publish-example", .message_type = "order.created"});
  print_ack("json", co_await bus.publish(std::move(json)));

  auto text = natbus::BusMessage::from_text("examples.notes", "hello from C++");
  print_ack("text", co_await bus.publish(std::move(text)));

  const std::string big(std::size_t{64} * 1024, 'x');
  auto zipped = natbus::BusMessage::from_text("examples.notes", big, {.compress = true});
  const auto wire_bytes = zipped.payload().size();
  print_ack("text gzip", co_await bus.publish(std::move(zipped)));
  fmt::print("{:<22} {} bytes of text sent as {} bytes of gzip\n", "", big.size(), wire_bytes);

  const std::vector<std::uint8_t> blob = {0xDE, 0xAD, 0xBE, 0xEF};
  auto bytes = natbus::BusMessage::from_bytes("examples.blobs", blob, {.content_type = "application/x-example"});
  print_ack("bytes", co_await bus.publish(std::move(bytes)));

  auto first = natbus::BusMessage::from_text("examples.notes", "once", {.msg_id = "note-1"});
  auto again = natbus::BusMessage::from_text("examples.notes", "once", {.msg_id = "note-1"});
  print_ack("msg_id", co_await bus.publish(std::move(first)));
  print_ack("msg_id again", co_await bus.publish(std::move(again)));

  // Pipelined: send 1000, then await the PubAcks.
  std::vector<natbus::PublishFuture> futures;
  for (int i = 0; i < 1000; ++i) {
    auto m = natbus::BusMessage::from_json("examples.orders", Order{.id = i, .item = "pen", .price = 1.0});
    futures.push_back(co_await bus.publish_async(std::move(m)));
  }
  natbus::PubAck last;
  for (auto& f : futures) last = co_await std::move(f);
  print_ack("async x1000 (last)", last);

  co_await bus.close();
  co_return 0;
}

}  // namespace

int main() {
  try {
    return natbus::run(publish_all());
  } catch (const natbus::Error& e) {
    fmt::print(stderr, "publish-example: {}\n", e.what());
    return 1;
  }
}
