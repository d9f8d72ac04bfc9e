// Push and pull consumers against a real server: delivery, acks and redelivery, durables across
// processes, queue groups, reconciliation, backpressure, replies, lifetimes.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <map>
#include <set>

#include "bus/bus_core.hpp"
#include "support/bus_test.hpp"
#include "support/child_process.hpp"

using namespace std::chrono_literals;
using natbus::BusMessage;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

namespace {

/// The shared stream_config(), with new durables starting at the first message.
NatsConfig consume_config(const NatsServer& server, const std::string& stream, const std::string& subjects) {
  NatsConfig c = stream_config(server, stream, subjects);
  c.deliver_policy = natbus::DeliverPolicy::all;
  return c;
}

Task<void> publish_n(NatsBus& bus, const std::string& subject, int n, int first = 0) {
  for (int i = first; i < first + n; ++i) {
    auto msg = BusMessage::from_text(subject, std::to_string(i));
    co_await bus.publish(std::move(msg));
  }
}

}  // namespace

TEST(Consume, PushDeliversInOrderAndAcks) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "PUSH1", "push1.*")};
    co_await bus.connect();
    std::vector<std::string> got;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      got.emplace_back(m.as_text());
      co_await m.ack();
    };
    auto sub = co_await bus.push_subscribe("push1.*", handler, {.durable = "d1"});
    EXPECT_EQ(sub.durable(), "d1");
    EXPECT_EQ(sub.stream(), "PUSH1");
    co_await publish_n(bus, "push1.a", 50);
    EXPECT_TRUE(co_await eventually([&] { return got.size() == 50; }));
    for (int i = 0; i < 50 && i < static_cast<int>(got.size()); ++i) EXPECT_EQ(got[static_cast<std::size_t>(i)], std::to_string(i));
    co_await bus.flush();
    auto info = co_await bus.consumer_info("PUSH1", "d1");
    EXPECT_EQ(info.num_ack_pending, 0U);
    EXPECT_TRUE(info.push);
    co_await bus.close();
  }());
}

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

TEST(Consume, QueueGroupSharesWithoutDuplicatesOrLoss) {
  NatsServer server;
  constexpr int kMessages = 3000;
  natbus::run([&]() -> Task<void> {
    NatsConfig cfg = consume_config(server, "QG", "qg.*");
    NatsBus a{cfg};
    NatsBus b{cfg};
    co_await a.connect();
    co_await b.connect();
    std::map<std::string, int> seen;
    int on_a = 0;
    int on_b = 0;
    auto handler_a = [&](ReceivedMessage m) -> Task<void> {
      ++seen[std::string(m.as_text())];
      ++on_a;
      co_await m.ack();
    };
    auto handler_b = [&](ReceivedMessage m) -> Task<void> {
      ++seen[std::string(m.as_text())];
      ++on_b;
      co_await m.ack();
    };
    auto sa = co_await a.push_subscribe("qg.*", handler_a, {.durable = "qg", .queue = "workers"});
    auto sb = co_await b.push_subscribe("qg.*", handler_b, {.durable = "qg", .queue = "workers"});
    std::vector<natbus::PublishFuture> futures;
    for (int i = 0; i < kMessages; ++i) {
      auto m = BusMessage::from_text("qg.x", std::to_string(i));
      futures.push_back(co_await a.publish_async(std::move(m)));
    }
    co_await a.publish_async_complete(30s);
    EXPECT_TRUE(co_await eventually([&] { return static_cast<int>(seen.size()) == kMessages; }, 30s));
    co_await natbus::sleep(300ms);
    int duplicates = 0;
    for (const auto& [k, n] : seen) duplicates += n - 1;
    EXPECT_EQ(static_cast<int>(seen.size()), kMessages);
    EXPECT_EQ(duplicates, 0);
    EXPECT_GT(on_a, 0);
    EXPECT_GT(on_b, 0);
    co_await a.close();
    co_await b.close();
  }());
}

