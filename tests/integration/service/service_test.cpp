// NATS services (ADR-32): discovery ($SRV.PING / INFO / STATS on every subject level), endpoints
// in queue groups and groups, errors in the Nats-Service-Error headers, statistics, stop().
#include <gtest/gtest.h>

#include <future>
#include <regex>

#include "support/bus_test.hpp"
#include "support/child_process.hpp"

using namespace std::chrono_literals;
using natbus::BusMessage;
using natbus::NatsBus;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

namespace {

/// The JSON a discovery request gets back.
Task<nlohmann::json> discover(NatsBus& bus, const std::string& subject) {
  auto msg = BusMessage::from_text(subject, "");
  ReceivedMessage r = co_await bus.request(std::move(msg), 5s);
  co_return r.as_json();
}

/// The answer to a request, or "error <code> <text>" / "no responders".
Task<std::string> call(NatsBus& bus, const std::string& subject, const std::string& text) {
  const std::string trace = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736";
  const std::string corr = "corr-" + text;
  auto msg = BusMessage::from_text(subject, text, {.correlation_id = corr, .trace_id = trace});
  try {
    ReceivedMessage r = co_await bus.request(std::move(msg), 5s);
    // The natbus message contract holds on every answer: the request's trace goes back too.
    if (r.trace_id() != trace) co_return "wrong trace " + std::string(r.trace_id());
    co_return std::string(r.correlation_id()) + " " + std::string(r.as_text());
  } catch (const natbus::RemoteError& e) {
    co_return "error " + std::to_string(e.context().service_code) + " " + e.message();
  } catch (const natbus::NoRespondersError&) {
    co_return "no responders";
  } catch (const natbus::TimeoutError&) {
    co_return "timeout";
  }
}

constexpr natbus::Header kRegion[] = {{"region", "eu"}};
constexpr natbus::ServiceConfig kPrices{.name = "prices", .version = "1.2.3-rc.1", .description = "price quotes", .metadata = kRegion};

}  // namespace

TEST(Service, DiscoveryAnswersPingInfoAndStatsForAllByNameAndById) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    auto echo = [](ReceivedMessage& m) -> Task<nlohmann::json> { co_return nlohmann::json{{"got", std::string(m.as_text())}}; };
    const natbus::Header region[] = {{"region", "eu"}};
    natbus::Service svc =
        co_await bus.add_service({.name = "prices", .version = "1.2.3-rc.1", .description = "price quotes", .metadata = region});
    const std::vector<natbus::Header> kind{{"kind", "read"}};
    co_await svc.add_endpoint("get", echo, {.metadata = kind});
    natbus::ServiceGroup v1 = svc.add_group("prices.v1", "v1-workers");
    co_await v1.add_endpoint("quote", echo);
    co_await v1.add_endpoint("fanout", echo, {.subject = "all.*", .no_queue_group = true});

    EXPECT_EQ(svc.id().size(), 22U);
    EXPECT_TRUE(std::regex_match(svc.id(), std::regex("[0-9A-Za-z]{22}"))) << svc.id();
    const std::vector<std::string> verbs{"PING", "INFO", "STATS"};
    for (const std::string& verb : verbs) {
      const std::vector<std::string> subjects{"$SRV." + verb, "$SRV." + verb + ".prices", "$SRV." + verb + ".prices." + svc.id()};
      for (const std::string& subject : subjects) {
        const nlohmann::json j = co_await discover(bus, subject);
        std::string want_type = verb;
        std::transform(want_type.begin(), want_type.end(), want_type.begin(), [](char c) { return static_cast<char>(std::tolower(c)); });
        EXPECT_EQ(j.value("type", ""), "io.nats.micro.v1." + want_type + "_response") << subject << ": " << j.dump();
        EXPECT_EQ(j.value("name", ""), "prices") << subject;
        EXPECT_EQ(j.value("id", ""), svc.id()) << subject;
        EXPECT_EQ(j.value("version", ""), "1.2.3-rc.1") << subject;
        EXPECT_EQ(j.at("metadata"), (nlohmann::json{{"region", "eu"}})) << subject;
      }
    }
    const nlohmann::json info = co_await discover(bus, "$SRV.INFO.prices");
    EXPECT_EQ(info.value("description", ""), "price quotes");
    const nlohmann::json want_endpoints = nlohmann::json::parse(R"([
      {"name": "get", "subject": "get", "queue_group": "q", "metadata": {"kind": "read"}},
      {"name": "quote", "subject": "prices.v1.quote", "queue_group": "v1-workers", "metadata": {}},
      {"name": "fanout", "subject": "prices.v1.all.*", "queue_group": "", "metadata": {}}])");
    EXPECT_EQ(info.at("endpoints"), want_endpoints) << info.dump();
    const nlohmann::json stats = co_await discover(bus, "$SRV.STATS.prices." + svc.id());
    EXPECT_TRUE(std::regex_match(stats.value("started", ""), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z)"))) << stats.dump();
    EXPECT_EQ(stats.at("endpoints").size(), 3U);
    EXPECT_EQ(stats.at("endpoints").at(1).value("subject", ""), "prices.v1.quote");

    // The endpoints answer on their subjects; another name or id is not this service.
    const std::string a = co_await call(bus, "prices.v1.quote", "x");
    EXPECT_EQ(a, R"(corr-x {"got":"x"})");
    const std::string b = co_await call(bus, "prices.v1.all.eu", "y");
    EXPECT_EQ(b, R"(corr-y {"got":"y"})");
    const std::string other = co_await call(bus, "$SRV.PING.stocks", "");
    EXPECT_EQ(other, "no responders");
    const std::string other_id = co_await call(bus, "$SRV.PING.prices.notthisone", "");
    EXPECT_EQ(other_id, "no responders");
    co_await svc.stop();
    co_await bus.close();
  }());
}

