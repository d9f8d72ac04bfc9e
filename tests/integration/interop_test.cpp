// Interoperability with a client natbus did not write: tests/interop/interop.go (the official
// nats.go) on the same server. Go publishes what Python natbus services send and natbus reads
// it; natbus publishes and Go checks it against tests/wire_vectors.json; both use one durable
// in turn; Go requests and natbus replies; both deduplicate on one Nats-Msg-Id; Key-Value
// buckets written by one and read and watched by the other; 50 MiB objects both ways.
#include <gtest/gtest.h>

#ifdef NATBUS_INTEROP_GO

#include <fmt/format.h>

#include <future>
#include <map>
#include <regex>
#include <set>

#include "natbus/kv.hpp"
#include "natbus/object_store.hpp"
#include "support/bus_test.hpp"
#include "support/child_process.hpp"
#include "support/wire_vectors.hpp"

using namespace std::chrono_literals;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

namespace {

struct GoRun {
  std::optional<int> status;
  std::vector<std::string> lines;
  [[nodiscard]] std::string text() const {
    std::string out;
    for (const auto& l : lines) out += "  go| " + l + "\n";
    return out;
  }
  [[nodiscard]] std::vector<std::string> starting(const std::string& prefix) const {
    std::vector<std::string> out;
    for (const auto& l : lines) {
      if (l.starts_with(prefix)) out.push_back(l);
    }
    return out;
  }
};

/// Runs the Go client to completion (bounded) and collects its output.
GoRun run_go(std::vector<std::string> args) {
  std::vector<std::string> argv{std::string(NATBUS_INTEROP_GO)};
  for (auto& a : args) argv.push_back(std::move(a));
  ChildProcess p(std::move(argv));
  GoRun r;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto line = p.read_line(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
    if (!line) break;
    r.lines.push_back(*line);
  }
  r.status = p.wait(5s);
  return r;
}

/// The Go client running on another thread while the natbus loop keeps going; awaited by polling.
Task<GoRun> go_async(std::vector<std::string> args) {
  auto fut = std::async(std::launch::async, run_go, std::move(args));
  const auto deadline = std::chrono::steady_clock::now() + 90s;
  while (fut.wait_for(0s) != std::future_status::ready && std::chrono::steady_clock::now() < deadline) co_await natbus::sleep(20ms);
  co_return fut.get();  // run_go is bounded itself, so this returns
}

NatsConfig interop_config(const NatsServer& server) {
  NatsConfig c = config_for(server);
  c.stream_create = true;
  c.stream_name = "INTEROP";
  c.stream_subjects = {"interop.>"};
  c.deliver_policy = natbus::DeliverPolicy::all;
  c.queue_group = "";
  return c;
}

/// Waits (bounded) until `done()` holds, letting the loop run.

std::string vector_name(std::string_view subject) { return std::string(subject.substr(subject.rfind('.') + 1)); }

}  // namespace

TEST(Interop, GoPublishesWhatPythonSendsNatbusPushAndPullReadIt) {
  NatsServer server;
  const std::size_t n = wire_vectors().at("read").size();
  natbus::run([&]() -> Task<void> {
    NatsBus bus{interop_config(server)};
    co_await bus.connect();
    std::vector<std::string> go_args{"publish-read", server.url(), "interop.read", NATBUS_WIRE_VECTORS};

    const GoRun go = co_await go_async(std::move(go_args));
    EXPECT_EQ(go.status, 0) << go.text();
    EXPECT_EQ(go.starting("published ").size(), n) << go.text();

    std::map<std::string, std::vector<std::string>> push_seen;
    auto on_push = [&](ReceivedMessage m) -> Task<void> {
      push_seen[vector_name(m.subject())] = check_received(wire_vector("read", vector_name(m.subject())), m);
      co_await m.ack();
    };
    auto push = co_await bus.push_subscribe("interop.read.>", on_push, {.durable = "iop_read_push"});
    std::map<std::string, std::vector<std::string>> pull_seen;
    auto pull = co_await bus.pull_subscribe("interop.read.>", {.durable = "iop_read_pull"});
    for (int i = 0; i < 20 && pull_seen.size() < n; ++i) {
      auto batch = co_await pull.fetch(static_cast<int>(n), 1s);
      for (auto& m : batch) {
        pull_seen[vector_name(m.subject())] = check_received(wire_vector("read", vector_name(m.subject())), m);
        co_await m.ack();
      }
    }
    const bool all_pushed = co_await eventually([&] { return push_seen.size() == n; });
    EXPECT_TRUE(all_pushed) << push_seen.size() << " of " << n << " pushed";
    EXPECT_EQ(pull_seen.size(), n);
    for (const auto& [name, fails] : push_seen) EXPECT_TRUE(fails.empty()) << "push, read vector " << name << ":" << join_failures(fails);
    for (const auto& [name, fails] : pull_seen) EXPECT_TRUE(fails.empty()) << "pull, read vector " << name << ":" << join_failures(fails);
    co_await bus.close();
  }());
}