TEST(Consume, SameDurableTwiceInOneProcessIsAClearErrorAndTheFirstKeepsWorking) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "TWICE", "twice.*")};
    co_await bus.connect();
    int handled = 0;
    int second_handled = 0;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      ++handled;
      co_await m.ack();
    };
    auto second_handler = [&](ReceivedMessage m) -> Task<void> {
      ++second_handled;
      co_await m.ack();
    };
    auto first = co_await bus.push_subscribe("twice.*", handler, {.durable = "twice"});
    std::string what;
    try {
      auto second = co_await bus.push_subscribe("twice.*", second_handler, {.durable = "twice"});
      ADD_FAILURE() << "a second subscription of the same durable was accepted";
    } catch (const natbus::InvalidArgument& e) {
      what = e.what();
    }
    EXPECT_NE(what.find("\"twice\""), std::string::npos) << what;
    EXPECT_NE(what.find("already subscribed"), std::string::npos) << what;
    EXPECT_THROW((void)co_await bus.push_subscribe("twice.*", handler, {.durable = "twice", .queue = "other"}), natbus::InvalidArgument);
    co_await publish_n(bus, "twice.a", 20);
    EXPECT_TRUE(co_await eventually([&] { return handled >= 20; }));
    co_await natbus::sleep(200ms);  // time for a wrong second delivery to show (none may come)
    EXPECT_EQ(handled, 20);
    EXPECT_EQ(second_handled, 0);
    co_await bus.close();
  }());
}

TEST(Consume, SubscribingAbandonedWhenRunEndsLeavesNothingDangling) {
  // run() ends while spawned tasks are still inside subscribe_core (serve and push_subscribe
  // end the same way),
  // waiting for the server to confirm the interest: the half-made subscriptions are destroyed
  // with the task, and the bus (which outlives run() here) must not be left pointing at them.
  NatsServer server;
  NatsBus bus{consume_config(server, "ABANDON", "abandon.*")};
  auto on_msg = [](ReceivedMessage) -> Task<void> { co_return; };
  natbus::run([&]() -> Task<void> {
    co_await bus.connect();
    server.freeze();  // the confirmation (PING/PONG) never comes
    natbus::spawn([](NatsBus& b, decltype(on_msg)& h) -> Task<void> {
      auto s = co_await b.subscribe_core("abandon.core", h);
      ADD_FAILURE() << "subscribed to a frozen server";
    }(bus, on_msg));
    natbus::spawn([](NatsBus& b, decltype(on_msg)& h) -> Task<void> {
      auto s = co_await b.subscribe_core("abandon.queue", h, {.queue = "q"});
      ADD_FAILURE() << "subscribed to a frozen server";
    }(bus, on_msg));
    EXPECT_TRUE(co_await eventually([&] { return natbus::detail::bus_core_of(bus)->subscriptions().size() == 2; }, 5s));
  }());  // the loop ends here with both tasks suspended inside their subscribe calls
  server.thaw();
  EXPECT_EQ(bus.status(), natbus::ConnectionStatus::closed);
}

namespace {
/// Stops a durable with many large messages in flight behind a slow handler; another bus on
/// the same durable must get every unacked message long before ack_wait (30 s).
void stop_with_messages_in_flight(bool pull) {
  constexpr int kCount = 300;
  NatsServer server;
  NatsConfig cfg = consume_config(server, "STRAND", "strand.*");
  cfg.ack_wait = 30s;
  // The server sends at most this many ahead: all of them leave it before the stop, so every
  // unacked message is in the client, in its socket, or on the wire when the UNSUB goes out.
  cfg.max_ack_pending = 100;
  cfg.deliver_policy = natbus::DeliverPolicy::all;
  std::set<std::string> first_acked;
  std::set<std::string> second_seen;
  double took_s = -1;
  natbus::run([&]() -> Task<void> {
    NatsBus publisher{cfg};
    co_await publisher.connect();
    const std::string filler(48 * 1024, 'x');
    for (int i = 0; i < kCount; ++i) {
      auto msg = BusMessage::from_text("strand.a", std::to_string(i) + ";" + filler);
      co_await publisher.publish(std::move(msg));
    }
    auto id_of = [](const ReceivedMessage& m) { return std::string(m.as_text().substr(0, m.as_text().find(';'))); };
    bool started = false;
    auto slow = [&](ReceivedMessage m) -> Task<void> {
      co_await m.ack();
      first_acked.insert(id_of(m));
      started = true;
      co_await natbus::sleep(200ms);  // slow work after the ack: the rest waits, much of it on the wire
    };
    auto fast = [&](ReceivedMessage m) -> Task<void> {
      second_seen.insert(id_of(m));
      co_await m.ack();
    };
    {
      NatsBus first{cfg};
      co_await first.connect();
      if (pull) {
        auto sub = co_await first.pull_subscribe("strand.*", slow, {.durable = "strand", .batch = 150, .expires = 5s});
        EXPECT_TRUE(co_await eventually([&] { return started; }, 10s));
        co_await sub.close();  // returns once what was on its way is given back
      } else {
        auto sub = co_await first.push_subscribe("strand.*", slow, {.durable = "strand"});
        EXPECT_TRUE(co_await eventually([&] { return started; }, 10s));
        co_await sub.close();
      }
      co_await first.close();
    }
    const auto t0 = std::chrono::steady_clock::now();
    NatsBus second{cfg};
    co_await second.connect();
    const auto all = [&] { return first_acked.size() + second_seen.size() >= static_cast<std::size_t>(kCount); };
    if (pull) {
      auto sub = co_await second.pull_subscribe("strand.*", fast, {.durable = "strand", .batch = 150, .expires = 5s});
      EXPECT_TRUE(co_await eventually(all, 10s));
    } else {
      auto sub = co_await second.push_subscribe("strand.*", fast, {.durable = "strand"});
      EXPECT_TRUE(co_await eventually(all, 10s));
    }
    took_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    co_await second.close();
    co_await publisher.close();
  }());
  std::printf("[consume] stopped %s durable: first acked %zu, second got %zu of the rest in %.1f s\n", pull ? "pull" : "push",
              first_acked.size(), second_seen.size(), took_s);
  std::string missing;
  for (int i = 0; i < kCount; ++i) {
    const std::string id = std::to_string(i);
    if (first_acked.count(id) == 0 && second_seen.count(id) == 0) missing += " " + id;
  }
  EXPECT_EQ(first_acked.size() + second_seen.size(), static_cast<std::size_t>(kCount)) << "stranded until ack_wait:" << missing;
}
}  // namespace