TEST(Service, HandlerErrorsAnswerWithServiceHeadersAndStatisticsCountThem) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    NatsBus client{config_for(server)};
    co_await bus.connect();
    co_await client.connect();
    auto lookup = [](ReceivedMessage& m) -> Task<std::string> {
      co_await natbus::sleep(2ms);
      const std::string key(m.as_text());
      if (key == "missing") throw natbus::ServiceError(404, "no price for\r\nmissing");
      if (key == "broken") throw std::runtime_error("database down");
      co_return "price of " + key;
    };
    natbus::Service svc = co_await bus.add_service(kPrices);
    co_await svc.add_endpoint("lookup", lookup);

    // What a client that is not natbus sees: the two headers (and natbus' x-error), no body.
    RawSubscriber raw(server, "raw.replies");
    EXPECT_EQ(natsConnection_PublishRequestString(raw.connection(), "lookup", "raw.replies", "missing"), NATS_OK);
    auto pending = std::async(std::launch::async, [&raw] { return raw.next(5000); });
    const bool got_raw = co_await eventually([&] { return pending.wait_for(0s) == std::future_status::ready; });
    EXPECT_TRUE(got_raw);
    if (!got_raw) co_return;
    const RawSubscriber::Msg m = pending.get();
    EXPECT_EQ(m.headers.at("Nats-Service-Error"), std::vector<std::string>{"no price for  missing"});
    EXPECT_EQ(m.headers.at("Nats-Service-Error-Code"), std::vector<std::string>{"404"});
    EXPECT_EQ(m.headers.at("x-error"), std::vector<std::string>{"no price for  missing"});
    EXPECT_EQ(m.data, "");

    int ok = 0;
    for (int i = 0; i < 5; ++i) {
      const std::string r = co_await call(client, "lookup", "k" + std::to_string(i));
      ok += r == "corr-k" + std::to_string(i) + " price of k" + std::to_string(i) ? 1 : 0;
    }
    EXPECT_EQ(ok, 5);
    const std::string missing = co_await call(client, "lookup", "missing");
    EXPECT_EQ(missing, "error 404 no price for  missing");
    const std::string broken = co_await call(client, "lookup", "broken");
    EXPECT_EQ(broken, "error 500 database down");

    const natbus::ServiceStats st = svc.stats();
    EXPECT_EQ(st.endpoints.size(), 1U);
    const natbus::EndpointStats& e = st.endpoints.at(0);
    EXPECT_EQ(e.num_requests, 8U);
    EXPECT_EQ(e.num_errors, 3U);
    EXPECT_EQ(e.last_error, "500:database down");
    EXPECT_GE(e.processing_time, 8 * 2ms);
    EXPECT_EQ(e.average_processing_time, e.processing_time / 8);
    // STATS on the wire says the same.
    const nlohmann::json wire = co_await discover(client, "$SRV.STATS.prices");
    const nlohmann::json& we = wire.at("endpoints").at(0);
    EXPECT_EQ(we.value("num_requests", 0), 8);
    EXPECT_EQ(we.value("num_errors", 0), 3);
    EXPECT_EQ(we.value("last_error", ""), "500:database down");
    EXPECT_EQ(we.value("processing_time", std::int64_t{0}), e.processing_time.count());
    EXPECT_EQ(we.value("average_processing_time", std::int64_t{0}), e.average_processing_time.count());

    svc.reset_stats();
    const nlohmann::json after = co_await discover(client, "$SRV.STATS.prices");
    const nlohmann::json& ae = after.at("endpoints").at(0);
    EXPECT_EQ(ae.value("num_requests", -1), 0);
    EXPECT_EQ(ae.value("num_errors", -1), 0);
    EXPECT_EQ(ae.value("last_error", "-"), "");
    EXPECT_EQ(ae.value("processing_time", std::int64_t{-1}), 0);
    co_await svc.stop();
    co_await client.close();
    co_await bus.close();
  }());
}

