// Metrics: counters and histograms follow what happened, and the Prometheus text is well formed.
#include <gtest/gtest.h>

#include <regex>
#include <sstream>

#include "support/bus_test.hpp"

using namespace std::chrono_literals;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

TEST(Metrics, CountersAndHistogramsFollowPublishingAndHandling) {
  NatsServer server;
  std::string text;
  natbus::MetricsSnapshot snap;
  natbus::run([&]() -> Task<void> {
    NatsConfig cfg = config_for(server);
    cfg.name = "metrics-test";
    cfg.stream_create = true;
    cfg.stream_name = "METRICS";
    cfg.stream_subjects = {"metrics.>"};
    cfg.deliver_policy = natbus::DeliverPolicy::all;
    NatsBus bus{cfg};
    co_await bus.connect();
    for (int i = 0; i < 20; ++i) {
      const nlohmann::json body{{"n", i}};
      co_await bus.publish_json("metrics.items", body, {.msg_id = i == 19 ? "dup" : ""});
    }
    const nlohmann::json again{{"n", 19}};
    co_await bus.publish_json("metrics.items", again, {.msg_id = "dup"});  // a duplicate
    bool failed_once = false;
    int done = 0;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      if (m.as_json().at("n") == 7 && !failed_once) {
        failed_once = true;
        throw std::runtime_error("first delivery of 7 fails");  // nak -> redelivered
      }
      co_await m.ack();
      ++done;
    };
    auto sub = co_await bus.push_subscribe("metrics.items", handler, {.durable = "metrics_push"});
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (done < 20 && std::chrono::steady_clock::now() < deadline) co_await natbus::sleep(10ms);
    EXPECT_EQ(done, 20);
    snap = bus.metrics();
    text = bus.prometheus_metrics();
    co_await bus.close();
  }());
  EXPECT_EQ(snap.name, "metrics-test");
  EXPECT_EQ(snap.publish.published, 21U);
  EXPECT_EQ(snap.publish.acked, 21U);
  EXPECT_EQ(snap.publish.duplicates, 1U);
  EXPECT_EQ(snap.publish.failed, 0U);
  EXPECT_EQ(snap.publish.in_flight, 0U);
  EXPECT_EQ(snap.publish.ack_seconds.count, 21U);
  EXPECT_GT(snap.publish.ack_seconds.sum, 0.0);
  EXPECT_EQ(snap.acks, 20U);
  EXPECT_EQ(snap.naks, 1U);
  ASSERT_EQ(snap.subscriptions.size(), 1U);
  const auto& s = snap.subscriptions[0];
  EXPECT_EQ(s.durable, "metrics_push");
  EXPECT_EQ(s.stream, "METRICS");
  EXPECT_EQ(s.delivered, 21U);
  EXPECT_EQ(s.redelivered, 1U);
  EXPECT_EQ(s.handler_errors, 1U);
  EXPECT_EQ(s.in_flight, 0U);
  EXPECT_EQ(s.handler_seconds.count, 21U);
  EXPECT_LE(s.handler_seconds.quantile_bound(0.5), 1.0);

  // Prometheus text: every sample line is `name{labels} value`, label values escaped.
  const std::regex sample(R"re(^natbus_[a-z_]+\{bus="metrics-test"(,[a-z_]+="[^"]*")*\} [0-9.e+-]+$)re");
  std::istringstream lines(text);
  std::string line;
  int samples = 0;
  while (std::getline(lines, line)) {
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) continue;
    EXPECT_TRUE(std::regex_match(line, sample)) << line;
    ++samples;
  }
  EXPECT_GT(samples, 40);
  EXPECT_NE(text.find("natbus_published_total{bus=\"metrics-test\"} 21\n"), std::string::npos) << text;
  EXPECT_NE(text.find("natbus_redelivered_total{bus=\"metrics-test\",subject=\"metrics.items\",stream=\"METRICS\","
                      "durable=\"metrics_push\",queue=\"\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("natbus_handler_seconds_bucket{"), std::string::npos);
  EXPECT_NE(text.find("le=\"+Inf\"} 21\n"), std::string::npos);
}
