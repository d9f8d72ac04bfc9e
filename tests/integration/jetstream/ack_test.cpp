// Acknowledgements against a real server: what a delivery carries, ack, nak (with delay), term,
// in-progress, ack_wait expiry, max_deliver, acks after handlers, backoff instead of a
// redelivery storm, misuse, and double acks.
#include <gtest/gtest.h>

#include <map>

#include "support/bus_test.hpp"

using namespace std::chrono_literals;
using natbus::BusMessage;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

TEST(Consume, MetadataOfADelivery) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "META", "meta.*")};
    co_await bus.connect();
    co_await publish_n(bus, "meta.a", 3);
    std::optional<natbus::MsgMetadata> md;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      if (m.as_text() == "2") {
        md = m.metadata();
        EXPECT_TRUE(m.is_jetstream());
        EXPECT_LE(m.received_at(), std::chrono::system_clock::now());
      }
      co_await m.ack();
    };
    auto sub = co_await bus.push_subscribe("meta.*", handler, {.durable = "meta"});
    EXPECT_TRUE(co_await eventually([&] { return md.has_value(); }));
    if (md) {
      EXPECT_EQ(md->stream, "META");
      EXPECT_EQ(md->consumer, "meta");
      EXPECT_EQ(md->stream_sequence, 3U);
      EXPECT_EQ(md->consumer_sequence, 3U);
      EXPECT_EQ(md->num_delivered, 1U);
      EXPECT_EQ(md->num_pending, 0U);
      EXPECT_LT(std::chrono::system_clock::now() - md->timestamp, 60s);
    }
    co_await bus.close();
  }());
}

TEST(Consume, NakRedeliversWithDeliveryCount) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "NAK", "nak.*")};
    co_await bus.connect();
    std::vector<std::uint64_t> deliveries;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      deliveries.push_back(m.metadata()->num_delivered);
      if (deliveries.size() == 1) {
        co_await m.nak();
      } else {
        co_await m.ack();
      }
    };
    auto sub = co_await bus.push_subscribe("nak.*", handler, {.durable = "nak"});
    co_await publish_n(bus, "nak.a", 1);
    EXPECT_TRUE(co_await eventually([&] { return deliveries.size() == 2; }));
    EXPECT_EQ(deliveries, (std::vector<std::uint64_t>{1, 2}));
    co_await bus.close();
  }());
}

TEST(Consume, NakWithDelayWaitsBeforeRedelivery) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "NAKD", "nakd.*")};
    co_await bus.connect();
    std::vector<std::chrono::steady_clock::time_point> at;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      at.push_back(std::chrono::steady_clock::now());
      if (at.size() == 1) {
        co_await m.nak(500ms);
      } else {
        co_await m.ack();
      }
    };
    auto sub = co_await bus.push_subscribe("nakd.*", handler, {.durable = "nakd"});
    co_await publish_n(bus, "nakd.a", 1);
    EXPECT_TRUE(co_await eventually([&] { return at.size() == 2; }));
    if (at.size() == 2) {
      EXPECT_GE(at[1] - at[0], 450ms);
    }
    co_await bus.close();
  }());
}

TEST(Consume, TermStopsRedelivery) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "TERM", "term.*")};
    co_await bus.connect();
    int deliveries = 0;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      ++deliveries;
      co_await m.term();
    };
    auto sub = co_await bus.push_subscribe("term.*", handler, {.durable = "term", .ack_wait = 300ms});
    co_await publish_n(bus, "term.a", 1);
    EXPECT_TRUE(co_await eventually([&] { return deliveries == 1; }));
    co_await natbus::sleep(1200ms);  // four ack waits: a redelivery would have come
    EXPECT_EQ(deliveries, 1);
    auto info = co_await bus.consumer_info("TERM", "term");
    EXPECT_EQ(info.num_ack_pending, 0U);
    co_await bus.close();
  }());
}