TEST(Consume, StoppingAPushDurableGivesBackWhatWasInFlight) { stop_with_messages_in_flight(false); }

TEST(Consume, StoppingAPullDurableGivesBackWhatWasInFlight) { stop_with_messages_in_flight(true); }

TEST(Consume, DestroyingTheSubscriptionStopsDeliveryAndKeepsTheDurable) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "STOP", "stop.*")};
    co_await bus.connect();
    int handled = 0;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      ++handled;
      co_await m.ack();
    };
    {
      auto sub = co_await bus.push_subscribe("stop.*", handler, {.durable = "stopper"});
      co_await publish_n(bus, "stop.a", 5);
      EXPECT_TRUE(co_await eventually([&] { return handled == 5; }));
    }
    co_await publish_n(bus, "stop.a", 5, 5);
    co_await natbus::sleep(300ms);
    EXPECT_EQ(handled, 5);
    auto info = co_await bus.consumer_info("STOP", "stopper");  // still there
    // The 5 are still owed to the durable: not delivered yet, or delivered while the stopped
    // subscription drained and given back (pending their redelivery).
    EXPECT_EQ(info.num_pending + info.num_ack_pending, 5U);
    // Resubscribing continues where the durable left off.
    auto again = co_await bus.push_subscribe("stop.*", handler, {.durable = "stopper"});
    EXPECT_TRUE(co_await eventually([&] { return handled == 10; }));
    co_await bus.close();
  }());
}

TEST(Consume, CloseWaitsForRunningHandlersAndTheirAcks) {
  NatsServer server;
  NatsConfig cfg = consume_config(server, "DRAINH", "drainh.*");
  int finished = 0;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    int started = 0;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      ++started;
      co_await natbus::sleep(300ms);
      co_await m.ack();
      ++finished;
    };
    auto sub = co_await bus.push_subscribe("drainh.*", handler, {.durable = "drainh", .max_concurrency = 4});
    co_await publish_n(bus, "drainh.a", 4);
    EXPECT_TRUE(co_await eventually([&] { return started == 4; }));
    co_await bus.close();
    EXPECT_EQ(finished, 4);
  }());
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    auto info = co_await bus.consumer_info("DRAINH", "drainh");
    EXPECT_EQ(info.num_ack_pending, 0U);  // the acks written while closing reached the server
    EXPECT_EQ(info.num_redelivered, 0U);
    co_await bus.close();
  }());
}

