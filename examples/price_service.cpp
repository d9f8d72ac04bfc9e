// A NATS service (ADR-32) that `nats micro ls`, nats.go's micro and every other official client
// discover: two endpoints under "prices", then, as a client would, PING, a quote, an error
// and STATS.   NATS_SERVER=127.0.0.1:4222 ./price_service [--serve]   (--serve: then keep
// answering until Ctrl-C)
#include <natbus/natbus.hpp>

#include <fmt/format.h>

#include <chrono>
#include <map>
#include <string>

namespace {

natbus::Task<int> run_service(bool serve) {
  using namespace std::chrono_literals;
  auto shutdown = natbus::shutdown_signal();
  const natbus::NatsConfig cfg =
      natbus::NatsConfig::from_env(natbus::NatsConfig{.username = "nats-user", .password = "changeme", .name = "price-service"});
  natbus::NatsBus bus{cfg};
  co_await bus.connect();

  const std::map<std::string, double> prices{{"book", 12.5}, {"lamp", 40.0}};
  auto on_quote = [&prices](natbus::ReceivedMessage& m) -> natbus::Task<nlohmann::json> {
    const std::string item(m.as_text());
    const auto it = prices.find(item);
    if (it == prices.end()) throw natbus::ServiceError(404, "no price for " + item);
    co_return nlohmann::json{{"item", item}, {"price", it->second}};
  };
  auto on_list = [&prices](natbus::ReceivedMessage&) -> natbus::Task<nlohmann::json> {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& [item, price] : prices) items.push_back(item);
    co_return items;
  };

  const natbus::Header metadata[] = {{"region", "eu-west"}};
  natbus::Service svc =
      co_await bus.add_service({.name = "prices", .version = "1.0.0", .description = "price quotes", .metadata = metadata});
  natbus::ServiceGroup v1 = svc.add_group("prices.v1");
  co_await v1.add_endpoint("quote", on_quote);
  co_await v1.add_endpoint("list", on_list);
  fmt::print("service prices 1.0.0 id={}\n", svc.id());

  // What any client sees.
  auto ping = natbus::BusMessage::from_text("$SRV.PING.prices", "");
  const natbus::ReceivedMessage pong = co_await bus.request(std::move(ping), 2s);
  fmt::print("$SRV.PING.prices -> {}\n", pong.as_text());
  auto ask = natbus::BusMessage::from_text("prices.v1.quote", "book");
  const natbus::ReceivedMessage quote = co_await bus.request(std::move(ask), 2s);
  fmt::print("prices.v1.quote book -> {}\n", quote.as_text());
  try {
    auto missing = natbus::BusMessage::from_text("prices.v1.quote", "chair");
    (void)co_await bus.request(std::move(missing), 2s);
  } catch (const natbus::RemoteError& e) {
    fmt::print("prices.v1.quote chair -> error {}: {}\n", e.context().service_code, e.message());
  }
  for (const auto& e : svc.stats().endpoints) {
    fmt::print("stats {}: {} requests, {} errors, last error '{}', average {} us\n", e.subject, e.num_requests, e.num_errors, e.last_error,
               std::chrono::duration_cast<std::chrono::microseconds>(e.average_processing_time).count());
  }

  if (serve) {
    fmt::print("serving until Ctrl-C\n");
    (void)co_await std::move(shutdown);
  }
  co_await svc.stop();  // answers what it has received, then leaves discovery
  co_await bus.close();
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const bool serve = argc > 1 && std::string(argv[1]) == "--serve";
  return natbus::run(run_service(serve));
}