TEST(Service, TwoInstancesShareTheQueueGroupAndBothAnswerPing) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus one{config_for(server)};
    NatsBus two{config_for(server)};
    NatsBus client{config_for(server)};
    co_await one.connect();
    co_await two.connect();
    co_await client.connect();
    int on_one = 0;
    int on_two = 0;
    auto h1 = [&on_one](ReceivedMessage&) -> Task<std::string> {
      ++on_one;
      co_return "one";
    };
    auto h2 = [&on_two](ReceivedMessage&) -> Task<std::string> {
      ++on_two;
      co_return "two";
    };
    natbus::Service s1 = co_await one.add_service(kPrices);
    natbus::Service s2 = co_await two.add_service(kPrices);
    co_await s1.add_endpoint("get", h1);
    co_await s2.add_endpoint("get", h2);
    EXPECT_NE(s1.id(), s2.id());
    const nlohmann::json p1 = co_await discover(client, "$SRV.PING.prices." + s1.id());
    const nlohmann::json p2 = co_await discover(client, "$SRV.PING.prices." + s2.id());
    EXPECT_EQ(p1.value("id", ""), s1.id());
    EXPECT_EQ(p2.value("id", ""), s2.id());
    for (int i = 0; i < 200; ++i) (void)co_await call(client, "get", std::to_string(i));
    EXPECT_EQ(on_one + on_two, 200);
    EXPECT_GT(on_one, 0) << "the queue group spreads requests over both instances";
    EXPECT_GT(on_two, 0);
    EXPECT_EQ(s1.stats().endpoints.at(0).num_requests + s2.stats().endpoints.at(0).num_requests, 200U);
    co_await s1.stop();
    co_await s2.stop();
    co_await client.close();
    co_await two.close();
    co_await one.close();
  }());
}

