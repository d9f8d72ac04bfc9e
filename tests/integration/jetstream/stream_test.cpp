// Message streams: a push or pull consumer read with `while (auto m = co_await s.next())`,
// bounded buffer, end of stream on close (stream or bus), reader acks.
#include <gtest/gtest.h>

#include "support/bus_test.hpp"

using namespace std::chrono_literals;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

namespace {

NatsConfig stream_config(const NatsServer& server) {
  NatsConfig c = config_for(server);
  c.stream_create = true;
  c.stream_name = "STREAMS";
  c.stream_subjects = {"st.>"};
  c.deliver_policy = natbus::DeliverPolicy::all;
  return c;
}

Task<void> publish_n(NatsBus& bus, int n) {
  for (int i = 0; i < n; ++i) {
    const nlohmann::json body{{"n", i}};
    co_await bus.publish_json("st.items", body);
  }
}

Task<bool> settled(NatsBus& bus, const std::string& durable) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto info = co_await bus.consumer_info("STREAMS", durable);
    if (info.num_pending == 0 && info.num_ack_pending == 0) co_return true;
    co_await natbus::sleep(20ms);
  }
  co_return false;
}

}  // namespace

TEST(Stream, PushAndPullStreamsDeliverInOrderWithinTheBufferAndEndOnClose) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server)};
    co_await bus.connect();
    co_await publish_n(bus, 60);
    for (const bool pull : {false, true}) {
      // Not `auto msgs = pull ? co_await a : co_await b;`: GCC 12 destroys that temporary early.
      natbus::MessageStream msgs;
      if (pull) {
        msgs = co_await bus.pull_messages("st.items", {.durable = "st_pull", .batch = 16}, 8);
      } else {
        msgs = co_await bus.messages("st.items", {.durable = "st_push"}, 8);
      }
      std::vector<int> seen;
      std::size_t most_buffered = 0;
      while (seen.size() < 60) {
        auto m = co_await msgs.next();
        if (!m) break;
        most_buffered = std::max(most_buffered, msgs.buffered());
        seen.push_back(m.as_json().at("n").get<int>());
        co_await m.ack();
      }
      std::vector<int> want(60);
      for (int i = 0; i < 60; ++i) want[static_cast<std::size_t>(i)] = i;
      EXPECT_EQ(seen, want) << (pull ? "pull" : "push");
      EXPECT_LE(most_buffered, 8U);
      const bool done = co_await settled(bus, pull ? "st_pull" : "st_push");
      EXPECT_TRUE(done) << "acks by the reader reached the server";
      co_await msgs.close();
      auto after = co_await msgs.next();
      EXPECT_FALSE(after) << "next() after close() ends the stream";
    }
    co_await bus.close();
  }());
}

TEST(Stream, BufferBoundsWhatIsTaken) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server)};
    co_await bus.connect();
    co_await publish_n(bus, 200);
    auto msgs = co_await bus.messages("st.items", {.durable = "st_bounded", .max_ack_pending = 50}, 5);
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (msgs.buffered() < 5 && std::chrono::steady_clock::now() < deadline) co_await natbus::sleep(10ms);
    EXPECT_EQ(msgs.buffered(), 5U) << "the buffer fills up to its size";
    // Nobody reads: delivery stops at the buffer (plus what cnats and max_ack_pending hold).
    const auto info = co_await bus.consumer_info("STREAMS", "st_bounded");
    EXPECT_LE(info.num_ack_pending, 50U);
    EXPECT_EQ(msgs.buffered(), 5U);
    // Drain the buffer; close() naks whatever arrived after.
    for (int i = 0; i < 5; ++i) {
      auto m = co_await msgs.next();
      EXPECT_TRUE(m);
      if (m) co_await m.ack();
    }
    co_await msgs.close();
    co_await bus.close();
  }());
}

TEST(Stream, ReaderWaitingWhenTheBusClosesGetsEndOfStream) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server)};
    co_await bus.connect();
    auto msgs = co_await bus.pull_messages("st.items", {.durable = "st_wait", .batch = 4, .expires = 1s}, 4);
    bool ended = false;
    auto reader = [&]() -> Task<void> {
      auto m = co_await msgs.next();  // nothing published: waits
      ended = !m;
    };
    auto closer = [&]() -> Task<void> {
      co_await natbus::sleep(200ms);
      co_await bus.close();
    };
    co_await natbus::when_all(reader(), closer());
    EXPECT_TRUE(ended);
  }());
}

TEST(Stream, ManualAckFalseIsRejected) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server)};
    co_await bus.connect();
    bool rejected = false;
    try {
      auto s = co_await bus.messages("st.items", {.durable = "st_auto", .manual_ack = false});
    } catch (const natbus::InvalidArgument& e) {
      rejected = std::string(e.what()).find("manual_ack") != std::string::npos;
    }
    EXPECT_TRUE(rejected);
    co_await bus.close();
  }());
}
