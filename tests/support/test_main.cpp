// gtest main for natbus' suites: quiet natbus logs unless NATBUS_TEST_LOG=debug|info is set,
// and shut cnats' library threads down at the end (so leak checkers see a clean exit).
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <cstdlib>
#include <string>

#include "natbus/log.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const char* level = std::getenv("NATBUS_TEST_LOG");
  const std::string l = level != nullptr ? level : "warn";
  natbus::set_log_level(l == "debug"   ? natbus::LogLevel::debug
                        : l == "info"  ? natbus::LogLevel::info
                        : l == "error" ? natbus::LogLevel::error
                                       : natbus::LogLevel::warn);
  const int rc = RUN_ALL_TESTS();
  nats_CloseAndWait(5000);
  return rc;
}
