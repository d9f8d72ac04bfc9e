// Core NATS next to JetStream: publish_core / subscribe_core (with queue groups), request /
// serve (correlation and trace carried back, handler errors, no responders, timeouts).
#include <gtest/gtest.h>

#include <set>

#include "bus/bus_core.hpp"
#include "support/bus_test.hpp"

using namespace std::chrono_literals;
using natbus::BusMessage;
using natbus::NatsBus;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

TEST(Core, PublishCoreReachesSubscribersAndQueueGroupsSplit) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    std::vector<std::string> all;
    std::multiset<int> group;
    int a = 0;
    int b = 0;
    auto on_all = [&](ReceivedMessage m) -> Task<void> {
      all.emplace_back(m.as_json().at("n").dump() + "/" + std::string(m.sender()));
      co_return;
    };
    auto on_a = [&](ReceivedMessage m) -> Task<void> {
      group.insert(m.as_json().at("n").get<int>());
      ++a;
      co_return;
    };
    auto on_b = [&](ReceivedMessage m) -> Task<void> {
      group.insert(m.as_json().at("n").get<int>());
      ++b;
      co_return;
    };
    auto s_all = co_await bus.subscribe_core("core.events.*", on_all);
    auto s_a = co_await bus.subscribe_core("core.events.>", on_a, {.queue = "workers"});
    auto s_b = co_await bus.subscribe_core("core.events.>", on_b, {.queue = "workers"});
    for (int i = 0; i < 100; ++i) {
      const nlohmann::json body{{"n", i}};
      auto msg = BusMessage::from_json("core.events.x", body, {.sender = "core-test"});
      co_await bus.publish_core(std::move(msg));
    }
    const bool done = co_await eventually([&] { return all.size() == 100 && group.size() == 100; });
    EXPECT_TRUE(done) << all.size() << " " << group.size();
    EXPECT_EQ(all.front(), "0/core-test");
    std::multiset<int> want;
    for (int i = 0; i < 100; ++i) want.insert(i);
    EXPECT_EQ(group, want) << "each message reaches exactly one member of the queue group";
    EXPECT_EQ(a + b, 100);
    co_await bus.close();
  }());
}

// A publisher that never has to suspend (publish_core completes at once) used to append every
// message to cnats' write buffer and leave the writing to the end of the loop iteration, which
// its loop never reached: the buffer held the whole burst, and each partial write moved all of
// it. Now the buffer stays near its high water mark and a subscriber on the same loop keeps up.
TEST(Core, APublisherThatOutrunsTheSocketIsHeldBackAndNothingIsLost) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus publisher{config_for(server)};
    NatsBus receiver{config_for(server)};
    co_await publisher.connect();
    co_await receiver.connect();
    constexpr int kMessages = 50000;
    const std::string payload(1024, 'x');
    int got = 0;
    auto count = [&got](ReceivedMessage&) -> Task<void> {
      ++got;
      co_return;
    };
    auto sub = co_await receiver.subscribe_core("core.burst", count);
    natsConnection* nc = natbus::detail::bus_core_of(publisher)->nc();
    int most_buffered = 0;
    for (int i = 0; i < kMessages; ++i) {
      auto msg = BusMessage::from_bytes("core.burst", payload);
      co_await publisher.publish_core(std::move(msg));
      most_buffered = std::max(most_buffered, natsConnection_Buffered(nc));
    }
    const bool all = co_await eventually([&] { return got == kMessages; }, 60s);
    EXPECT_TRUE(all) << "received " << got << " of " << kMessages;
    // The high water mark (1 MiB) plus what one publish adds; before: the whole burst (~60 MB).
    EXPECT_LE(most_buffered, natbus::detail::BusCore::kWriteHighWater + 4096) << "bytes waiting in cnats' write buffer";
    co_await sub.close();
    co_await receiver.close();
    co_await publisher.close();
  }());
}