TEST(Consume, MaxConcurrencyBoundsRunningHandlers) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "CONC", "conc.*")};
    co_await bus.connect();
    int running = 0;
    int peak = 0;
    int done = 0;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      peak = std::max(peak, ++running);
      co_await natbus::sleep(20ms);
      --running;
      ++done;
      co_await m.ack();
    };
    auto sub = co_await bus.push_subscribe("conc.*", handler, {.durable = "conc", .max_concurrency = 3});
    co_await publish_n(bus, "conc.a", 30);
    EXPECT_TRUE(co_await eventually([&] { return done == 30; }));
    EXPECT_EQ(peak, 3);
    co_await bus.close();
  }());
}

TEST(Consume, ReconcilesAChangedDurableAndRejectsTheWrongKind) {
  NatsServer server;
  LogCapture logs;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "RECON", "recon.*")};
    co_await bus.connect();
    auto handler = [](ReceivedMessage m) -> Task<void> { co_await m.ack(); };
    { auto sub = co_await bus.push_subscribe("recon.*", handler, {.durable = "recon", .ack_wait = 30s}); }
    auto info = co_await bus.consumer_info("RECON", "recon");
    EXPECT_EQ(info.raw["config"]["ack_wait"], std::chrono::nanoseconds(30s).count());
    { auto sub = co_await bus.push_subscribe("recon.*", handler, {.durable = "recon", .ack_wait = 10s, .max_ack_pending = 50}); }
    info = co_await bus.consumer_info("RECON", "recon");
    EXPECT_EQ(info.raw["config"]["ack_wait"], std::chrono::nanoseconds(10s).count());
    EXPECT_EQ(info.raw["config"]["max_ack_pending"], 50);
    // bind = false: an existing durable is used as it is.
    { auto sub = co_await bus.push_subscribe("recon.*", handler, {.durable = "recon", .bind = false, .ack_wait = 20s}); }
    info = co_await bus.consumer_info("RECON", "recon");
    EXPECT_EQ(info.raw["config"]["ack_wait"], std::chrono::nanoseconds(10s).count());
    // The same durable name as the other kind is an error that says so.
    try {
      auto pull = co_await bus.pull_subscribe("recon.*", handler, {.durable = "recon"});
      ADD_FAILURE() << "pull on a push durable";
    } catch (const natbus::ConsumerKindError& e) {
      EXPECT_NE(std::string(e.what()).find("PUSH"), std::string::npos) << e.what();
    }
    auto pullsub = co_await bus.pull_subscribe("recon.*", {.durable = "recon_pull"});
    try {
      auto push = co_await bus.push_subscribe("recon.*", handler, {.durable = "recon_pull"});
      ADD_FAILURE() << "push on a pull durable";
    } catch (const natbus::ConsumerKindError& e) {
      EXPECT_NE(std::string(e.what()).find("PULL"), std::string::npos) << e.what();
    }
    co_await bus.close();
  }());
  EXPECT_TRUE(logs.has_event("js_consumer_recreated")) << logs.all();
  EXPECT_TRUE(logs.has_event("js_consumer_config_differs")) << logs.all();
}

TEST(Consume, EphemeralConsumerIsRemovedAfterItsThreshold) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "EPH", "eph.*")};
    co_await bus.connect();
    std::vector<std::string> got;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      got.emplace_back(m.as_text());
      co_return;  // default manual_ack (true) but no ack needed for the check
    };
    auto sub = co_await bus.ephemeral_push_subscribe("eph.*", handler, {.inactive_threshold = 1s, .manual_ack = false});
    co_await publish_n(bus, "eph.a", 3);
    EXPECT_TRUE(co_await eventually([&] { return got.size() == 3; }));
    auto info = co_await bus.stream_info("EPH");
    EXPECT_EQ(info.consumers, 1);
    co_await sub.close();
    // The server deletes it once nobody listened for inactive_threshold.
    bool gone = false;
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (!gone && std::chrono::steady_clock::now() < deadline) {
      info = co_await bus.stream_info("EPH");
      gone = info.consumers == 0;
      if (!gone) co_await natbus::sleep(100ms);
    }
    EXPECT_TRUE(gone);
    co_await bus.close();
  }());
}

