// Bad input, table-driven: every case gets a clear natbus::Error naming the offending value,
// nothing crashes, nothing published before is lost, and the bus keeps working afterwards.
#include <gtest/gtest.h>

#include <functional>

#include "support/bus_test.hpp"

using namespace std::chrono_literals;
using natbus::BusMessage;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

namespace {

struct Case {
  const char* name;
  natbus::errc expected;
  const char* must_mention;  // the offending value (or the field), as the message shows it
  std::function<Task<void>(NatsBus&)> run;
};

Task<void> noop_handler(ReceivedMessage m) { co_await m.ack(); }

// Config cases construct a NatsBus; the others use the connected one.
std::vector<Case> config_cases() {
  auto config = [](std::function<void(NatsConfig&)> edit) {
    return [edit](NatsBus&) -> Task<void> {
      NatsConfig c;
      edit(c);
      NatsBus bus{c};
      co_return;
    };
  };
  return {
      {"empty server list", natbus::errc::config, "empty server list", config([](NatsConfig& c) { c.server = ""; })},
      {"garbage server list", natbus::errc::config, "\"::::\"", config([](NatsConfig& c) { c.server = "::::"; })},
      {"websocket scheme", natbus::errc::config, "WebSocket", config([](NatsConfig& c) { c.server = "wss://h:443"; })},
      {"unknown scheme", natbus::errc::config, "\"http\"", config([](NatsConfig& c) { c.server = "http://h:80"; })},
      {"mixed schemes", natbus::errc::config, "mixed schemes", config([](NatsConfig& c) { c.server = "nats://a:1,tls://b:2"; })},
      {"port out of range", natbus::errc::config, "65536", config([](NatsConfig& c) { c.server = "h:65536"; })},
      {"port not a number", natbus::errc::config, "\"x1\"", config([](NatsConfig& c) { c.server = "h:x1"; })},
      {"stream_create without name", natbus::errc::config, "stream_name", config([](NatsConfig& c) {
         c.stream_create = true;
         c.stream_subjects = {"a"};
       })},
      {"stream_create without subjects", natbus::errc::config, "stream_subjects", config([](NatsConfig& c) {
         c.stream_create = true;
         c.stream_name = "S";
       })},
      {"negative ack_wait", natbus::errc::config, "ack_wait", config([](NatsConfig& c) { c.ack_wait = -1s; })},
      {"zero js_api_timeout", natbus::errc::config, "js_api_timeout", config([](NatsConfig& c) { c.js_api_timeout = 0ms; })},
      {"zero max_ack_pending", natbus::errc::config, "max_ack_pending", config([](NatsConfig& c) { c.max_ack_pending = 0; })},
      {"queue group with spaces", natbus::errc::config, "\"my group\"", config([](NatsConfig& c) { c.queue_group = "my group"; })},
      {"stream name with a dot", natbus::errc::config, "\"A.B\"", config([](NatsConfig& c) { c.stream_name = "A.B"; })},
  };
}

std::vector<Case> publish_cases() {
  auto publish_text = [](std::string subject) {
    return [subject](NatsBus& bus) -> Task<void> {
      auto m = BusMessage::from_text(subject, "x");
      co_await bus.publish(std::move(m));
    };
  };
  return {
      {"empty subject", natbus::errc::invalid_argument, "subject \"\"", publish_text("")},
      {"subject with a space", natbus::errc::invalid_argument, "\"bad subject\"", publish_text("bad subject")},
      {"wildcard subject *", natbus::errc::invalid_argument, "\"in.*\"", publish_text("in.*")},
      {"wildcard subject >", natbus::errc::invalid_argument, "\"in.>\"", publish_text("in.>")},
      {"empty token", natbus::errc::invalid_argument, "\"in..x\"", publish_text("in..x")},
      {"subject with a tab", natbus::errc::invalid_argument, "\\x09", publish_text("in.\tx")},
      {"payload over max_payload", natbus::errc::payload_too_large, "65536",
       [](NatsBus& bus) -> Task<void> {
         auto m = BusMessage::from_bytes("in.big", std::string(70000, 'x'));
         co_await bus.publish(std::move(m));
       }},
      {"header name with CR/LF", natbus::errc::invalid_argument, "CR or LF",
       [](NatsBus& bus) -> Task<void> {
         auto m = BusMessage::from_text("in.a", "x", {.headers = {{"x-bad\r\nInjected", "1"}}});
         co_await bus.publish(std::move(m));
       }},
      {"header value with LF", natbus::errc::invalid_argument, "CR or LF",
       [](NatsBus& bus) -> Task<void> {
         auto m = BusMessage::from_text("in.a", "x");
         m.set_header("x-note", "line1\nline2");
         co_await bus.publish(std::move(m));
       }},
      {"non-ASCII header value", natbus::errc::invalid_argument, "non-ASCII",
       [](NatsBus& bus) -> Task<void> {
         auto m = BusMessage::from_text("in.a", "x", {.sender = "caf\xc3\xa9"});
         co_await bus.publish(std::move(m));
       }},
      {"JSON with invalid UTF-8", natbus::errc::invalid_argument, "JSON",
       [](NatsBus& bus) -> Task<void> {
         const nlohmann::json body = {{"name", std::string("\xff\xfe")}};
         co_await bus.publish_json("in.a", body);
       }},
      {"text that is not UTF-8", natbus::errc::invalid_argument, "UTF-8",
       [](NatsBus& bus) -> Task<void> {
         auto m = BusMessage::from_text("in.a", std::string_view("\xc3\x28", 2));
         co_await bus.publish(std::move(m));
       }},
      {"subject without a stream", natbus::errc::no_stream, "nobody.here", publish_text("nobody.here")},
  };
}

std::vector<Case> subscribe_cases() {
  return {
      {"durable with a dot", natbus::errc::invalid_argument, "\"my.durable\"",
       [](NatsBus& bus) -> Task<void> { (void)co_await bus.push_subscribe("in.*", noop_handler, {.durable = "my.durable"}); }},
      {"durable with a space", natbus::errc::invalid_argument, "\"my durable\"",
       [](NatsBus& bus) -> Task<void> { (void)co_await bus.push_subscribe("in.*", noop_handler, {.durable = "my durable"}); }},
      {"durable with a wildcard", natbus::errc::invalid_argument, "\"orders*\"",
       [](NatsBus& bus) -> Task<void> { (void)co_await bus.pull_subscribe("in.*", noop_handler, {.durable = "orders*"}); }},
      {"durable missing", natbus::errc::invalid_argument, "durable is required",
       [](NatsBus& bus) -> Task<void> { (void)co_await bus.push_subscribe("in.*", noop_handler); }},
      {"queue with a space", natbus::errc::invalid_argument, "\"two words\"",
       [](NatsBus& bus) -> Task<void> { (void)co_await bus.push_subscribe("in.*", noop_handler, {.durable = "d", .queue = "two words"}); }},
      {"zero batch", natbus::errc::invalid_argument, "batch must be >= 1, got 0",
       [](NatsBus& bus) -> Task<void> { (void)co_await bus.pull_subscribe("in.*", noop_handler, {.durable = "d", .batch = 0}); }},
      {"negative batch", natbus::errc::invalid_argument, "got -5",
       [](NatsBus& bus) -> Task<void> { (void)co_await bus.pull_subscribe("in.*", noop_handler, {.durable = "d", .batch = -5}); }},
      {"zero expires", natbus::errc::invalid_argument, "expires",
       [](NatsBus& bus) -> Task<void> { (void)co_await bus.pull_subscribe("in.*", noop_handler, {.durable = "d", .expires = 0ms}); }},
      {"negative ack_wait", natbus::errc::invalid_argument, "ack_wait",
       [](NatsBus& bus) -> Task<void> { (void)co_await bus.push_subscribe("in.*", noop_handler, {.durable = "d", .ack_wait = -1s}); }},
      {"zero concurrency", natbus::errc::invalid_argument, "max_concurrency",
       [](NatsBus& bus) -> Task<void> { (void)co_await bus.push_subscribe("in.*", noop_handler, {.durable = "d", .max_concurrency = 0}); }},
      {"subject the stream does not capture", natbus::errc::invalid_argument, "elsewhere.*",
       [](NatsBus& bus) -> Task<void> {
         (void)co_await bus.push_subscribe("elsewhere.*", noop_handler, {.durable = "d", .stream = "IN"});
       }},
      {"durable of the wrong kind", natbus::errc::consumer_kind, "PUSH",
       [](NatsBus& bus) -> Task<void> { (void)co_await bus.pull_subscribe("in.*", noop_handler, {.durable = "existing_push"}); }},
      {"fetch batch zero", natbus::errc::invalid_argument, "got 0",
       [](NatsBus& bus) -> Task<void> {
         auto sub = co_await bus.pull_subscribe("in.*", {.durable = "fetcher"});
         co_await sub.fetch(0, 1s);
       }},
      {"reply without reply headers", natbus::errc::invalid_argument, "x-reply-on",
       [](NatsBus& bus) -> Task<void> {
         auto sub = co_await bus.pull_subscribe("in.*", {.durable = "replier", .deliver_policy = natbus::DeliverPolicy::all});
         auto msgs = co_await sub.fetch(1, 2s);
         if (msgs.empty()) throw std::runtime_error("no message to reply to");
         const nlohmann::json body = {{"ok", true}};
         co_await bus.reply_json(msgs[0], body);
       }},
      {"management with a bad stream name", natbus::errc::invalid_argument, "\"a b\"",
       [](NatsBus& bus) -> Task<void> { co_await bus.stream_info("a b"); }},
      {"stream that does not exist", natbus::errc::not_found, "NOPE", [](NatsBus& bus) -> Task<void> { co_await bus.stream_info("NOPE"); }},
  };
}

}  // namespace

