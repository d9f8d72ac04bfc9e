// Builds against the installed natbus and runs its coroutine core (no server needed).
#include <natbus/natbus.hpp>

#include <cstdio>
#include <cstring>

namespace {
natbus::Task<int> check() {
  co_await natbus::sleep(std::chrono::milliseconds(1));
  auto msg = natbus::BusMessage::from_text("package.test", "hello");
  co_return msg.content_type() == "text/plain; charset=utf-8" ? 0 : 1;
}
}  // namespace

int main() {
  natbus::NatsConfig cfg{.server = "127.0.0.1:4222", .name = "package-test"};
  natbus::validate(cfg);
  const int rc = natbus::run(check());
  std::printf("natbus %s on cnats %s: %s\n", natbus::version(), natbus::cnats_version(), rc == 0 ? "ok" : "FAILED");
  return rc;
}