TEST(Consume, PullHandlerAndFetch) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "PULL1", "pull1.*")};
    co_await bus.connect();
    co_await publish_n(bus, "pull1.a", 25);
    auto fetcher = co_await bus.pull_subscribe("pull1.*", {.durable = "f1", .batch = 10});
    auto first = co_await fetcher.fetch(10, 2s);
    EXPECT_EQ(first.size(), 10U);
    for (auto& m : first) co_await m.ack();
    auto rest = co_await fetcher.fetch_no_wait(100);
    EXPECT_EQ(rest.size(), 15U);
    for (auto& m : rest) co_await m.ack();
    const auto t0 = std::chrono::steady_clock::now();
    auto empty = co_await fetcher.fetch(5, 300ms);
    EXPECT_TRUE(empty.empty());
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);
    EXPECT_TRUE((co_await fetcher.fetch_no_wait(5)).empty());

    int handled = 0;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      ++handled;
      co_await m.ack();
    };
    auto sub = co_await bus.pull_subscribe("pull1.*", handler, {.durable = "h1", .batch = 4, .expires = 1s});
    EXPECT_TRUE(co_await eventually([&] { return handled == 25; }));
    co_await publish_n(bus, "pull1.b", 5, 100);  // new messages while the loop waits
    EXPECT_TRUE(co_await eventually([&] { return handled == 30; }));
    co_await bus.close();
  }());
}

TEST(Consume, PullBackpressureKeepsAtMostTwoBatchesOutstanding) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "BP", "bp.*")};
    co_await bus.connect();
    std::vector<natbus::PublishFuture> futures;
    for (int i = 0; i < 400; ++i) {
      auto m = BusMessage::from_text("bp.a", std::to_string(i));
      futures.push_back(co_await bus.publish_async(std::move(m)));
    }
    co_await bus.publish_async_complete(30s);
    int handled = 0;
    auto slow = [&](ReceivedMessage m) -> Task<void> {
      co_await natbus::sleep(5ms);
      ++handled;
      co_await m.ack();
    };
    auto sub = co_await bus.pull_subscribe("bp.*", slow, {.durable = "bp", .batch = 10, .expires = 2s});
    std::uint64_t max_outstanding = 0;
    for (int i = 0; i < 40; ++i) {
      co_await natbus::sleep(25ms);
      auto info = co_await bus.consumer_info("BP", "bp");
      max_outstanding = std::max(max_outstanding, info.num_ack_pending);
    }
    // Delivered but not acked: what is buffered locally plus the one handler running.
    EXPECT_LE(max_outstanding, 21U);
    EXPECT_GT(handled, 0);
    co_await bus.close();
  }());
}

TEST(Consume, RepliesGoToReplyOnAndFinalTo) {
  NatsServer server;
  RawSubscriber progress(server, "replies.progress");
  RawSubscriber final_sub(server, "replies.final");
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "REQ", "req.*")};
    co_await bus.connect();
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      const nlohmann::json step = {{"step", 1}};
      co_await bus.reply_json(m, step);
      const nlohmann::json done = {{"done", true}};
      co_await bus.reply_json(m, done, {.final = true});
      co_await m.ack();
    };
    auto sub = co_await bus.push_subscribe("req.*", handler, {.durable = "req"});
    auto request = BusMessage::from_json(
        "req.work", {{"job", 7}},
        {.correlation_id = "corr-7", .reply_on = "replies.progress", .final_to = "replies.final", .message_type = "job.request"});
    co_await bus.publish(std::move(request));
    auto plain = BusMessage::from_text("req.plain", "no reply headers");
    co_await bus.publish(std::move(plain));
    co_await natbus::sleep(200ms);
    co_await bus.close();
  }());
  auto p = progress.next();
  EXPECT_EQ(p.data, R"({"step":1})");
  EXPECT_EQ(p.headers["x-correlation-id"][0], "corr-7");
  EXPECT_EQ(p.headers["x-message-type"][0], "job.request");
  auto f = final_sub.next();
  EXPECT_EQ(f.data, R"({"done":true})");
  EXPECT_EQ(f.headers["x-correlation-id"][0], "corr-7");
}

TEST(Consume, ReplyWithoutReplyHeadersIsAClearError) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "NOREPLY", "noreply.*")};
    co_await bus.connect();
    co_await publish_n(bus, "noreply.a", 1);
    auto fetcher = co_await bus.pull_subscribe("noreply.*", {.durable = "nr"});
    auto msgs = co_await fetcher.fetch(1, 2s);
    EXPECT_EQ(msgs.size(), 1U);
    if (!msgs.empty()) {
      try {
        const nlohmann::json body = {{"x", 1}};
        co_await bus.reply_json(msgs[0], body);
        ADD_FAILURE() << "expected InvalidArgument";
      } catch (const natbus::InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("x-reply-on"), std::string::npos) << e.what();
      }
      co_await bus.reply_text(msgs[0], "explicit subject", {.subject = "elsewhere.ok"});  // works with a subject
    }
    co_await bus.close();
  }());
}