TEST(Interop, NatbusPublishesEveryConstructorGoChecksTheWire) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{interop_config(server)};
    co_await bus.connect();
    for (const auto& v : wire_vectors().at("write")) {
      auto ack = co_await bus.publish(build_write_vector(v, "interop.write." + v.at("name").get<std::string>()));
      EXPECT_FALSE(ack.duplicate);
    }
    std::vector<std::string> go_args{"check-write", server.url(), "interop.write", NATBUS_WIRE_VECTORS};

    const GoRun go = co_await go_async(std::move(go_args));
    EXPECT_EQ(go.status, 0) << go.text();
    EXPECT_EQ(go.starting("ok ").size(), wire_vectors().at("write").size()) << go.text();
    EXPECT_TRUE(go.starting("FAIL").empty()) << go.text();
    co_await bus.close();
  }());
}

namespace {

struct GoGot {
  std::vector<std::uint64_t> seqs;
  std::vector<std::uint64_t> delivered;
};

GoGot parse_got(const GoRun& go) {
  GoGot g;
  const std::regex re(R"(^got seq=(\d+) delivered=(\d+) data=.*$)");
  for (const auto& l : go.starting("got ")) {
    std::smatch m;
    if (std::regex_match(l, m, re)) {
      g.seqs.push_back(std::stoull(m[1]));
      g.delivered.push_back(std::stoull(m[2]));
    }
  }
  std::sort(g.seqs.begin(), g.seqs.end());
  return g;
}

std::vector<std::uint64_t> range(std::uint64_t from, std::uint64_t to) {
  std::vector<std::uint64_t> out;
  for (auto i = from; i <= to; ++i) out.push_back(i);
  return out;
}

Task<void> publish_json_range(NatsBus& bus, const std::string& subject, int from, int to) {
  for (int i = from; i <= to; ++i) {
    const nlohmann::json body{{"n", i}};  // a named body: GCC 12 rejects braced lists inside co_await
    co_await bus.publish_json(subject, body);
  }
}

}  // namespace

TEST(Interop, PullDurableSharedWithGoInTurnNeitherRecreatesNorRedelivers) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{interop_config(server)};
    co_await bus.connect();
    co_await publish_json_range(bus, "interop.shared", 1, 30);
    const natbus::PullOptions opts{.durable = "shared_pull"};
    std::string created;
    {
      auto sub = co_await bus.pull_subscribe("interop.shared", opts);
      auto batch = co_await sub.fetch(10, 5s);
      EXPECT_EQ(batch.size(), 10U);
      for (auto& m : batch) {
        EXPECT_EQ(m.metadata()->num_delivered, 1U);
        co_await m.ack_sync();
      }
      created = (co_await bus.consumer_info("INTEROP", "shared_pull")).raw.at("created").get<std::string>();
      co_await sub.close();
    }
    std::vector<std::string> go_args{"consume", server.url(), "INTEROP", "shared_pull", "pull", "10"};

    const GoRun go = co_await go_async(std::move(go_args));
    EXPECT_EQ(go.status, 0) << go.text();
    const GoGot got = parse_got(go);
    EXPECT_EQ(got.seqs, range(11, 20)) << go.text();
    EXPECT_EQ(got.delivered, std::vector<std::uint64_t>(10, 1)) << go.text();

    // natbus comes back with the same settings: the durable is reused, Go's acks stand.
    auto sub = co_await bus.pull_subscribe("interop.shared", opts);
    std::vector<std::uint64_t> seqs;
    for (int i = 0; i < 10 && seqs.size() < 10; ++i) {
      auto batch = co_await sub.fetch(10 - static_cast<int>(seqs.size()), 2s);
      for (auto& m : batch) {
        seqs.push_back(m.metadata()->stream_sequence);
        EXPECT_EQ(m.metadata()->num_delivered, 1U) << "redelivered: seq " << m.metadata()->stream_sequence;
        co_await m.ack_sync();
      }
    }
    EXPECT_EQ(seqs, range(21, 30));
    auto none = co_await sub.fetch_no_wait(10);
    EXPECT_TRUE(none.empty()) << none.size() << " more messages after all 30 were acked";
    const auto info = co_await bus.consumer_info("INTEROP", "shared_pull");
    EXPECT_EQ(info.raw.at("created").get<std::string>(), created) << "natbus recreated the durable";
    EXPECT_EQ(info.num_redelivered, 0U);
    EXPECT_EQ(info.num_ack_pending, 0U);
    EXPECT_EQ(info.num_pending, 0U);
    co_await bus.close();
  }());
}

