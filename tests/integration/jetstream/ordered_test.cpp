// Ordered consumers (ADR-17) against a real server: every message once and in order across a
// server restart, a gap in the consumer sequence, a heartbeat that disagrees, a consumer that
// vanished; the deliver policies, headers only, no acks, the stream deleted, bad input.
#include <gtest/gtest.h>

#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include <fmt/format.h>

#include "jetstream/consumer.hpp"
#include "support/bus_test.hpp"
#include "support/child_process.hpp"

using namespace std::chrono_literals;
using natbus::BusMessage;
using natbus::DeliverPolicy;
using natbus::MessageStream;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

namespace {

NatsConfig ordered_config(const NatsServer& server, const std::string& stream, const std::string& subjects) {
  NatsConfig c = stream_config(server, stream, subjects);
  c.stream.storage = natbus::StorageType::file;
  c.reconnect_time_wait = 100ms;
  c.max_reconnect_attempts = -1;
  c.js_api_timeout = 3s;
  return c;
}

/// Reads `n` messages from `in` (each within `timeout`), checking that their stream sequences
/// follow `*last` one by one and that the text body is the sequence's index from `first_body`.
/// Returns how many arrived in order before the first that did not (or the end).
Task<int> read_in_order(MessageStream& in, int n, std::uint64_t& last, int first_body, std::chrono::milliseconds timeout = 20s) {
  int ok = 0;
  for (int i = 0; i < n; ++i) {
    ReceivedMessage m = co_await natbus::with_timeout(in.next(), timeout);
    if (!m) break;
    const auto md = m.metadata();
    if (!md || md->stream_sequence != last + 1 || m.as_text() != std::to_string(first_body + i)) {
      ADD_FAILURE() << "message " << i << ": stream sequence " << (md ? md->stream_sequence : 0) << " after " << last << ", body "
                    << m.as_text() << " (expected " << first_body + i << ")";
      break;
    }
    last = md->stream_sequence;
    ++ok;
  }
  co_return ok;
}

/// Publishes `msg` with a plain cnats connection (to a consumer's deliver subject: what a
/// confused server could send; nats-server refuses a client's $JS.ACK reply subjects).
void inject(const NatsServer& server, natsMsg* msg) {
  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, server.url().c_str()), NATS_OK);
  EXPECT_EQ(natsConnection_PublishMsg(nc, msg), NATS_OK);
  natsConnection_Flush(nc);
  natsConnection_Destroy(nc);
}

}  // namespace

TEST(Ordered, EveryMessageOnceAndInOrderAcrossAServerRestart) {
  NatsServer server;
  constexpr int kMessages = 5000;
  std::atomic<bool> restart{false};
  std::atomic<bool> restarted{false};
  std::thread restarter([&] {
    EXPECT_TRUE(wait_until([&] { return restart.load(); }, 120s, 5ms));
    server.restart();
    restarted = true;
  });
  LogCapture logs;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{ordered_config(server, "ORD", "ord.>")};
    co_await bus.connect();
    for (int i = 0; i < kMessages; ++i) {
      auto msg = BusMessage::from_text("ord.a", std::to_string(i));
      auto f = co_await bus.publish_async(std::move(msg));
    }
    co_await bus.publish_async_complete();
    auto in = co_await bus.ordered_messages("ord.>", {.idle_heartbeat = 500ms}, 64);
    std::uint64_t last = 0;
    int got = co_await read_in_order(in, kMessages / 2, last, 0);
    EXPECT_EQ(got, kMessages / 2);
    // The server goes away with half the stream unread (and some of it in flight).
    restart = true;
    const bool back = co_await eventually([&] { return restarted.load() && bus.reconnects() > 0 && bus.connected(); }, 60s);
    EXPECT_TRUE(back);
    got += co_await read_in_order(in, kMessages - got, last, got);
    EXPECT_EQ(got, kMessages);
    EXPECT_EQ(last, static_cast<std::uint64_t>(kMessages));
    // Still live after the restart: new messages arrive, and nothing else is left.
    co_await publish_n(bus, "ord.b", 5, kMessages);
    got += co_await read_in_order(in, 5, last, kMessages);
    EXPECT_EQ(got, kMessages + 5);
    EXPECT_EQ(in.buffered(), 0U);
    co_await in.close();
    const ReceivedMessage after = co_await in.next();
    EXPECT_FALSE(after);
    co_await bus.close();
  }());
  restarter.join();
  bool reconnected = false;
  for (const auto& l : logs.lines()) {
    reconnected =
        reconnected || (l.find("ordered_consumer_reset") != std::string::npos && l.find("reason=reconnected") != std::string::npos);
  }
  EXPECT_TRUE(reconnected) << logs.all();
}

