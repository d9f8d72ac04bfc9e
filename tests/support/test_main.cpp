// gtest main for natbus' suites: quiet natbus logs unless NATBUS_TEST_LOG=debug|info is set,
// and shut cnats' library threads down at the end (so leak checkers see a clean exit).
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <cstdlib>
#include <string>

#include "natbus/log.hpp"

// Sanitizer options, compiled in (the runtimes read these before main; ctest's ENVIRONMENT
// cannot carry them reliably, see tests/CMakeLists.txt).
#if defined(__SANITIZE_THREAD__)
#define NATBUS_TEST_TSAN 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#define NATBUS_TEST_ASAN 1
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NATBUS_TEST_TSAN 1
#endif
#if __has_feature(address_sanitizer)
#define NATBUS_TEST_ASAN 1
#endif
#endif

extern "C" {
#ifdef NATBUS_TEST_TSAN
const char* __tsan_default_options();
const char* __tsan_default_options() { return "suppressions=" NATBUS_TSAN_SUPP " halt_on_error=1 second_deadlock_stack=1"; }
#endif
#ifdef NATBUS_TEST_ASAN
const char* __asan_default_options();
const char* __asan_default_options() { return "detect_leaks=1:abort_on_error=0"; }
const char* __lsan_default_options();
const char* __lsan_default_options() { return "suppressions=" NATBUS_LSAN_SUPP; }
#endif
}

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