TEST(Interop, PushDurableWithQueueSharedWithGoInTurn) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{interop_config(server)};
    co_await bus.connect();
    const natbus::PushOptions opts{.durable = "shared_push", .queue = "iop_workers"};
    std::vector<std::uint64_t> seqs;
    std::vector<std::uint64_t> redelivered;
    std::size_t acked = 0;
    auto on_msg = [&](ReceivedMessage m) -> Task<void> {
      const auto md = m.metadata();
      seqs.push_back(md->stream_sequence);
      if (md->num_delivered != 1) redelivered.push_back(md->stream_sequence);
      co_await m.ack_sync();
      ++acked;
    };
    std::string created;
    {
      auto sub = co_await bus.push_subscribe("interop.shared", on_msg, opts);
      co_await publish_json_range(bus, "interop.shared", 1, 10);
      const bool got10 = co_await eventually([&] { return acked >= 10; });
      EXPECT_TRUE(got10) << seqs.size();
      created = (co_await bus.consumer_info("INTEROP", "shared_push")).raw.at("created").get<std::string>();
      co_await sub.close();
    }
    co_await publish_json_range(bus, "interop.shared", 11, 20);
    std::vector<std::string> go_args{"consume", server.url(), "INTEROP", "shared_push", "push", "10", "iop_workers"};

    const GoRun go = co_await go_async(std::move(go_args));
    EXPECT_EQ(go.status, 0) << go.text();
    const GoGot got = parse_got(go);
    EXPECT_EQ(got.seqs, range(11, 20)) << go.text();
    EXPECT_EQ(got.delivered, std::vector<std::uint64_t>(10, 1)) << go.text();

    auto sub = co_await bus.push_subscribe("interop.shared", on_msg, opts);
    co_await publish_json_range(bus, "interop.shared", 21, 30);
    const bool got20 = co_await eventually([&] { return acked >= 20; });
    EXPECT_TRUE(got20) << seqs.size();
    // Everything is acked by one client or the other: nothing pending, nothing redelivered.
    const auto info = co_await bus.consumer_info("INTEROP", "shared_push");
    EXPECT_EQ(info.raw.at("created").get<std::string>(), created) << "natbus recreated the durable";
    EXPECT_EQ(info.num_redelivered, 0U);
    EXPECT_EQ(info.num_ack_pending, 0U);
    EXPECT_EQ(info.num_pending, 0U);
    EXPECT_EQ(info.delivered_stream_sequence, 30U);
    EXPECT_TRUE(redelivered.empty()) << redelivered.size() << " redeliveries";
    std::vector<std::uint64_t> want = range(1, 10);
    const auto tail = range(21, 30);
    want.insert(want.end(), tail.begin(), tail.end());
    std::sort(seqs.begin(), seqs.end());
    EXPECT_EQ(seqs, want);
    co_await bus.close();
  }());
}