TEST(Ordered, AGapOrADisagreeingHeartbeatRecreatesTheConsumerAfterTheLastMessageRead) {
  NatsServer server;
  LogCapture logs;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{ordered_config(server, "GAP", "gap.>")};
    co_await bus.connect();
    co_await publish_n(bus, "gap.a", 10);
    auto in = co_await bus.ordered_messages("gap.>", {.idle_heartbeat = 300ms}, 1);
    std::uint64_t last = 0;
    int got = co_await read_in_order(in, 10, last, 0);
    EXPECT_EQ(got, 10);
    const auto names = co_await bus.consumer_names("GAP");
    EXPECT_EQ(names.size(), 1U);
    const std::string first = names.at(0);

    // cnats drops what does not fit a small queue while the reader pauses: the consumer
    // sequence jumps, and a new consumer starts after the last message read.
    auto* core = static_cast<natbus::detail::OrderedCore*>(natbus::detail::sub_core_of(in.subscription()));
    core->limit_queue(5);
    co_await publish_n(bus, "gap.a", 200, 10);
    const bool dropped = co_await eventually([&] { return core->dropped() > 0; });
    EXPECT_TRUE(dropped);
    got += co_await read_in_order(in, 200, last, 10);
    EXPECT_EQ(got, 210);
    EXPECT_GE(core->resets(), 1U);
    bool gap = false;
    for (const auto& l : logs.lines()) {
      gap = gap || (l.find("ordered_consumer_reset") != std::string::npos &&
                    (l.find("reason=\"consumer sequence") != std::string::npos || l.find("reason=\"cnats dropped") != std::string::npos));
    }
    EXPECT_TRUE(gap) << logs.all();
    core->limit_queue(65536);
    // The replaced consumer is deleted (natbus does not wait for the answer).
    std::vector<std::string> now;
    const auto first_gone = [&]() -> Task<bool> {
      for (int i = 0; i < 200; ++i) {
        now = co_await bus.consumer_names("GAP");
        if (std::find(now.begin(), now.end(), first) == now.end()) co_return true;
        co_await natbus::sleep(10ms);
      }
      co_return false;
    };
    const bool deleted = co_await first_gone();
    EXPECT_TRUE(deleted);
    EXPECT_NE(in.subscription().durable(), first);

    // A heartbeat saying the consumer sent more than came: replaced again.
    const std::string current(in.subscription().durable());
    const auto second = co_await bus.consumer_info("GAP", current);
    natsMsg* hb = nullptr;
    natsMsg_Create(&hb, second.deliver_subject.c_str(), nullptr, nullptr, 0);
    natsMsgHeader_Set(hb, "Status", "100");
    natsMsgHeader_Set(hb, "Description", "Idle Heartbeat");
    natsMsgHeader_Set(hb, "Nats-Last-Consumer", "999999");
    natsMsgHeader_Set(hb, "Nats-Last-Stream", "999999");
    inject(server, hb);
    natsMsg_Destroy(hb);
    const bool again = co_await eventually([&] {
      for (const auto& l : logs.lines()) {
        if (l.find("heartbeat reports consumer sequence 999999") != std::string::npos) return true;
      }
      return false;
    });
    EXPECT_TRUE(again) << logs.all();
    co_await publish_n(bus, "gap.a", 5, 210);
    got += co_await read_in_order(in, 5, last, 210);
    EXPECT_EQ(got, 215);
    EXPECT_EQ(in.buffered(), 0U);
    co_await bus.close();
  }());
}

