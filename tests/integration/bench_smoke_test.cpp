// natbus-bench smoke runs: every mode with a small N against a real server. Asserts only that the
// result line is well-formed and nothing was lost; speed is measured by the benchmark, not here.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "support/child_process.hpp"
#include "support/nats_server.hpp"

#ifdef NATBUS_BENCH_PATH

using namespace std::chrono_literals;
using natbus::testing::ChildProcess;
using natbus::testing::NatsServer;

namespace {

class BenchSmoke : public ::testing::TestWithParam<const char*> {};

TEST_P(BenchSmoke, PrintsOneWellFormedLineAndLosesNothing) {
  const std::string mode = GetParam();
  NatsServer server;
  const std::string n = mode == "e2e_latency" ? "300" : "2000";
  for (const std::string storage : {"memory", "file"}) {
    ChildProcess bench({NATBUS_BENCH_PATH, mode, std::to_string(server.port()), n, "64", storage},
                       {"BENCH_SERVER_PID=" + std::to_string(server.pid())});
    const auto line = bench.wait_for_line("natbus ", 60s);
    ASSERT_TRUE(line) << ::testing::PrintToString(bench.output());
    EXPECT_EQ(bench.wait(30s), 0) << *line;
    const std::regex re(
        "^natbus mode=" + mode + " msgs=" + n + " size=64 storage=" + storage +
        R"( secs=\d+\.\d+ rate=\d+ cpu=\d+\.\d+ srv_cpu=\d+\.\d+ host_busy=\d+\.\d+)"
        R"(( p50_us=\d+\.\d+ p99_us=\d+\.\d+( rate_target=\d+)?)? headers=natbus allocs_per_msg=(\d+\.\d+|n/a) peak_rss_mb=\d+\.\d+$)");
    EXPECT_TRUE(std::regex_match(*line, re)) << *line;
    EXPECT_EQ(line->find("error"), std::string::npos) << *line;
    EXPECT_EQ(line->find("lost"), std::string::npos) << *line;
    EXPECT_EQ(mode == "e2e_latency" || mode == "req_reply_latency", line->find("p50_us=") != std::string::npos) << *line;
    EXPECT_EQ(bench.output().size(), 1U) << ::testing::PrintToString(bench.output());
  }
}

// NATBUS_BENCH_IDLE_SUBS: the subscription-count runs (README, Benchmarks) get their own line field.
TEST(BenchSmokeIdleSubs, ReportsTheIdleSubscriptionsAndLosesNothing) {
  NatsServer server;
  for (const std::string mode : {"core_pub_sub", "js_push_consume"}) {
    ChildProcess bench({NATBUS_BENCH_PATH, mode, std::to_string(server.port()), "2000", "64"},
                       {"BENCH_SERVER_PID=" + std::to_string(server.pid()), "NATBUS_BENCH_IDLE_SUBS=10"});
    const auto line = bench.wait_for_line("natbus ", 60s);
    ASSERT_TRUE(line) << ::testing::PrintToString(bench.output());
    EXPECT_EQ(bench.wait(30s), 0) << *line;
    EXPECT_NE(line->find(" idle_subs=10 "), std::string::npos) << *line;
    EXPECT_EQ(line->find("lost"), std::string::npos) << *line;
    EXPECT_EQ(line->find("error"), std::string::npos) << *line;
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, BenchSmoke,
                         ::testing::Values("js_pub_sync", "js_pub_async", "js_push_consume", "js_pull_consume", "js_consume", "e2e_latency",
                                           "req_reply_latency", "core_pub_sub"),
                         [](const auto& param_info) { return std::string(param_info.param); });

}  // namespace

#endif