TEST(BadInput, EveryCaseIsAClearErrorAndTheBusKeepsWorking) {
  NatsServer server(ServerOptions{.max_payload = 65536});
  NatsConfig cfg = config_for(server);
  cfg.stream_create = true;
  cfg.stream_name = "IN";
  cfg.stream_subjects = {"in.*"};
  cfg.deliver_policy = natbus::DeliverPolicy::all;
  std::vector<Case> cases = config_cases();
  for (auto& c : publish_cases()) cases.push_back(std::move(c));
  for (auto& c : subscribe_cases()) cases.push_back(std::move(c));
  int tried = 0;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    auto before = BusMessage::from_text("in.before", "kept");
    co_await bus.publish(std::move(before));
    auto existing = co_await bus.push_subscribe("in.*", noop_handler, {.durable = "existing_push"});
    for (const auto& c : cases) {
      ++tried;
      std::string what;
      bool right_kind = false;
      try {
        co_await c.run(bus);
        ADD_FAILURE() << c.name << ": no error";
      } catch (const natbus::Error& e) {
        what = e.what();
        right_kind = e.code() == c.expected;
      } catch (const std::exception& e) {
        ADD_FAILURE() << c.name << ": not a natbus::Error: " << e.what();
      }
      EXPECT_TRUE(right_kind) << c.name << ": " << what;
      EXPECT_NE(what.find(c.must_mention), std::string::npos) << c.name << ": \"" << c.must_mention << "\" not in: " << what;
      EXPECT_TRUE(bus.connected()) << c.name;
    }
    // Nothing lost, and the bus still publishes and consumes.
    auto after = BusMessage::from_text("in.after", "still works");
    co_await bus.publish(std::move(after));
    auto sub = co_await bus.pull_subscribe("in.*", {.durable = "checker", .deliver_policy = natbus::DeliverPolicy::all});
    std::vector<std::string> got;
    for (int i = 0; i < 10 && got.size() < 2; ++i) {
      for (auto& m : co_await sub.fetch(10, 1s)) {
        got.emplace_back(m.as_text());
        co_await m.ack();
      }
    }
    EXPECT_EQ(got, (std::vector<std::string>{"kept", "still works"}));
    co_await bus.close();
  }());
  std::printf("[bad-input] %d cases, each a clear natbus::Error, bus usable afterwards\n", tried);
}