TEST(Interop, GoRequestsNatbusRepliesProgressAndFinalWithTheCorrelationId) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{interop_config(server)};
    co_await bus.connect();
    int handled = 0;
    auto on_request = [&](ReceivedMessage m) -> Task<void> {
      const auto job = m.as_json().at("job").get<int>();
      const nlohmann::json progress{{"job", job}, {"progress", 50}};
      const nlohmann::json done{{"job", job}, {"done", true}};
      co_await bus.reply_json(m, progress);
      co_await bus.reply_json(m, done, {.final = true});
      co_await m.ack();
      ++handled;
    };
    auto sub = co_await bus.push_subscribe("interop.request", on_request, {.durable = "iop_requests"});
    std::vector<std::string> go_args{"request", server.url(), "interop.request"};

    const GoRun go = co_await go_async(std::move(go_args));
    EXPECT_EQ(go.status, 0) << go.text();
    EXPECT_EQ(handled, 1);
    const auto replies = go.starting("reply ");
    EXPECT_EQ(replies, (std::vector<std::string>{R"(reply progress correlation=go-corr-1 data={"job":1,"progress":50})",
                                                 R"(reply final correlation=go-corr-1 data={"done":true,"job":1})"}))
        << go.text();
    co_await bus.close();
  }());
}

TEST(Interop, NatsMsgIdDeduplicatesAcrossClients) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{interop_config(server)};
    co_await bus.connect();
    // natbus first, then Go with the same id.
    const nlohmann::json body{{"from", "natbus"}};
    const auto first = co_await bus.publish_json("interop.dedupe", body, {.msg_id = "order-1"});
    EXPECT_FALSE(first.duplicate);
    std::vector<std::string> go1_args{"publish-id", server.url(), "interop.dedupe", "order-1"};

    const GoRun go1 = co_await go_async(std::move(go1_args));
    EXPECT_EQ(go1.status, 0) << go1.text();
    EXPECT_EQ(go1.starting("puback "), std::vector<std::string>{fmt::format("puback stream=INTEROP seq={} duplicate=true", first.sequence)})
        << go1.text();
    // Go first, then natbus.
    std::vector<std::string> go2_args{"publish-id", server.url(), "interop.dedupe", "order-2"};

    const GoRun go2 = co_await go_async(std::move(go2_args));
    EXPECT_EQ(go2.status, 0) << go2.text();
    EXPECT_EQ(go2.starting("puback "),
              std::vector<std::string>{fmt::format("puback stream=INTEROP seq={} duplicate=false", first.sequence + 1)})
        << go2.text();
    const auto second = co_await bus.publish_json("interop.dedupe", body, {.msg_id = "order-2"});
    EXPECT_TRUE(second.duplicate);
    EXPECT_EQ(second.sequence, first.sequence + 1);
    const auto info = co_await bus.stream_info("INTEROP");
    EXPECT_EQ(info.messages, 2U);
    co_await bus.close();
  }());
}

TEST(Interop, GoDiscoversNatbusServiceInstancesAndTheirStatisticsAddUp) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus one{config_for(server)};
    NatsBus two{config_for(server)};
    co_await one.connect();
    co_await two.connect();
    auto quote = [](ReceivedMessage& m) -> Task<nlohmann::json> {
      const std::string item(m.as_text());
      if (item == "missing") throw natbus::ServiceError(404, "no such item");
      co_return nlohmann::json{{"item", item}, {"price", 12.5}};
    };
    const natbus::Header meta[] = {{"region", "eu"}};
    const natbus::ServiceConfig cfg{.name = "prices", .version = "1.0.0", .description = "quotes", .metadata = meta};
    natbus::Service s1 = co_await one.add_service(cfg);
    natbus::Service s2 = co_await two.add_service(cfg);
    co_await s1.add_group("prices").add_endpoint("quote", quote);
    co_await s2.add_group("prices").add_endpoint("quote", quote);

    std::vector<std::string> args{"service", server.url(), "prices", "prices.quote", "200"};
    const GoRun go = co_await go_async(std::move(args));
    EXPECT_EQ(go.status, 0) << go.text();
    EXPECT_EQ(go.starting("instances "), std::vector<std::string>{"instances 2"}) << go.text();
    std::set<std::string> pinged;
    for (const auto& line : go.starting("ping id=")) pinged.insert(line.substr(8, line.find(' ', 8) - 8));
    EXPECT_EQ(pinged, (std::set<std::string>{s1.id(), s2.id()})) << go.text();
    EXPECT_EQ(go.starting("info id=" + s1.id()), std::vector<std::string>{"info id=" + s1.id() + " endpoints=quote:prices.quote:q"});
    EXPECT_EQ(go.starting("requests "), std::vector<std::string>{"requests sent=200 errors=20"}) << go.text();
    EXPECT_EQ(go.starting("stats total "), std::vector<std::string>{"stats total num_requests=200 num_errors=20"}) << go.text();
    // What natbus counted itself: the queue group spread the requests over both instances.
    const auto a = s1.stats().endpoints.at(0);
    const auto b = s2.stats().endpoints.at(0);
    EXPECT_EQ(a.num_requests + b.num_requests, 200U);
    EXPECT_EQ(a.num_errors + b.num_errors, 20U);
    EXPECT_GT(a.num_requests, 0U);
    EXPECT_GT(b.num_requests, 0U);
    std::printf("%s", go.text().c_str());
    co_await s1.stop();
    co_await s2.stop();
    co_await two.close();
    co_await one.close();
  }());
}