TEST(Service, StopAnswersTheRequestsBeingHandledThenLeavesDiscovery) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    NatsBus client{config_for(server)};
    co_await bus.connect();
    co_await client.connect();
    bool release = false;
    int running = 0;
    auto slow = [&](ReceivedMessage& m) -> Task<std::string> {
      ++running;
      while (!release) co_await natbus::sleep(5ms);
      co_return "done " + std::string(m.as_text());
    };
    natbus::Service svc = co_await bus.add_service(kPrices);
    const natbus::EndpointOptions two_at_once{.max_concurrency = 2};
    co_await svc.add_endpoint("slow", slow, two_at_once);
    std::vector<std::string> answers;
    auto ask = [&](std::string text) -> Task<void> { answers.push_back(co_await call(client, "slow", text)); };
    natbus::spawn(ask("a"));
    natbus::spawn(ask("b"));
    const bool both = co_await eventually([&] { return running == 2; });
    EXPECT_TRUE(both);
    if (!both) co_return;
    bool stopped = false;
    auto stopper = [&]() -> Task<void> {
      co_await svc.stop();
      stopped = true;
    };
    natbus::spawn(stopper());
    const bool early = co_await eventually([&] { return stopped; }, 200ms);
    EXPECT_FALSE(early) << "stop() returned while requests were being handled";
    EXPECT_TRUE(svc.stopped());
    release = true;
    const bool finished = co_await eventually([&] { return stopped && answers.size() == 2; });
    EXPECT_TRUE(finished) << answers.size();
    if (!finished) co_return;
    std::sort(answers.begin(), answers.end());
    EXPECT_EQ(answers, (std::vector<std::string>{"corr-a done a", "corr-b done b"}));
    const std::string ping = co_await call(client, "$SRV.PING.prices", "");
    EXPECT_EQ(ping, "no responders");
    const std::string later = co_await call(client, "slow", "c");
    EXPECT_EQ(later, "no responders");
    bool closed = false;
    try {
      co_await svc.add_endpoint("late", slow);
    } catch (const natbus::ClosedError& e) {
      closed = std::string(e.what()).find("service 'prices' is stopped") != std::string::npos;
    }
    EXPECT_TRUE(closed);
    co_await client.close();
    co_await bus.close();
  }());
}

// Requests that had reached the service but waited for a handler (max_concurrency) were dropped
// by stop(): their requesters timed out although a queue-group peer could have answered them.
TEST(Service, StopAnswersTheRequestsAlreadyReceivedNotOnlyThoseRunning) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    NatsBus client{config_for(server)};
    co_await bus.connect();
    co_await client.connect();
    bool release = false;
    int started = 0;
    auto slow = [&](ReceivedMessage& m) -> Task<std::string> {
      ++started;
      while (!release) co_await natbus::sleep(5ms);
      co_return "done " + std::string(m.as_text());
    };
    natbus::Service svc = co_await bus.add_service(kPrices);
    co_await svc.add_endpoint("one-at-a-time", slow);
    std::vector<std::string> answers;
    auto ask = [&](std::string text) -> Task<void> { answers.push_back(co_await call(client, "one-at-a-time", text)); };
    for (int i = 0; i < 5; ++i) natbus::spawn(ask(std::to_string(i)));
    const bool first = co_await eventually([&] { return started == 1; });
    EXPECT_TRUE(first);
    // Every request has reached the service's client: the server forwarded them before it
    // answered the client's PING, and wrote them to the service's socket before its PONG.
    co_await client.flush();
    co_await bus.flush();
    bool stopped = false;
    auto stopper = [&]() -> Task<void> {
      co_await svc.stop();
      stopped = true;
    };
    natbus::spawn(stopper());
    release = true;
    const bool finished = co_await eventually([&] { return stopped && answers.size() == 5; });
    EXPECT_TRUE(finished) << answers.size();
    std::sort(answers.begin(), answers.end());
    const std::vector<std::string> want{"corr-0 done 0", "corr-1 done 1", "corr-2 done 2", "corr-3 done 3", "corr-4 done 4"};
    EXPECT_EQ(answers, want);
    EXPECT_EQ(svc.stats().endpoints.at(0).num_requests, 5U);
    co_await client.close();
    co_await bus.close();
  }());
}