TEST(Consume, AckWaitExpiryRedeliversUnackedAndInProgressExtendsIt) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "AW", "aw.*")};
    co_await bus.connect();
    std::map<std::string, std::vector<std::uint64_t>> seen;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      const std::string body(m.as_text());
      seen[body].push_back(m.metadata()->num_delivered);
      if (body == "0") {
        if (seen[body].size() > 1) co_await m.ack();  // first delivery: never answered
      } else {
        // Longer than ack_wait, but kept alive with in_progress(): no redelivery.
        for (int i = 0; i < 4; ++i) {
          co_await natbus::sleep(200ms);
          co_await m.in_progress();
        }
        co_await m.ack();
      }
    };
    auto sub = co_await bus.push_subscribe("aw.*", handler, {.durable = "aw", .ack_wait = 500ms, .max_concurrency = 2});
    co_await publish_n(bus, "aw.a", 2);
    EXPECT_TRUE(co_await eventually([&] { return seen["0"].size() >= 2; }));
    co_await natbus::sleep(600ms);
    EXPECT_EQ(seen["0"][0], 1U);
    if (seen["0"].size() >= 2) {
      EXPECT_EQ(seen["0"][1], 2U);
    }
    EXPECT_EQ(seen["1"].size(), 1U);  // in_progress held the ack timer
    co_await bus.close();
  }());
}

TEST(Consume, MaxDeliverStopsRedelivering) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "MAXD", "maxd.*")};
    co_await bus.connect();
    int deliveries = 0;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      ++deliveries;
      co_await m.nak();
    };
    auto sub = co_await bus.push_subscribe("maxd.*", handler, {.durable = "maxd", .max_deliver = 3});
    co_await publish_n(bus, "maxd.a", 1);
    EXPECT_TRUE(co_await eventually([&] { return deliveries == 3; }));
    co_await natbus::sleep(500ms);
    EXPECT_EQ(deliveries, 3);
    co_await bus.close();
  }());
}

TEST(Consume, AutoAckAndNakOnThrow) {
  NatsServer server;
  LogCapture logs;
  natbus::run([&]() -> Task<void> {
    NatsConfig cfg = consume_config(server, "AUTO", "auto.*");
    cfg.manual_ack = false;
    NatsBus bus{cfg};
    co_await bus.connect();
    std::map<std::string, int> seen;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      const std::string body(m.as_text());
      if (++seen[body] == 1 && body == "boom") throw std::runtime_error("handler failed on purpose");
      co_return;  // manual_ack = false: natbus acks
    };
    auto sub = co_await bus.push_subscribe("auto.*", handler, {.durable = "auto", .queue = "workers"});
    auto ok = BusMessage::from_text("auto.a", "fine");
    co_await bus.publish(std::move(ok));
    auto bad = BusMessage::from_text("auto.a", "boom");
    co_await bus.publish(std::move(bad));
    EXPECT_TRUE(co_await eventually([&] { return seen["boom"] == 2; }));  // nak'ed, so redelivered at once
    co_await bus.flush();
    EXPECT_TRUE(co_await eventually([&]() { return seen["fine"] == 1; }));
    auto info = co_await bus.consumer_info("AUTO", "auto");
    EXPECT_EQ(info.num_ack_pending, 0U);
    EXPECT_EQ(seen["fine"], 1);
    co_await bus.close();
  }());
  bool logged = false;
  for (const auto& l : logs.lines()) {
    if (l.find("sub_handler_error") != std::string::npos && l.find("subject=auto.a") != std::string::npos &&
        l.find("durable=auto") != std::string::npos && l.find("queue=workers") != std::string::npos &&
        l.find("handler failed on purpose") != std::string::npos) {
      logged = true;
    }
  }
  EXPECT_TRUE(logged) << logs.all();
}