namespace {

/// A natbus entry in the Go program's format ("watch key=K rev=N op=put value=V").
std::string go_line(std::string_view what, const natbus::KeyValueEntry& e) {
  const char* op = e.operation == natbus::KeyValueOp::put ? "put" : e.operation == natbus::KeyValueOp::del ? "del" : "purge";
  return fmt::format("{} key={} rev={} op={} value={}", what, e.key, e.revision, op, e.value);
}

/// The next `n` entries of `w` (the initial-done marker left out), each within 10 s.
Task<std::vector<std::string>> watched(natbus::KeyWatcher& w, std::string_view what, std::size_t n) {
  std::vector<std::string> out;
  while (out.size() < n) {
    Task<natbus::KeyWatchUpdate> waiting = w.next();
    const natbus::KeyWatchUpdate u = co_await natbus::with_timeout(std::move(waiting), 10s);
    if (!u) break;
    if (u.entry) out.push_back(go_line(what, *u.entry));
  }
  co_return out;
}

}  // namespace

TEST(Interop, GoWritesKeysNatbusGetsTheirHistoryAndKeysAndWatchesThem) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    std::vector<std::string> args{"kv-write", server.url(), "GOKV"};
    const GoRun go = co_await go_async(std::move(args));
    EXPECT_EQ(go.status, 0) << go.text();
    EXPECT_EQ(go.starting("update-stale refused").size(), 1U) << go.text();
    EXPECT_EQ(go.starting("create-live refused").size(), 1U) << go.text();

    natbus::KeyValue kv = co_await bus.key_value("GOKV");
    const auto status = co_await kv.status();
    EXPECT_EQ(status.history, 10);
    const auto a = co_await kv.get("go.a");
    EXPECT_EQ(a ? go_line("get", *a) : "none", "get key=go.a rev=3 op=put value=3");
    const auto b = co_await kv.get("go.b");
    EXPECT_FALSE(b.has_value());
    const auto dotted = co_await kv.get("cfg/x=1.y");
    EXPECT_EQ(dotted ? go_line("get", *dotted) : "none", "get key=cfg/x=1.y rev=5 op=put value=z");
    const auto c = co_await kv.get("go.c");
    EXPECT_EQ(c ? go_line("get", *c) : "none", "get key=go.c rev=6 op=put value=c");
    const auto d = co_await kv.get("go.d");
    EXPECT_FALSE(d.has_value());
    const auto hb = co_await kv.history("go.b");
    std::vector<std::string> hb_lines;
    for (const auto& e : hb) hb_lines.push_back(go_line("h", e));
    EXPECT_EQ(hb_lines, (std::vector<std::string>{"h key=go.b rev=2 op=put value=two", "h key=go.b rev=4 op=del value="}));
    const auto hd = co_await kv.history("go.d");
    std::vector<std::string> hd_lines;
    for (const auto& e : hd) hd_lines.push_back(go_line("h", e));
    EXPECT_EQ(hd_lines, (std::vector<std::string>{"h key=go.d rev=8 op=purge value="}));
    const auto keys = co_await kv.keys();
    EXPECT_EQ(keys, (std::vector<std::string>{"cfg/x=1.y", "go.a", "go.c"}));

    // The revision rules hold for natbus on Go's keys as they did for Go.
    std::string stale;
    try {
      (void)co_await kv.update("go.a", "stale", 1);
    } catch (const natbus::WrongLastRevisionError& e) {
      stale = e.what();
    }
    EXPECT_NE(stale.find("no longer at revision 1"), std::string::npos) << stale;
    std::string live;
    try {
      (void)co_await kv.create("go.c", "again");
    } catch (const natbus::KeyExistsError& e) {
      live = e.what();
    }
    EXPECT_NE(live.find("already holds a value"), std::string::npos) << live;
    const std::uint64_t on_delete = co_await kv.create("go.b", "back");
    EXPECT_EQ(on_delete, 9U);

    natbus::KeyWatcher w = co_await kv.watch_all();
    const auto initial = co_await watched(w, "initial", 5);
    EXPECT_EQ(initial, (std::vector<std::string>{"initial key=go.a rev=3 op=put value=3", "initial key=cfg/x=1.y rev=5 op=put value=z",
                                                 "initial key=go.c rev=6 op=put value=c",
                                                 "initial key=go.d rev=8 op=purge value=", "initial key=go.b rev=9 op=put value=back"}));
    co_await w.close();
    co_await bus.close();
  }());
}