TEST(Consume, BadSubscribeInputIsAClearError) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "BADIN", "badin.*")};
    co_await bus.connect();
    auto handler = [](ReceivedMessage m) -> Task<void> { co_await m.ack(); };
    auto expect_invalid = [&](Task<natbus::Subscription> t, const char* needle) -> Task<void> {
      try {
        (void)co_await std::move(t);
        ADD_FAILURE() << "expected InvalidArgument about " << needle;
      } catch (const natbus::InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      }
    };
    auto run_invalid = [&](auto make, const char* needle) -> Task<void> {
      try {
        co_await expect_invalid(make(), needle);
      } catch (const natbus::InvalidArgument& e) {  // thrown before the task exists
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      }
    };
    co_await run_invalid([&] { return bus.push_subscribe("badin.*", handler, {}); }, "durable is required");
    co_await run_invalid([&] { return bus.push_subscribe("badin.*", handler, {.durable = "a.b"}); }, "\"a.b\"");
    co_await run_invalid([&] { return bus.push_subscribe("badin.*", handler, {.durable = "a b"}); }, "whitespace");
    co_await run_invalid([&] { return bus.push_subscribe("badin.*", handler, {.durable = "a>"}); }, "'>'");
    co_await run_invalid([&] { return bus.push_subscribe("badin.*", handler, {.durable = "ok", .queue = "two words"}); }, "queue");
    co_await run_invalid([&] { return bus.push_subscribe("", handler, {.durable = "ok"}); }, "subject");
    co_await run_invalid([&] { return bus.push_subscribe("badin.*", handler, {.durable = "ok", .ack_wait = 0ms}); }, "ack_wait");
    co_await run_invalid([&] { return bus.push_subscribe("badin.*", handler, {.durable = "ok", .max_concurrency = 0}); },
                         "max_concurrency");
    co_await run_invalid([&] { return bus.pull_subscribe("badin.*", handler, {.durable = "ok", .batch = 0}); }, "batch");
    co_await run_invalid([&] { return bus.pull_subscribe("badin.*", handler, {.durable = "ok", .expires = -1s}); }, "expires");
    co_await run_invalid(
        [&] {
          return bus.push_subscribe("badin.*", handler, {.durable = "ok", .deliver_policy = natbus::DeliverPolicy::by_start_sequence});
        },
        "start_sequence");
    auto fetcher = co_await bus.pull_subscribe("badin.*", {.durable = "f"});
    EXPECT_THROW((void)fetcher.fetch(0, 1s), natbus::InvalidArgument);
    EXPECT_THROW((void)fetcher.fetch(1, 0ms), natbus::InvalidArgument);
    try {
      auto s = co_await bus.push_subscribe("nostream.*", handler, {.durable = "ok"});
      ADD_FAILURE() << "subscribed to a subject the stream does not capture";
    } catch (const natbus::InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("does not capture subject nostream.*"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("badin.*"), std::string::npos) << e.what();
    }
    co_await bus.close();
  }());
}

// ---- durables across processes ------------------------------------------------------------------

namespace {
std::vector<std::string> consumer_args(const NatsServer& server, const std::string& durable, const std::string& queue, int n,
                                       const std::string& kind = "push") {
  return {NATBUS_TEST_CONSUMER, server.url(), "RESUME", "resume.*", durable, queue, std::to_string(n), kind};
}
}  // namespace

TEST(Durable, ResumesInANewProcessWhereTheOldOneLeftOff) {
  NatsServer server;
  NatsConfig cfg = consume_config(server, "RESUME", "resume.*");
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    co_await publish_n(bus, "resume.a", 5);
    co_await bus.close();
  }());
  {
    ChildProcess first(consumer_args(server, "pod", "", 5));
    EXPECT_TRUE(first.wait_for_line("DONE 5", 20s)) << ::testing::PrintToString(first.output());
    EXPECT_EQ(first.wait(10s), 0);
  }
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    co_await publish_n(bus, "resume.a", 3, 5);  // published while no pod runs
    co_await bus.close();
  }());
  ChildProcess second(consumer_args(server, "pod", "", 3));
  EXPECT_TRUE(second.wait_for_line("DONE 3", 20s)) << ::testing::PrintToString(second.output());
  EXPECT_EQ(second.wait(10s), 0);
  std::vector<std::string> got;
  for (const auto& l : second.output()) {
    if (l.rfind("MSG ", 0) == 0) got.push_back(l.substr(4));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"5", "6", "7"}));  // only what the first did not ack
}