TEST(Ordered, AConsumerThatVanishedIsReplacedOnceItsHeartbeatsStop) {
  NatsServer server;
  LogCapture logs;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{ordered_config(server, "GONE", "gone.>")};
    co_await bus.connect();
    co_await publish_n(bus, "gone.a", 3);
    auto in = co_await bus.ordered_messages("gone.>", {.idle_heartbeat = 200ms});
    std::uint64_t last = 0;
    int got = co_await read_in_order(in, 3, last, 0);
    const auto names = co_await bus.consumer_names("GONE");
    EXPECT_EQ(names.size(), 1U);
    co_await bus.delete_consumer("GONE", names.at(0));
    const bool replaced = co_await eventually([&] { return logs.has_event("ordered_consumer_reset"); }, 10s);
    EXPECT_TRUE(replaced);
    co_await publish_n(bus, "gone.a", 4, 3);
    got += co_await read_in_order(in, 4, last, 3);
    EXPECT_EQ(got, 7);
    co_await bus.close();
  }());
  bool reason = false;
  for (const auto& l : logs.lines()) reason = reason || l.find("three idle_heartbeat intervals") != std::string::npos;
  EXPECT_TRUE(reason) << logs.all();
}

TEST(Ordered, DeliverPoliciesHeadersOnlyNoAcksAndTheEndOfTheStream) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{ordered_config(server, "POL", "pol.>")};
    co_await bus.connect();
    co_await publish_n(bus, "pol.a", 3);     // 1..3: "0" "1" "2"
    co_await publish_n(bus, "pol.b", 2, 3);  // 4..5: "3" "4"
    const auto middle = std::chrono::system_clock::now();
    co_await natbus::sleep(20ms);            // distinct store times on both sides of `middle`
    co_await publish_n(bus, "pol.a", 1, 5);  // 6: "5"

    const auto first_of = [](MessageStream& s) -> Task<std::pair<std::uint64_t, std::string>> {
      ReceivedMessage m = co_await natbus::with_timeout(s.next(), 10s);
      co_return std::pair{m.metadata()->stream_sequence, std::string(m.as_text())};
    };
    auto last = co_await bus.ordered_messages("pol.>", {.deliver_policy = DeliverPolicy::last});
    auto got = co_await first_of(last);
    EXPECT_EQ(got, (std::pair<std::uint64_t, std::string>{6, "5"}));
    auto seq = co_await bus.ordered_messages("pol.>", {.deliver_policy = DeliverPolicy::by_start_sequence, .start_sequence = 4});
    got = co_await first_of(seq);
    EXPECT_EQ(got.first, 4U);
    auto time = co_await bus.ordered_messages("pol.>", {.deliver_policy = DeliverPolicy::by_start_time, .start_time = middle});
    got = co_await first_of(time);
    EXPECT_EQ(got.first, 6U);
    auto per_subject = co_await bus.ordered_messages("pol.>", {.deliver_policy = DeliverPolicy::last_per_subject});
    got = co_await first_of(per_subject);
    EXPECT_EQ(got.first, 5U);  // pol.b's last; then pol.a's
    got = co_await first_of(per_subject);
    EXPECT_EQ(got.first, 6U);
    auto fresh = co_await bus.ordered_messages("pol.a", {.deliver_policy = DeliverPolicy::new_});
    co_await publish_n(bus, "pol.a", 1, 6);
    got = co_await first_of(fresh);
    EXPECT_EQ(got, (std::pair<std::uint64_t, std::string>{7, "6"}));

    auto heads = co_await bus.ordered_messages("pol.b", {.headers_only = true});
    ReceivedMessage h = co_await natbus::with_timeout(heads.next(), 10s);
    EXPECT_EQ(h.raw_payload(), "");
    EXPECT_EQ(h.header("Nats-Msg-Size").value_or(""), "1");
    EXPECT_EQ(h.metadata()->stream_sequence, 4U);
    std::string ack_error;
    try {
      (void)h.ack();
    } catch (const natbus::InvalidArgument& e) {
      ack_error = e.what();
    }
    EXPECT_NE(ack_error.find("ordered consumer"), std::string::npos) << ack_error;

    // The stream deleted under a reader: the stream of messages ends.
    auto all = co_await bus.ordered_messages("pol.>", {.idle_heartbeat = 200ms});
    std::uint64_t at = 0;
    const int one = co_await read_in_order(all, 1, at, 0);
    EXPECT_EQ(one, 1);
    co_await bus.delete_stream("POL");
    bool ended = false;
    for (int i = 0; i < 20 && !ended; ++i) {
      ReceivedMessage m = co_await natbus::with_timeout(all.next(), 20s);
      ended = !m;
    }
    EXPECT_TRUE(ended);
    co_await bus.close();
  }());
}