TEST(Interop, NatbusWritesKeysGoReadsThemAndBothWatchersSeeTheSameChanges) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    natbus::KeyValue kv = co_await bus.key_value({.bucket = "NBKV", .history = 10});
    (void)co_await kv.put("svc.a", "1");
    (void)co_await kv.put("svc.b", "2");
    natbus::KeyWatcher mine = co_await kv.watch_all();
    const auto mine_initial = co_await watched(mine, "initial", 2);

    // Go watches too; once it has the current values it puts "ready", and the script starts.
    constexpr std::size_t kChanges = 6;
    std::vector<std::string> watch_args{"kv-watch", server.url(), "NBKV", std::to_string(kChanges + 1)};
    auto go_watch = std::async(std::launch::async, run_go, std::move(watch_args));
    const auto ready = co_await watched(mine, "watch", 1);
    EXPECT_EQ(ready, std::vector<std::string>{"watch key=ready rev=3 op=put value=go"});
    const std::uint64_t r4 = co_await kv.put("svc.a", "one");
    const std::uint64_t r5 = co_await kv.update("svc.a", "uno", r4);
    std::string refused;
    try {
      (void)co_await kv.update("svc.a", "lost", r4);
    } catch (const natbus::WrongLastRevisionError& e) {
      refused = e.what();
    }
    EXPECT_FALSE(refused.empty());
    co_await kv.erase("svc.b");
    (void)co_await kv.create("svc.b", "again");
    (void)co_await kv.put("svc.c", std::as_bytes(std::span<const char>("bytes", 5)));
    (void)co_await kv.put("svc.d", "last");
    EXPECT_EQ(r5, 5U);
    const auto mine_changes = co_await watched(mine, "watch", kChanges);
    while (go_watch.wait_for(0s) != std::future_status::ready) co_await natbus::sleep(20ms);  // run_go is bounded
    const GoRun gw = go_watch.get();
    // Purged once both watchers have seen the value it removes (gone for a watcher behind).
    co_await kv.purge("svc.c");
    EXPECT_EQ(gw.status, 0) << gw.text();
    std::vector<std::string> go_initial = gw.starting("initial ");
    EXPECT_EQ(go_initial, mine_initial) << gw.text();
    EXPECT_EQ(gw.starting("watch init-done").size(), 1U) << gw.text();
    std::vector<std::string> changes = ready;  // Go sees its own "ready" too
    changes.insert(changes.end(), mine_changes.begin(), mine_changes.end());
    EXPECT_EQ(gw.starting("watch key="), changes) << gw.text();
    EXPECT_EQ(mine_changes,
              (std::vector<std::string>{"watch key=svc.a rev=4 op=put value=one", "watch key=svc.a rev=5 op=put value=uno",
                                        "watch key=svc.b rev=6 op=del value=", "watch key=svc.b rev=7 op=put value=again",
                                        "watch key=svc.c rev=8 op=put value=bytes", "watch key=svc.d rev=9 op=put value=last"}));

    // Go's Get, History and Keys agree with what natbus wrote.
    std::vector<std::string> read_args{"kv-read", server.url(), "NBKV", "svc.a", "svc.b", "svc.c", "nothing"};
    const GoRun gr = co_await go_async(std::move(read_args));
    EXPECT_EQ(gr.status, 0) << gr.text();
    EXPECT_EQ(gr.starting("get "),
              (std::vector<std::string>{"get key=svc.a rev=5 op=put value=uno", "get key=svc.b rev=7 op=put value=again",
                                        "get key=svc.c none", "get key=nothing none"}))
        << gr.text();
    EXPECT_EQ(gr.starting("history "),
              (std::vector<std::string>{"history key=svc.a 1:put:1,4:put:one,5:put:uno", "history key=svc.b 2:put:2,6:del:,7:put:again",
                                        "history key=svc.c 10:purge:", "history key=nothing none"}))
        << gr.text();
    EXPECT_EQ(gr.starting("keys "), std::vector<std::string>{"keys ready,svc.a,svc.b,svc.d"}) << gr.text();
    co_await mine.close();
    co_await bus.close();
  }());
}