TEST(Consume, FailingHandlerBacksOffInsteadOfARedeliveryStorm) {
  // A handler that always throws (its database is down): the message is nak'ed with a growing
  // delay, so it comes back a few times in 5 s, not thousands; a working handler gets it later.
  NatsServer server;
  LogCapture logs;
  int deliveries = 0;
  int handled = 0;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "STORM", "storm.*")};
    co_await bus.connect();
    auto failing = [&](ReceivedMessage) -> Task<void> {
      ++deliveries;
      throw std::runtime_error("database down");
      co_return;
    };
    auto working = [&](ReceivedMessage m) -> Task<void> {
      ++handled;
      co_await m.ack();
    };
    {
      auto sub = co_await bus.push_subscribe("storm.*", failing, {.durable = "storm"});
      co_await publish_n(bus, "storm.a", 1);
      co_await natbus::sleep(5s);  // the window in which deliveries are counted
    }
    auto sub = co_await bus.push_subscribe("storm.*", working, {.durable = "storm"});
    EXPECT_TRUE(co_await eventually([&] { return handled == 1; }, 40s)) << "the message never reached the working handler";
    co_await bus.close();
  }());
  std::printf("[consume] failing handler: %d deliveries in 5 s\n", deliveries);
  EXPECT_GE(deliveries, 2);
  EXPECT_LE(deliveries, 20);
  bool logged_delay = false;
  for (const auto& l : logs.lines())
    logged_delay |= l.find("sub_handler_error") != std::string::npos && l.find("redelivery_delay_ms=250") != std::string::npos;
  EXPECT_TRUE(logged_delay) << "the first failure should be logged with its 250 ms delay";
}

TEST(Consume, ManualAckHandlerThatThrowsIsNaked) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "MTHROW", "mthrow.*")};
    co_await bus.connect();
    int deliveries = 0;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      if (++deliveries == 1) throw std::runtime_error("first try fails");
      co_await m.ack();
    };
    auto sub = co_await bus.push_subscribe("mthrow.*", handler, {.durable = "mthrow"});
    co_await publish_n(bus, "mthrow.a", 1);
    EXPECT_TRUE(co_await eventually([&] { return deliveries == 2; }, 5s));  // long before ack_wait (30 s)
    co_await bus.close();
  }());
}

TEST(Consume, AckMisuseIsAClearError) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "MISUSE", "misuse.*")};
    co_await bus.connect();
    co_await publish_n(bus, "misuse.a", 1);
    auto fetcher = co_await bus.pull_subscribe("misuse.*", {.durable = "misuse"});
    auto msgs = co_await fetcher.fetch(1, 2s);
    EXPECT_EQ(msgs.size(), 1U);
    if (msgs.size() == 1) {
      auto& m = msgs[0];
      co_await m.ack();
      EXPECT_TRUE(m.acknowledged());
      EXPECT_THROW(co_await m.ack(), natbus::AlreadyAcknowledgedError);
      EXPECT_THROW(co_await m.nak(), natbus::AlreadyAcknowledgedError);
      EXPECT_THROW(co_await m.nak(-1ms), natbus::InvalidArgument);
      ReceivedMessage moved = std::move(m);
      EXPECT_THROW(co_await m.ack(), natbus::InvalidArgument);  // NOLINT(bugprone-use-after-move): on purpose
    }
    co_await publish_n(bus, "misuse.a", 1);
    auto later = co_await fetcher.fetch(1, 2s);
    co_await bus.close();
    if (later.size() == 1) {
      EXPECT_THROW(co_await later[0].ack(), natbus::ClosedError);  // after close: redelivered later
      EXPECT_EQ(later[0].as_text(), "0");                          // the message itself is still readable
    }
  }());
}

TEST(Consume, AckSyncWaitsForTheServer) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "ACKSYNC", "acksync.*")};
    co_await bus.connect();
    co_await publish_n(bus, "acksync.a", 1);
    auto fetcher = co_await bus.pull_subscribe("acksync.*", {.durable = "acksync"});
    auto msgs = co_await fetcher.fetch(1, 2s);
    EXPECT_EQ(msgs.size(), 1U);
    if (!msgs.empty()) co_await msgs[0].ack_sync();
    auto info = co_await bus.consumer_info("ACKSYNC", "acksync");
    EXPECT_EQ(info.num_ack_pending, 0U);  // no flush needed: ack_sync waited for the server
    co_await bus.close();
  }());
}