TEST(Durable, KilledPodIsReplacedWithoutAlreadyBoundAndUnackedWorkComesBack) {
  NatsServer server;
  NatsConfig cfg = consume_config(server, "RESUME", "resume.*");
  cfg.ack_wait = 2s;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    co_await publish_n(bus, "resume.a", 4);
    co_await bus.close();
  }());
  // The old pod takes the 4 messages and dies before acking them.
  ChildProcess old_pod(consumer_args(server, "killed", "", 1000), {"NOACK=1", "ACK_WAIT_MS=2000"});
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(old_pod.wait_for_line("MSG ", 20s)) << ::testing::PrintToString(old_pod.output());
  old_pod.signal(SIGKILL);
  EXPECT_EQ(old_pod.wait(10s), -SIGKILL);
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    std::map<std::string, std::uint64_t> delivered;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      delivered[std::string(m.as_text())] = m.metadata()->num_delivered;
      co_await m.ack();
    };
    const auto t0 = std::chrono::steady_clock::now();
    auto sub = co_await bus.push_subscribe("resume.*", handler, {.durable = "killed"});
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);                     // the binding of a dead pod is gone at once
    EXPECT_TRUE(co_await eventually([&] { return delivered.size() == 4; }));  // after ack_wait (2 s)
    for (const auto& [body, n] : delivered) EXPECT_GE(n, 2U) << body;
    co_await bus.close();
  }());
}

TEST(Durable, FrozenPodHoldsTheBindingUntilTheServerDropsIt) {
  // A frozen pod keeps its subscription alive on the server until the server's pings time out
  // (here ping_interval 1.5 s x ping_max 2, so 3-4.5 s: long enough that a slow sanitizer
  // build reaches the short-bind_timeout check while the frozen pod still holds the durable):
  // the new pod waits it out with backoff.
  NatsServer server(ServerOptions{.ping_interval = 1500ms, .ping_max = 2});
  NatsConfig cfg = consume_config(server, "RESUME", "resume.*");
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    co_await bus.close();
  }());
  ChildProcess frozen(consumer_args(server, "frozen", "", 1000));
  ASSERT_TRUE(frozen.wait_for_line("READY", 20s));
  frozen.signal(SIGSTOP);
  LogCapture logs;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    auto handler = [](ReceivedMessage m) -> Task<void> { co_await m.ack(); };
    // A short bind_timeout gives up with an error that says why.
    try {
      auto sub = co_await bus.push_subscribe("resume.*", handler, {.durable = "frozen", .bind_timeout = 200ms});
      ADD_FAILURE() << "bound while the frozen pod still held the durable";
    } catch (const natbus::AlreadyBoundError& e) {
      EXPECT_NE(std::string(e.what()).find("bind_timeout"), std::string::npos) << e.what();
    }
    // A long enough one succeeds once the server has dropped the frozen connection.
    const auto t0 = std::chrono::steady_clock::now();
    auto sub = co_await bus.push_subscribe("resume.*", handler, {.durable = "frozen", .bind_timeout = 20s});
    EXPECT_TRUE(sub.active());
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 15s);
    co_await bus.close();
  }());
  EXPECT_TRUE(logs.has_event("js_consumer_bound_elsewhere")) << logs.all();
  EXPECT_TRUE(logs.has_event("js_consumer_released")) << logs.all();
}

TEST(Durable, QueueGroupPodJoinsWhileAnotherIsFrozen) {
  NatsServer server;
  NatsConfig cfg = consume_config(server, "RESUME", "resume.*");
  ChildProcess frozen(consumer_args(server, "qpod", "workers", 1000));
  ASSERT_TRUE(frozen.wait_for_line("READY", 20s));
  frozen.signal(SIGSTOP);
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    int handled = 0;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      ++handled;
      co_await m.ack();
    };
    const auto t0 = std::chrono::steady_clock::now();
    auto sub = co_await bus.push_subscribe("resume.*", handler, {.durable = "qpod", .queue = "workers"});
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);  // no exclusivity with a deliver group
    co_await publish_n(bus, "resume.a", 10);
    EXPECT_TRUE(co_await eventually([&] { return handled > 0; }));
    co_await bus.close();
  }());
}