TEST(Interop, ObjectsOf50MiBGoBothWaysWithEqualDigests) {
  NatsServer server;
  constexpr std::size_t kSize = std::size_t{50} << 20;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    // natbus puts, Go reads (nats.go checks the digest itself) and hashes what it read.
    std::string data(kSize, '\0');
    for (std::size_t i = 0; i < kSize; ++i) data[i] = static_cast<char>((31 * i + 7) % 251);
    natbus::ObjectStore mine = co_await bus.object_store({.bucket = "FROMNB"});
    const natbus::ObjectInfo put = co_await mine.put("blob.bin", data);
    data.clear();
    data.shrink_to_fit();
    std::vector<std::string> get_args{"obj-get", server.url(), "FROMNB", "blob.bin"};
    const GoRun go_get = co_await go_async(std::move(get_args));
    EXPECT_EQ(go_get.status, 0) << go_get.text();
    EXPECT_EQ(go_get.starting("info "),
              std::vector<std::string>{fmt::format("info name=blob.bin size={} chunks={} digest={}", kSize, put.chunks, put.digest)})
        << go_get.text();
    EXPECT_EQ(go_get.starting("get "), std::vector<std::string>{fmt::format("get size={} sha256={} pattern ok", kSize, put.digest)})
        << go_get.text();

    // Go puts, natbus streams it back: the pattern, the size and Go's digest.
    std::vector<std::string> put_args{"obj-put", server.url(), "FROMGO", "go.bin", std::to_string(kSize)};
    const GoRun go_put = co_await go_async(std::move(put_args));
    EXPECT_EQ(go_put.status, 0) << go_put.text();
    const auto put_lines = go_put.starting("put ");
    EXPECT_EQ(put_lines.size(), 1U) << go_put.text();
    natbus::ObjectStore theirs = co_await bus.object_store("FROMGO");
    natbus::ObjectReader r = co_await theirs.open("go.bin");
    const natbus::ObjectInfo& info = r.info();
    if (!put_lines.empty()) {
      EXPECT_EQ(put_lines[0], fmt::format("put name=go.bin size={} chunks={} digest={}", info.size, info.chunks, info.digest))
          << go_put.text();
    }
    std::size_t at = 0;
    bool same = true;
    for (;;) {
      std::optional<std::string> chunk = co_await r.next();  // the last next() checks the digest
      if (!chunk) break;
      for (std::size_t i = 0; i < chunk->size() && same; ++i) same = (*chunk)[i] == static_cast<char>((31 * (at + i) + 7) % 251);
      at += chunk->size();
    }
    EXPECT_EQ(at, kSize);
    EXPECT_TRUE(same);
    co_await bus.close();
  }());
}

#else
TEST(Interop, NeedsGo) {
  GTEST_SKIP() << "built without Go and nats.go: the interop tests need golang-go and golang-github-nats-io-go-nats-dev";
}
#endif