TEST(Core, RequestServeCarriesCorrelationTraceAndErrors) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus service{config_for(server)};
    NatsBus client{config_for(server)};
    co_await service.connect();
    co_await client.connect();
    auto on_price = [](ReceivedMessage& m) -> Task<nlohmann::json> {
      const auto item = m.as_json().at("item").get<std::string>();
      if (item == "unknown") throw std::runtime_error("no price for " + item);
      co_return nlohmann::json{{"item", item}, {"price", 12.5}};
    };
    auto svc = co_await service.serve("core.prices", on_price, {.queue = "prices"});

    const nlohmann::json book{{"item", "book"}};
    auto req = BusMessage::from_json("core.prices", book, {.correlation_id = "corr-9", .trace_id = "trace-9"});
    const ReceivedMessage answer = co_await client.request(std::move(req), 5s);
    EXPECT_EQ(answer.as_json(), (nlohmann::json{{"item", "book"}, {"price", 12.5}}));
    EXPECT_EQ(answer.correlation_id(), "corr-9");
    EXPECT_EQ(answer.trace_id(), "trace-9");
    EXPECT_EQ(answer.content_type(), "application/json");

    const nlohmann::json unknown{{"item", "unknown"}};
    auto bad = BusMessage::from_json("core.prices", unknown);
    std::string remote;
    try {
      (void)co_await client.request(std::move(bad), 5s);
    } catch (const natbus::RemoteError& e) {
      remote = e.what();
    }
    EXPECT_NE(remote.find("no price for unknown"), std::string::npos) << remote;

    auto nobody = BusMessage::from_text("core.nobody", "hello?");
    bool no_responders = false;
    try {
      (void)co_await client.request(std::move(nobody), 5s);
    } catch (const natbus::NoRespondersError&) {
      no_responders = true;
    }
    EXPECT_TRUE(no_responders);

    // A subscriber that never answers: the request times out.
    auto silent = [](ReceivedMessage) -> Task<void> { co_return; };
    auto s_silent = co_await service.subscribe_core("core.silent", silent);
    auto quiet = BusMessage::from_text("core.silent", "anyone?");
    const auto t0 = std::chrono::steady_clock::now();
    bool timed_out = false;
    try {
      (void)co_await client.request(std::move(quiet), 300ms);
    } catch (const natbus::TimeoutError&) {
      timed_out = true;
    }
    EXPECT_TRUE(timed_out);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 290ms);

    // Many requests in a row: each answered, in order.
    for (int i = 0; i < 200; ++i) {
      const nlohmann::json pen{{"item", "pen" + std::to_string(i)}};
      auto r = BusMessage::from_json("core.prices", pen);
      const ReceivedMessage a = co_await client.request(std::move(r), 5s);
      EXPECT_EQ(a.as_json().at("item"), "pen" + std::to_string(i));
    }
    co_await client.close();
    co_await service.close();
  }());
}

namespace {

/// One request's outcome as text: "reply <item>", "no responders" or "timeout".
Task<std::string> ask(NatsBus& bus, std::string subject, std::chrono::milliseconds timeout) {
  const nlohmann::json body{{"item", subject}};
  auto req = BusMessage::from_json(subject, body);
  try {
    const ReceivedMessage a = co_await bus.request(std::move(req), timeout);
    co_return "reply " + a.as_json().at("item").get<std::string>();
  } catch (const natbus::NoRespondersError&) {
    co_return "no responders";
  } catch (const natbus::TimeoutError&) {
    co_return "timeout";
  }
}

}  // namespace