TEST(Ordered, BadOptionsAreRefusedBeforeAnyConsumerExists) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{ordered_config(server, "BADORD", "badord.>")};
    co_await bus.connect();
    const auto refused = [&](std::string subject, natbus::OrderedOptions o) -> Task<std::string> {
      try {
        auto s = co_await bus.ordered_messages(subject, o);
      } catch (const natbus::InvalidArgument& e) {
        co_return e.what();
      }
      co_return "accepted";
    };
    // One at a time: no co_await inside a braced list (GCC 12).
    std::vector<std::pair<std::string, std::string>> cases;
    std::string what = co_await refused("", {});
    cases.emplace_back(what, "subject");
    what = co_await refused("badord.a b", {});
    cases.emplace_back(what, "subject");
    what = co_await refused("badord.>", {.deliver_policy = DeliverPolicy::by_start_sequence});
    cases.emplace_back(what, "start_sequence >= 1");
    what = co_await refused("badord.>", {.start_sequence = 3});
    cases.emplace_back(what, "needs deliver_policy by_start_sequence");
    what = co_await refused("badord.>", {.deliver_policy = DeliverPolicy::by_start_time});
    cases.emplace_back(what, "needs start_time");
    what = co_await refused("badord.>", {.idle_heartbeat = 10ms});
    cases.emplace_back(what, "idle_heartbeat must be between 100 ms and 24 h, got 10 ms");
    what = co_await refused("badord.>", {.stream = "a.b"});
    cases.emplace_back(what, "stream");
    for (const auto& [text, expected] : cases) {
      EXPECT_NE(text.find(expected), std::string::npos) << text;
      EXPECT_NE(text.find("ordered_messages"), std::string::npos) << text;
    }
    std::string buffer_error;
    try {
      auto s = co_await bus.ordered_messages("badord.>", {}, 0);
    } catch (const natbus::InvalidArgument& e) {
      buffer_error = e.what();
    }
    EXPECT_NE(buffer_error.find("buffer"), std::string::npos) << buffer_error;
    const auto names = co_await bus.consumer_names("BADORD");
    EXPECT_TRUE(names.empty());
    co_await bus.close();
  }());
}

#ifdef NATBUS_EXAMPLE_ORDERED
TEST(Example, OrderedReaderPrintsWhatTheReadmeShows) {
  NatsServer server(ServerOptions{.user = "nats-user", .password = "changeme"});
  ChildProcess example({NATBUS_EXAMPLE_ORDERED}, {"NATS_SERVER=" + server.url(), "NATS_USERNAME=nats-user", "NATS_PASSWORD=changeme"});
  const auto last = example.wait_for_line("latest: #5", 60s);
  EXPECT_TRUE(last.has_value()) << ::testing::PrintToString(example.output());
  EXPECT_EQ(example.wait(30s), 0) << ::testing::PrintToString(example.output());
  std::vector<std::string> printed;
  for (const auto& l : example.output()) {
    if (l.find(" INFO ") == std::string::npos && l.find(" DEBUG ") == std::string::npos) printed.push_back(l);
  }
  const std::vector<std::string> expected{
      "all: #1 prices.book = 10",  "all: #2 prices.chair = 11",   "all: #3 prices.book = 12",    "all: #4 prices.lamp = 13",
      "all: #5 prices.chair = 14", "latest: #3 prices.book = 12", "latest: #4 prices.lamp = 13", "latest: #5 prices.chair = 14",
  };
  EXPECT_EQ(printed, expected);
}
#endif