TEST(Service, BadConfigurationIsRejectedNamingTheValueAndNothingSubscribes) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    auto h = [](ReceivedMessage&) -> Task<std::string> { co_return "x"; };
    auto rejected = [&](const natbus::ServiceConfig& cfg, const std::string& needle) -> Task<bool> {
      try {
        natbus::Service s = co_await bus.add_service(cfg);
      } catch (const natbus::InvalidArgument& e) {
        const bool named = std::string(e.what()).find(needle) != std::string::npos;
        EXPECT_TRUE(named) << e.what();
        co_return named;
      }
      co_return false;
    };
    const bool bad_name = co_await rejected(natbus::ServiceConfig{.name = "price list", .version = "1.0.0"}, "'price list'");
    EXPECT_TRUE(bad_name);
    const bool empty_name = co_await rejected(natbus::ServiceConfig{.name = "", .version = "1.0.0"}, "service name ''");
    EXPECT_TRUE(empty_name);
    const bool bad_version = co_await rejected(natbus::ServiceConfig{.name = "prices", .version = "1.0"}, "'1.0'");
    EXPECT_TRUE(bad_version);
    const bool bad_queue = co_await rejected(natbus::ServiceConfig{.name = "prices", .version = "1.0.0", .queue_group = "a b"}, "a b");
    EXPECT_TRUE(bad_queue);
    const std::string nobody = co_await call(bus, "$SRV.PING.prices", "");
    EXPECT_EQ(nobody, "no responders") << "a rejected service is not discoverable";

    natbus::Service svc = co_await bus.add_service(kPrices);
    auto endpoint_rejected = [&](std::string name, const natbus::EndpointOptions& o, const std::string& needle) -> Task<bool> {
      try {
        co_await svc.add_endpoint(name, h, o);
      } catch (const natbus::InvalidArgument& e) {
        co_return std::string(e.what()).find(needle) != std::string::npos;
      }
      co_return false;
    };
    const bool e1 = co_await endpoint_rejected("get it", {}, "'get it'");
    EXPECT_TRUE(e1);
    const bool e2 = co_await endpoint_rejected("get", {.subject = "a..b"}, "a..b");
    EXPECT_TRUE(e2);
    const bool e3 = co_await endpoint_rejected("get", {.queue_group = "x y"}, "x y");
    EXPECT_TRUE(e3);
    const bool e4 = co_await endpoint_rejected("get", {.max_concurrency = 0}, "max_concurrency");
    EXPECT_TRUE(e4);
    bool bad_group = false;
    try {
      (void)svc.add_group("v1.>");
    } catch (const natbus::InvalidArgument& e) {
      bad_group = std::string(e.what()).find("'v1.>'") != std::string::npos;
    }
    EXPECT_TRUE(bad_group);
    const nlohmann::json info = co_await discover(bus, "$SRV.INFO.prices");
    EXPECT_TRUE(info.at("endpoints").empty()) << "no rejected endpoint is listed: " << info.dump();
    co_await svc.stop();
    co_await bus.close();
  }());
}

#ifdef NATBUS_EXAMPLE_PRICES
TEST(Example, PriceServiceIsDiscoveredAnswersAndCounts) {
  NatsServer server(ServerOptions{.user = "nats-user", .password = "changeme"});
  ChildProcess example({NATBUS_EXAMPLE_PRICES}, {"NATS_SERVER=" + server.url(), "NATS_USERNAME=nats-user", "NATS_PASSWORD=changeme"});
  const auto last = example.wait_for_line("stats prices.v1.list", 60s);
  EXPECT_TRUE(last.has_value()) << ::testing::PrintToString(example.output());
  EXPECT_EQ(example.wait(30s), 0) << ::testing::PrintToString(example.output());
  const auto out = example.output();
  const auto has = [&out](const std::string& text) {
    return std::any_of(out.begin(), out.end(), [&text](const std::string& l) { return l.find(text) != std::string::npos; });
  };
  EXPECT_TRUE(has(R"("type":"io.nats.micro.v1.ping_response")")) << ::testing::PrintToString(out);
  EXPECT_TRUE(has(R"(prices.v1.quote book -> {"item":"book","price":12.5})")) << ::testing::PrintToString(out);
  EXPECT_TRUE(has("prices.v1.quote chair -> error 404: no price for chair")) << ::testing::PrintToString(out);
  EXPECT_TRUE(has("stats prices.v1.quote: 2 requests, 1 errors, last error '404:no price for chair'")) << ::testing::PrintToString(out);
  for (const auto& l : out) std::printf("  example| %s\n", l.c_str());
}
#endif