// Requests share the bus' reply inbox; a "no responders" status names no request, so natbus
// must still hand each one to the request it answers: with requests in flight together, after
// requests that timed out or were interrupted (a late 503 must not answer a newer request),
// and in long alternating runs.
TEST(Core, EveryRequestGetsItsOwnAnswerWhenSomeHaveNoResponders) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus service{config_for(server)};
    NatsBus client{config_for(server)};
    co_await service.connect();
    co_await client.connect();
    auto slow = [](ReceivedMessage& m) -> Task<nlohmann::json> {
      co_await natbus::sleep(200ms);
      co_return m.as_json();
    };
    auto fast = [](ReceivedMessage& m) -> Task<nlohmann::json> { co_return m.as_json(); };
    auto s_slow = co_await service.serve("solo.slow", slow, {.max_concurrency = 4});
    auto s_fast = co_await service.serve("solo.fast", fast);

    auto [a1, b1] = co_await natbus::when_all(ask(client, "solo.slow", 5s), ask(client, "solo.nobody", 5s));
    EXPECT_EQ(a1, "reply solo.slow");
    EXPECT_EQ(b1, "no responders");
    auto [a2, b2] = co_await natbus::when_all(ask(client, "solo.nobody", 5s), ask(client, "solo.slow", 5s));
    EXPECT_EQ(a2, "no responders");
    EXPECT_EQ(b2, "reply solo.slow");

    // Ended by its own timeout, then by a with_timeout: what follows is still answered right.
    const std::string got1 = co_await ask(client, "solo.slow", 50ms);
    EXPECT_EQ(got1, "timeout");
    const std::string got2 = co_await ask(client, "solo.fast", 5s);
    EXPECT_EQ(got2, "reply solo.fast");
    const std::string got3 = co_await ask(client, "solo.nobody", 5s);
    EXPECT_EQ(got3, "no responders");
    bool interrupted = false;
    try {
      (void)co_await natbus::with_timeout(ask(client, "solo.slow", 5s), 50ms);
    } catch (const natbus::TimeoutError&) {
      interrupted = true;
    }
    EXPECT_TRUE(interrupted);
    const std::string got4 = co_await ask(client, "solo.nobody", 5s);
    EXPECT_EQ(got4, "no responders");
    const std::string got5 = co_await ask(client, "solo.fast", 5s);
    EXPECT_EQ(got5, "reply solo.fast");

    for (int i = 0; i < 100; ++i) {
      const std::string subject = i % 3 == 0 ? "solo.nobody" : "solo.fast";
      const std::string want = i % 3 == 0 ? "no responders" : "reply solo.fast";
      const std::string got6 = co_await ask(client, subject, 5s);
      EXPECT_EQ(got6, want) << "request " << i;
    }
    co_await client.close();
    co_await service.close();
  }());
}

TEST(Core, BadInputIsAClearError) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    auto h = [](ReceivedMessage) -> Task<void> { co_return; };
    bool bad_subject = false;
    try {
      (void)co_await bus.subscribe_core("bad subject", h);
    } catch (const natbus::InvalidArgument& e) {
      bad_subject = std::string(e.what()).find("bad subject") != std::string::npos;
    }
    EXPECT_TRUE(bad_subject);
    bool bad_queue = false;
    try {
      (void)co_await bus.subscribe_core("core.x", h, {.queue = "a b"});
    } catch (const natbus::InvalidArgument& e) {
      bad_queue = std::string(e.what()).find("queue") != std::string::npos;
    }
    EXPECT_TRUE(bad_queue);
    bool wildcard_publish = false;
    try {
      co_await bus.publish_core(BusMessage::from_text("core.*", "x"));
    } catch (const natbus::InvalidArgument& e) {
      wildcard_publish = std::string(e.what()).find("core.*") != std::string::npos;
    }
    EXPECT_TRUE(wildcard_publish);
    bool bad_timeout = false;
    try {
      (void)co_await bus.request(BusMessage::from_text("core.x", "x"), 0ms);
    } catch (const natbus::InvalidArgument& e) {
      bad_timeout = std::string(e.what()).find("timeout") != std::string::npos;
    }
    EXPECT_TRUE(bad_timeout);
    co_await bus.close();
  }());
}
