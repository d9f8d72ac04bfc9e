// natbus in a service with other threads: worker threads (say, an HTTP server's pool) publish
// and request through a BlockingBus; a consumer on the bus's own loop offloads CPU-heavy work
// so that its handlers use several cores; with_timeout bounds a request.
//   NATS_SERVER=127.0.0.1:4222 ./threads
#include <natbus/natbus.hpp>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Stands for real work: a checksum over a few megabytes.
std::uint64_t checksum(unsigned seed) {
  constexpr std::uint64_t kPrime = 1099511628211U;
  std::uint64_t x = std::uint64_t{1469598103934665603U} ^ seed;
  for (unsigned i = 0; i < 20'000'000U; ++i) x = (x ^ i) * kPrime;
  return x;
}

}  // namespace

int main() {
  natbus::NatsConfig cfg = natbus::NatsConfig::from_env(natbus::NatsConfig{.username = "nats-user",
                                                                           .password = "changeme",
                                                                           .name = "threads-example",
                                                                           .stream_create = true,
                                                                           .stream_name = "THREADS",
                                                                           .stream_subjects = {"threads.>"}});
  natbus::BlockingBus bus(cfg);  // its own loop thread; connected when this returns

  // A consumer and a service on the bus's loop, set up through submit().
  std::atomic<int> handled{0};
  auto setup = bus.submit([&handled](natbus::NatsBus& b) -> natbus::Task<std::pair<natbus::Subscription, natbus::Subscription>> {
    auto on_job = [&handled](natbus::ReceivedMessage& m) -> natbus::Task<void> {
      const auto n = m.as_json().at("n").get<unsigned>();
      auto work = [n] { return checksum(n); };
      (void)co_await natbus::offload(work);  // off the loop: four of these run at once
      ++handled;
      co_await m.ack();
    };
    auto jobs = co_await b.push_subscribe("threads.jobs", on_job,
                                          {.durable = "threads-jobs", .deliver_policy = natbus::DeliverPolicy::all, .max_concurrency = 4});
    auto on_time = [](natbus::ReceivedMessage&) -> natbus::Task<nlohmann::json> { co_return nlohmann::json{{"ok", true}}; };
    auto clock = co_await b.serve("svc.threads.ping", on_time);
    co_return std::pair{std::move(jobs), std::move(clock)};
  });
  auto subs = setup.get();

  // Four "request threads" publish 25 jobs each and ask the service once.
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  workers.reserve(4);
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&bus, t] {
      std::vector<std::future<natbus::PubAck>> acks;
      acks.reserve(25);
      for (int i = 0; i < 25; ++i) acks.push_back(bus.publish_async(natbus::BusMessage::from_json("threads.jobs", {{"n", t * 100 + i}})));
      for (auto& a : acks) (void)a.get();
      auto pong = bus.request(natbus::BusMessage::from_json("svc.threads.ping", {{"from", t}}), 2s);
      fmt::print("thread {}: 25 jobs published, ping answered {}\n", t, pong.as_json().dump());
    });
  }
  for (auto& w : workers) w.join();

  // with_timeout on the loop: a request bounded to 50 ms whatever its own timeout.
  auto bounded = bus.submit([](natbus::NatsBus& b) -> natbus::Task<std::string> {
    auto msg = natbus::BusMessage::from_json("svc.threads.ping", {{"from", "loop"}});
    try {
      auto reply = co_await natbus::with_timeout(b.request(std::move(msg), 10s), 50ms);
      co_return "answered within 50 ms: " + reply.as_json().dump();
    } catch (const natbus::TimeoutError& e) {
      co_return std::string("timed out: ") + e.what();
    }
  });
  fmt::print("{}\n", bounded.get());

  while (handled.load() < 100 && std::chrono::steady_clock::now() - t0 < 60s) std::this_thread::sleep_for(10ms);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("{} jobs handled in {} ms with max_concurrency 4 and offload() on {} cores\n", handled.load(), ms,
             std::thread::hardware_concurrency());

  // Subscriptions belong to the loop: moved into work that closes (and destroys) them there.
  bus.submit([s = std::move(subs)](natbus::NatsBus&) mutable -> natbus::Task<void> {
       co_await s.first.close();
       co_await s.second.close();
     })
      .get();
  bus.close();
  return handled.load() == 100 ? 0 : 1;
}
