// A second process for tests that need one (another pod): creates the stream if needed,
// subscribes to a durable, prints "READY", then one line per message ("MSG <payload>"), acks
// (unless NOACK=1), and exits after N messages.
//   natbus_test_consumer URL STREAM SUBJECT DURABLE QUEUE N [push|pull]
//   env: ACK_WAIT_MS, BIND_TIMEOUT_S, NOACK=1
#include <cstdio>
#include <cstdlib>
#include <string>

#include "natbus/natbus.hpp"

namespace {

natbus::Task<int> consume(int argc, char** argv) {
  natbus::NatsConfig cfg;
  cfg.server = argv[1];
  cfg.stream_name = argv[2];
  cfg.stream_create = true;
  cfg.stream_subjects = {argv[3]};
  cfg.deliver_policy = natbus::DeliverPolicy::all;
  const auto env_int = [](const char* name, int fallback) {
    const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read before any thread starts
    return v != nullptr ? std::atoi(v) : fallback;
  };
  cfg.bind_timeout = std::chrono::seconds(env_int("BIND_TIMEOUT_S", 30));
  cfg.ack_wait = std::chrono::milliseconds(env_int("ACK_WAIT_MS", 30000));
  const bool noack = env_int("NOACK", 0) == 1;
  const std::string subject = argv[3];
  const std::string durable = argv[4];
  const std::string queue = argv[5];
  const int want = std::atoi(argv[6]);
  const bool pull = argc > 7 && std::string(argv[7]) == "pull";
  natbus::NatsBus bus{cfg};
  co_await bus.connect();
  int got = 0;
  auto handler = [&](natbus::ReceivedMessage m) -> natbus::Task<void> {
    std::printf("MSG %.*s\n", static_cast<int>(m.payload().size()), m.payload().data());
    std::fflush(stdout);
    if (!noack) co_await m.ack();
    ++got;
  };
  natbus::Subscription sub;
  if (pull) {
    sub = co_await bus.pull_subscribe(subject, handler, {.durable = durable, .batch = 5, .expires = std::chrono::seconds(1)});
  } else {
    sub = co_await bus.push_subscribe(subject, handler, {.durable = durable, .queue = queue});
  }
  std::printf("READY\n");
  std::fflush(stdout);
  while (got < want) co_await natbus::sleep(std::chrono::milliseconds(10));
  co_await bus.close();
  std::printf("DONE %d\n", got);
  std::fflush(stdout);
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: %s URL STREAM SUBJECT DURABLE QUEUE N [push|pull]\n", argv[0]);
    return 2;
  }
  natbus::set_log_level(natbus::LogLevel::warn);
  try {
    return natbus::run(consume(argc, argv));
  } catch (const std::exception& e) {
    std::printf("ERROR %s\n", e.what());
    std::fflush(stdout);
    return 1;
  }
}
