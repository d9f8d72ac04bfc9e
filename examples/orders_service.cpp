// The seed's orders service in C++: a push and a pull consumer on TEST_STREAM, a JSON and a
// JPEG-typed message published, running until SIGINT/SIGTERM, then a drained close.
//
//   NATS_SERVER=127.0.0.1:4222 NATS_USERNAME=nats-user NATS_PASSWORD=changeme ./orders_service
//
// Handlers are named functions and messages are built before co_await (see README, "Compiler
// notes": GCC 12 miscompiles temporaries of some kinds inside co_await).
#include <natbus/natbus.hpp>

#include <fmt/format.h>

#include <array>
#include <cstdio>

using namespace std::chrono_literals;

namespace {

void print_message(std::string_view kind, const natbus::ReceivedMessage& msg) {
  fmt::print("{} RX: {} trace_id={} correlation_id={} sender={} content_type={}\n", kind, msg.subject(), msg.trace_id(),
             msg.correlation_id(), msg.sender(), msg.content_type());
  try {
    fmt::print("  text: {}\n", msg.as_text());
  } catch (const natbus::DecodeError&) {
    fmt::print("  binary payload: {} bytes (not UTF-8 text)\n", msg.data().size());
  }
  std::fflush(stdout);
}

natbus::Task<void> on_push(natbus::ReceivedMessage& msg) {
  print_message("PUSH", msg);
  co_await msg.ack();
}

natbus::Task<void> on_pull(natbus::ReceivedMessage& msg) {
  print_message("PULL", msg);
  co_await msg.ack();
}

natbus::Task<int> service() {
  auto shutdown = natbus::shutdown_signal();  // SIGINT/SIGTERM are caught from here on
  // The seed's configuration; NATS_SERVER / NATS_USERNAME / NATS_PASSWORD override it.
  const natbus::NatsConfig cfg =
      natbus::NatsConfig::from_env(natbus::NatsConfig{.server = "127.0.0.1:4222",
                                                      .username = "nats-user",
                                                      .password = "changeme",
                                                      .name = "orders-svc",
                                                      .max_reconnect_attempts = -1,  // a pod keeps trying while the NATS servers restart
                                                      .stream_create = true,
                                                      .stream_name = "TEST_STREAM",
                                                      .stream_subjects = {"test.stream"},
                                                      .manual_ack = true});

  natbus::NatsBus bus{cfg};
  co_await bus.connect();

  auto push = co_await bus.push_subscribe("test.stream", on_push, {.durable = "orders_push"});
  auto pull = co_await bus.pull_subscribe("test.stream", on_pull,
                                          {.stream = "TEST_STREAM", .durable = "orders_pull", .batch = 10, .expires = 1500ms});

  auto hello = natbus::BusMessage::from_json("test.stream", {{"hello", "world"}}, {.sender = "orders-svc"});
  const natbus::PubAck json_ack = co_await bus.publish(std::move(hello));
  fmt::print("PUBLISHED json stream={} seq={}\n", json_ack.stream, json_ack.sequence);

  const std::array<std::uint8_t, 16> jpeg = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0x4A, 0x46,
                                             0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0xFF, 0xD9};
  auto image = natbus::BusMessage::from_bytes("test.stream", jpeg, {.sender = "orders-svc", .headers = {{"content-type", "image/jpeg"}}});
  const natbus::PubAck jpeg_ack = co_await bus.publish(std::move(image));
  fmt::print("PUBLISHED jpeg stream={} seq={}\n", jpeg_ack.stream, jpeg_ack.sequence);
  std::fflush(stdout);

  const int signo = co_await std::move(shutdown);
  fmt::print("SHUTDOWN signal={} push_delivered={} pull_delivered={}\n", signo, push.delivered(), pull.delivered());
  co_await bus.close();  // in-flight handlers finish and their acks reach the server
  fmt::print("CLOSED\n");
  co_return 0;
}

}  // namespace

int main() {
  try {
    return natbus::run(service());
  } catch (const natbus::Error& e) {
    fmt::print(stderr, "orders-svc: {}\n", e.what());
    return 1;
  }
}