#ifdef NATBUS_EXAMPLE_ORDERS
TEST(Example, OrdersServiceRunsEndToEnd) {
  NatsServer server(ServerOptions{.user = "nats-user", .password = "changeme"});
  ChildProcess service({NATBUS_EXAMPLE_ORDERS}, {"NATS_SERVER=" + server.url(), "NATS_USERNAME=nats-user", "NATS_PASSWORD=changeme"});
  int push = 0;
  int pull = 0;
  bool json_text = false;
  bool jpeg_binary = false;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while ((push < 2 || pull < 2 || !json_text || !jpeg_binary) && std::chrono::steady_clock::now() < deadline) {
    auto line = service.read_line(1s);
    if (!line) continue;
    if (line->rfind("PUSH RX: test.stream", 0) == 0) ++push;
    if (line->rfind("PULL RX: test.stream", 0) == 0) ++pull;
    if (*line == R"(  text: {"hello":"world"})") json_text = true;
    if (line->find("binary payload: 16 bytes") != std::string::npos) jpeg_binary = true;
  }
  EXPECT_EQ(push, 2) << ::testing::PrintToString(service.output());
  EXPECT_EQ(pull, 2);
  EXPECT_TRUE(json_text);
  EXPECT_TRUE(jpeg_binary);
  bool typed = false;
  bool sender = false;
  for (const auto& l : service.output()) {
    if (l.find("content_type=image/jpeg") != std::string::npos) typed = true;
    if (l.find("sender=orders-svc") != std::string::npos) sender = true;
  }
  EXPECT_TRUE(typed);
  EXPECT_TRUE(sender);
  service.signal(SIGTERM);
  EXPECT_EQ(service.wait(20s), 0);
  EXPECT_EQ(service.output().back(), "CLOSED");
}
#endif

// The one handler convention: every subscription kind takes the message by reference, and the
// message stays valid across the handler's suspensions until its task has finished.
TEST(Consume, HandlersTakeTheMessageByReferenceOnEveryKind) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "BYREF", "byref.*")};
    co_await bus.connect();
    std::set<std::string> seen;
    auto record = [&seen](std::string_view kind, ReceivedMessage& m) -> Task<void> {
      co_await natbus::sleep(20ms);  // suspended: `m` must still be the message afterwards
      seen.insert(std::string(kind) + " " + std::string(m.as_text()));
      if (m.is_jetstream()) co_await m.ack();
    };
    auto on_push = [&](ReceivedMessage& m) -> Task<void> { co_await record("push", m); };
    auto on_pull = [&](ReceivedMessage& m) -> Task<void> { co_await record("pull", m); };
    auto on_ephemeral = [&](ReceivedMessage& m) -> Task<void> { co_await record("ephemeral", m); };
    auto on_core = [&](ReceivedMessage& m) -> Task<void> { co_await record("core", m); };
    auto push = co_await bus.push_subscribe("byref.push", on_push, {.durable = "byref_push"});
    auto pull = co_await bus.pull_subscribe("byref.pull", on_pull, {.durable = "byref_pull"});
    auto ephemeral = co_await bus.ephemeral_push_subscribe("byref.eph", on_ephemeral, {.deliver_policy = natbus::DeliverPolicy::all});
    auto core = co_await bus.subscribe_core("core.byref", on_core);
    co_await publish_n(bus, "byref.push", 1);
    co_await publish_n(bus, "byref.pull", 1);
    co_await publish_n(bus, "byref.eph", 1);
    auto plain = BusMessage::from_text("core.byref", "0");
    co_await bus.publish_core(std::move(plain));
    EXPECT_TRUE(co_await eventually([&] { return seen.size() == 4; }, 10s));
    EXPECT_EQ(seen, (std::set<std::string>{"push 0", "pull 0", "ephemeral 0", "core 0"}));
    // The acks made through the references reached the server.
    for (const char* durable : {"byref_push", "byref_pull"}) {
      bool acked = false;
      for (int i = 0; i < 100 && !acked; ++i) {
        const auto info = co_await bus.consumer_info("BYREF", durable);
        acked = info.num_ack_pending == 0 && info.ack_floor_stream_sequence > 0;
        if (!acked) co_await natbus::sleep(20ms);
      }
      EXPECT_TRUE(acked) << durable;
    }
    co_await bus.close();
  }());
}
