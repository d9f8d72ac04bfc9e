// Core NATS request/reply next to JetStream: a price service answering with serve(), and a
// client asking it with request().   NATS_SERVER=127.0.0.1:4222 ./request_reply
#include <natbus/natbus.hpp>

#include <fmt/format.h>

#include <chrono>
#include <string>

namespace {

natbus::Task<int> run_both() {
  using namespace std::chrono_literals;
  const natbus::NatsConfig cfg =
      natbus::NatsConfig::from_env(natbus::NatsConfig{.username = "nats-user", .password = "changeme", .name = "request-reply-example"});
  natbus::NatsBus service{cfg};
  natbus::NatsBus client{cfg};
  co_await service.connect();
  co_await client.connect();

  // The service: answers on prices.get with JSON; a throw goes back as an error.
  auto on_price = [](natbus::ReceivedMessage& m) -> natbus::Task<nlohmann::json> {
    const auto item = m.as_json().at("item").get<std::string>();
    if (item != "book") throw std::runtime_error("no price for " + item);
    co_return nlohmann::json{{"item", item}, {"price", 12.5}};
  };
  auto svc = co_await service.serve("prices.get", on_price, {.queue = "prices"});

  // The client: the answer carries the request's correlation id.
  const nlohmann::json book{{"item", "book"}};
  auto ask = natbus::BusMessage::from_json("prices.get", book, {.sender = "shop", .correlation_id = "order-42"});
  const auto t0 = std::chrono::steady_clock::now();
  natbus::ReceivedMessage answer = co_await client.request(std::move(ask), 2s);
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("answer {} correlation_id={} in {} us\n", answer.as_json().dump(), answer.correlation_id(), us);

  const nlohmann::json lamp{{"item", "lamp"}};
  auto unknown = natbus::BusMessage::from_json("prices.get", lamp);
  try {
    (void)co_await client.request(std::move(unknown), 2s);
  } catch (const natbus::RemoteError& e) {
    fmt::print("remote error: {}\n", e.message());
  }

  co_await client.close();
  co_await service.close();
  co_return 0;
}

}  // namespace

int main() { return natbus::run(run_both()); }
