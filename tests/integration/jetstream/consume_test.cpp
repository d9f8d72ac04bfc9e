// Push and pull consumers against a real server: delivery in order, queue groups, one durable
// per process, stopping (what was in flight goes back), closing, concurrency, reconciliation,
// ephemeral consumers, pull backpressure, replies, bad input, and the handler forms.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "bus/bus_core.hpp"
#include "support/bus_test.hpp"

using namespace std::chrono_literals;
using natbus::BusMessage;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

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