TEST(BadInput, MaxDurationsNeitherOverflowNorHang) {
  // milliseconds::max() for every timeout and duration: no arithmetic overflow (UBSan watches
  // the sanitizer build), nothing that should complete hangs, and what the server computes with
  // (pull expiry, heartbeats) is refused with the field named.
  constexpr auto kMax = std::chrono::milliseconds::max();
  NatsServer server;
  NatsConfig cfg = config_for(server);
  cfg.stream_create = true;
  cfg.stream_name = "MAXDUR";
  cfg.stream_subjects = {"maxdur.*"};
  cfg.deliver_policy = natbus::DeliverPolicy::all;
  cfg.publish_timeout = kMax;
  cfg.ack_wait = kMax;
  cfg.bind_timeout = kMax;
  cfg.connect_timeout = kMax;
  cfg.ping_interval = kMax;
  cfg.reconnect_time_wait = kMax;
  cfg.dedupe_window = kMax;
  cfg.drain_timeout = kMax;
  natbus::ConnectionStatus seen_after_close = natbus::ConnectionStatus::connected;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    auto m1 = BusMessage::from_text("maxdur.a", "one", {.correlation_id = "c1"});
    const natbus::PubAck a = co_await bus.publish(std::move(m1));
    EXPECT_EQ(a.sequence, 1U);
    auto m2 = BusMessage::from_text("maxdur.a", "two");
    auto f = co_await bus.publish_async(std::move(m2));
    co_await bus.publish_async_complete(kMax);
    (void)co_await std::move(f);
    co_await bus.flush(kMax);
    auto on_req = [](ReceivedMessage&) -> Task<nlohmann::json> { co_return nlohmann::json{{"ok", true}}; };
    auto svc = co_await bus.serve("maxsvc.x", on_req);
    auto req = BusMessage::from_json("maxsvc.x", nlohmann::json{{"q", 1}});
    const ReceivedMessage answer = co_await bus.request(std::move(req), kMax);
    EXPECT_EQ(answer.as_json()["ok"], true);
    auto pull = co_await bus.pull_subscribe("maxdur.*", {.durable = "maxdur_pull", .ack_wait = kMax});
    auto got = co_await pull.fetch(1, kMax);
    EXPECT_EQ(got.size(), 1U);
    if (!got.empty()) co_await got.front().nak(kMax);
    // Refused with the field named: durations natbus and the server compute with.
    std::string what;
    try {
      (void)co_await bus.pull_subscribe("maxdur.*", {.durable = "maxdur_pull2", .expires = kMax});
    } catch (const natbus::InvalidArgument& e) {
      what = e.what();
    }
    EXPECT_NE(what.find("expires"), std::string::npos) << what;
    what.clear();
    try {
      (void)co_await bus.push_subscribe("maxdur.*", noop_handler, {.durable = "maxdur_push", .idle_heartbeat = kMax});
    } catch (const natbus::InvalidArgument& e) {
      what = e.what();
    }
    EXPECT_NE(what.find("idle_heartbeat"), std::string::npos) << what;
    auto sleeper = natbus::sleep(kMax);  // a deadline at the end of time, not an overflow
    (void)sleeper;
    // status_changed with no deadline completes on the next change.
    natbus::spawn([](NatsBus& b, natbus::ConnectionStatus& out) -> Task<void> {
      out = co_await b.status_changed(natbus::ConnectionStatus::connected, std::chrono::milliseconds::max());
    }(bus, seen_after_close));
    co_await natbus::yield();
    co_await bus.close();
    co_await natbus::yield();
  }());
  EXPECT_NE(seen_after_close, natbus::ConnectionStatus::connected);
}
