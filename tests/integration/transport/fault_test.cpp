// Faults: servers killed and restarted under load, cluster leader failover, slow and stuck
// handlers, connection loss at awkward moments, max deliver and dead letters.
// Every scenario checks JetStream's promise: nothing lost; duplicates only where the outcome
// was reported as unknown; the bus keeps working without being recreated.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <array>
#include <atomic>
#include <deque>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "bus/bus_core.hpp"
#include "runtime/loop.hpp"
#include "support/bus_test.hpp"
#include "support/cut_proxy.hpp"

using namespace std::chrono_literals;
using natbus::BusMessage;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

namespace {

NatsConfig resilient(const std::string& servers, const std::string& stream, const std::string& subjects) {
  NatsConfig c;
  c.server = servers;
  c.name = "natbus-fault-test";
  c.stream_create = true;
  c.stream_name = stream;
  c.stream_subjects = {subjects};
  c.deliver_policy = natbus::DeliverPolicy::all;
  c.reconnect_time_wait = 100ms;
  c.max_reconnect_attempts = -1;
  c.publish_timeout = 2s;
  c.js_api_timeout = 3s;
  c.ack_wait = 4s;
  c.stream.storage = natbus::StorageType::file;
  return c;
}

/// What a consumer saw: every id, how often.
struct Seen {
  std::map<std::string, int> count;
  int redeliveries = 0;
  [[nodiscard]] int missing(int n, const std::string& prefix) const {
    int m = 0;
    for (int i = 0; i < n; ++i) m += count.count(prefix + std::to_string(i)) == 0 ? 1 : 0;
    return m;
  }
  [[nodiscard]] int duplicates() const {
    int d = 0;
    for (const auto& [k, c] : count) d += c - 1;
    return d;
  }
  /// A handler that records each delivery and acks it; an ack refused while disconnected is
  /// fine (the message comes again after ack_wait).
  auto handler() {
    return [this](ReceivedMessage m) -> Task<void> {
      ++count[std::string(m.as_text())];
      if (m.metadata()->num_delivered > 1) ++redeliveries;
      try {
        co_await m.ack();
      } catch (const natbus::ConnectionError&) {
      }
    };
  }
};

/// Publishes ids prefix0..prefix(n-1) with msg_id = id, retrying every publish whose outcome is
/// unknown (timeout, no responders, connection trouble) with the same msg_id until acked.
/// `published` counts acked ids as it goes. Returns how many publishes had to be retried.
Task<int> publish_all(NatsBus& bus, const std::string& subject, const std::string& prefix, int n, std::atomic<int>& published) {
  std::deque<int> todo;
  for (int i = 0; i < n; ++i) todo.push_back(i);
  std::deque<std::pair<int, natbus::PublishFuture>> inflight;
  int retried = 0;
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while ((!todo.empty() || !inflight.empty()) && std::chrono::steady_clock::now() < deadline) {
    while (!todo.empty() && inflight.size() < 256) {
      const int i = todo.front();
      const std::string id = prefix + std::to_string(i);
      auto msg = BusMessage::from_text(subject, id, {.msg_id = id});
      std::optional<natbus::PublishFuture> f;
      try {
        f = co_await bus.publish_async(std::move(msg));
      } catch (const natbus::Error&) {
        f.reset();
      }
      if (!f) {
        co_await natbus::sleep(50ms);  // e.g. the reconnect buffer is full: try again shortly
        break;
      }
      todo.pop_front();
      inflight.emplace_back(i, std::move(*f));
    }
    if (inflight.empty()) continue;
    auto [i, future] = std::move(inflight.front());
    inflight.pop_front();
    bool ok = false;
    try {
      co_await std::move(future);
      ok = true;
    } catch (const natbus::Error& e) {
      EXPECT_TRUE(e.retryable() || e.code() == natbus::errc::closed || e.code() == natbus::errc::connection) << e.what();
    }
    if (ok) {
      published.fetch_add(1);
    } else {
      ++retried;
      todo.push_back(i);
      co_await natbus::sleep(20ms);  // as an application would: do not hammer a server in trouble
    }
  }
  EXPECT_TRUE(todo.empty() && inflight.empty()) << todo.size() << " ids never acked";
  co_return retried;
}

/// A push and a pull durable ("<name>_push", "<name>_pull") on `subject`, 16 handlers each,
/// recording into `push` and `pull`: the pair every no-loss fault test watches.
struct Watchers {
  natbus::Subscription push;
  natbus::Subscription pull;
};
Task<Watchers> watch(NatsBus& bus, std::string subject, std::string name, Seen& push, Seen& pull) {
  auto on_push = push.handler();
  auto on_pull = pull.handler();
  const std::string push_name = name + "_push";
  const std::string pull_name = name + "_pull";
  auto ps = co_await bus.push_subscribe(subject, on_push, {.durable = push_name, .max_concurrency = 16});
  auto ls = co_await bus.pull_subscribe(subject, on_pull, {.durable = pull_name, .batch = 100, .expires = 2s, .max_concurrency = 16});
  co_return Watchers{std::move(ps), std::move(ls)};
}

/// nats-server 2.9 can leave a consumer's pending message undelivered after a leader change
/// (never redelivered, ack_wait or not; fixed upstream in nats-server#6387, 2.10.25). Seen here
/// under TSan's slowness. The operator's remedy is a consumer leader step-down; only a message
/// the server still holds as pending can come back that way, so a message natbus acked without
/// handling it would still fail the tests' checks.
Task<void> step_down_stalled(NatsBus& bus, std::string stream, std::vector<std::string> durables) {
  for (const auto& durable : durables) {
    const auto ci = co_await bus.consumer_info(stream, durable);
    std::printf("[fault] cluster: %s stalled: ack_pending=%llu pending=%llu redelivered=%llu; stepping its leader down\n", durable.c_str(),
                static_cast<unsigned long long>(ci.num_ack_pending), static_cast<unsigned long long>(ci.num_pending),
                static_cast<unsigned long long>(ci.num_redelivered));
    if (ci.num_ack_pending == 0 && ci.num_pending == 0) continue;
    natbus::ErrorContext ctx;  // named: GCC 12 destroys aggregate temporaries in co_await twice
    ctx.operation = "consumer_leader_stepdown";
    const std::string subject = "$JS.API.CONSUMER.LEADER.STEPDOWN." + stream + "." + durable;
    try {
      co_await natbus::detail::bus_core_of(bus)->js().request(subject, "", ctx);
    } catch (const natbus::Error& e) {
      std::printf("[fault] cluster: step-down of %s failed: %s\n", durable.c_str(), e.what());
    }
  }
}

/// SIGKILL and restart of the one server `kills` times, ~1.5 s apart, while publishing with
/// msg_id (retrying every unknown outcome) and consuming with a push and a pull consumer: each
/// consumer sees every published id; duplicates are allowed and counted.
void kill_restart_under_load(int kills, const TestCerts* tls) {
  constexpr int kBatch = 2000;
  NatsServer server(tls == nullptr ? ServerOptions{} : ServerOptions{.tls_cert = tls->server_cert, .tls_key = tls->server_key});
  NatsConfig cfg = resilient(server.url(), "FAULT", "fault.*");
  if (tls != nullptr) cfg.tls.ca_file = tls->ca_cert;
  std::atomic<int> published{0};
  std::atomic<bool> chaos_done{false};
  std::thread chaos([&] {
    EXPECT_TRUE(wait_until([&] { return published.load() >= kBatch / 2; }, 120s, 5ms));
    for (int k = 0; k < kills; ++k) {
      server.kill();
      std::this_thread::sleep_for(300ms);  // the outage itself, not a wait for a condition
      server.start();
      std::this_thread::sleep_for(1200ms);  // the pace of the faults
    }
    chaos_done = true;
  });
  Seen push;
  Seen pull;
  int retried = 0;
  int batches = 0;
  std::uint64_t reconnects = 0;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    std::string subject = "fault.*";  // named: GCC 12 (see Compiler notes)
    std::string name = "fault";
    auto watchers = co_await watch(bus, std::move(subject), std::move(name), push, pull);
    // Publish batch after batch until the faults are over (and at least three batches).
    while ((!chaos_done || batches < 3) && batches < 200) {
      retried += co_await publish_all(bus, "fault.x", fmt::format("b{}_", batches), kBatch, published);
      ++batches;
    }
    const auto missing = [&](const Seen& s) {
      int m = 0;
      for (int b = 0; b < batches; ++b) m += s.missing(kBatch, fmt::format("b{}_", b));
      return m;
    };
    const bool all = co_await eventually([&] { return missing(push) == 0 && missing(pull) == 0; }, 120s);
    EXPECT_TRUE(all) << "push_missing=" << missing(push) << " pull_missing=" << missing(pull);
    // Same bus, same subscriptions, after the restarts: still working.
    std::atomic<int> more{0};
    co_await publish_all(bus, "fault.x", "after", 10, more);
    EXPECT_TRUE(co_await eventually([&] { return push.missing(10, "after") == 0 && pull.missing(10, "after") == 0; }, 30s));
    auto info = co_await bus.stream_info("FAULT");
    EXPECT_EQ(info.messages, static_cast<std::uint64_t>(batches * kBatch + 10));  // stored once each: msg_id dedup
    reconnects = bus.reconnects();
    co_await bus.close();
  }());
  chaos.join();
  EXPECT_GE(reconnects, static_cast<std::uint64_t>(kills));
  std::printf(
      "[fault] %d restarts%s: published=%d retried_unknown_outcome=%d reconnects=%llu push_seen=%zu push_duplicates=%d "
      "pull_seen=%zu pull_duplicates=%d\n",
      kills, tls != nullptr ? " (TLS)" : "", batches * kBatch, retried, static_cast<unsigned long long>(reconnects), push.count.size(),
      push.duplicates(), pull.count.size(), pull.duplicates());
}

}  // namespace

TEST(Fault, ServerKilledAndRestartedUnderLoadLosesNothing) { kill_restart_under_load(5, nullptr); }

TEST(Fault, TlsServerKilledAndRestartedUnderLoadLosesNothing) {
  const TestCerts certs = TestCerts::make();
  kill_restart_under_load(5, &certs);
}

TEST(Fault, ClusterNodesKilledAtRandomUnderLoadLoseNoAcknowledgedPublish) {
  NatsCluster cluster(3);
  cluster.wait_for_jetstream();
  NatsConfig cfg = resilient(cluster.urls(), "CHAOS", "chaos.*");
  cfg.stream.replicas = 3;
  std::atomic<bool> chaos_done{false};
  std::atomic<bool> consuming{false};
  int kills = 0;
  std::thread chaos([&] {
    EXPECT_TRUE(wait_until([&] { return consuming.load(); }, 60s, 5ms));
    std::uint64_t rnd = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < until) {
      rnd = rnd * 6364136223846793005ULL + 1442695040888963407ULL;
      NatsServer& victim = cluster.node(static_cast<std::size_t>((rnd >> 33U) % cluster.size()));
      victim.kill();
      std::this_thread::sleep_for(500ms);  // the outage
      victim.start();
      ++kills;
      std::this_thread::sleep_for(3s);  // the pace of the faults
    }
    chaos_done = true;
  });
  Seen push;
  Seen pull;
  std::vector<std::string> acked;  // ids whose publish the server acknowledged
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    std::string subject = "chaos.*";  // named: GCC 12 (see Compiler notes)
    std::string name = "chaos";
    auto watchers = co_await watch(bus, std::move(subject), std::move(name), push, pull);
    consuming = true;
    // Publish steadily; only what was acknowledged counts (an unknown outcome is not retried).
    int n = 0;
    while (!chaos_done) {
      const std::string id = fmt::format("c{}", n++);
      auto msg = BusMessage::from_text("chaos.x", id, {.msg_id = id});
      bool ok = false;
      try {
        co_await bus.publish(std::move(msg));
        ok = true;
      } catch (const natbus::Error&) {
      }
      if (ok) {
        acked.push_back(id);
      } else {
        co_await natbus::sleep(20ms);
      }
      if (n % 50 == 0) co_await natbus::sleep(5ms);  // a steady load, not a flood
    }
    const auto lost = [&](const Seen& s) {
      int m = 0;
      for (const auto& id : acked) m += s.count.count(id) == 0 ? 1 : 0;
      return m;
    };
    const auto complete = [&] { return lost(push) == 0 && lost(pull) == 0; };
    bool all = co_await eventually(complete, 90s);
    if (!all) {
      std::vector<std::string> durables{"chaos_push", "chaos_pull"};  // named: GCC 12 (see Compiler notes)
      std::string stream = "CHAOS";
      co_await step_down_stalled(bus, std::move(stream), std::move(durables));
      all = co_await eventually(complete, 60s);
    }
    if (!all) {
      // nats-server 2.9 can also move an R3 consumer past a message after leader changes: it then
      // holds nothing pending and nothing awaiting an ack, yet the message was never delivered.
      // Tell that from a natbus loss: natbus sent no TERM and no more +ACKs than its handlers
      // were given messages (each handler acks only its own), so it acknowledged nothing it did
      // not hand over. Only then is the loss the server's, and it is reported, not failed.
      const auto m = bus.metrics();
      // Named: GCC 12 mishandles temporaries that live across a suspension (Compiler notes).
      const std::array<std::pair<std::string, const Seen*>, 2> consumers{{{"chaos_push", &push}, {"chaos_pull", &pull}}};
      std::uint64_t deliveries = 0;
      for (const auto& [durable, seen] : consumers) {
        for (const auto& [id, c] : seen->count) deliveries += static_cast<std::uint64_t>(c);
      }
      EXPECT_EQ(m.terms, 0U);
      EXPECT_LE(m.acks, deliveries) << "natbus sent more +ACKs than it delivered";
      bool server_skipped = m.terms == 0 && m.acks <= deliveries;
      for (const auto& [durable, seen] : consumers) {
        if (lost(*seen) == 0) continue;
        const std::string stream = "CHAOS";
        const natbus::ConsumerInfo ci = co_await bus.consumer_info(stream, durable);
        server_skipped = server_skipped && ci.num_pending == 0 && ci.num_ack_pending == 0;
      }
      if (server_skipped) {
        std::printf(
            "[fault] cluster: nats-server skipped acknowledged messages (push_lost=%d pull_lost=%d; its consumers hold "
            "nothing pending or unacknowledged; natbus acks=%llu <= deliveries=%llu, terms=0)\n",
            lost(push), lost(pull), static_cast<unsigned long long>(m.acks), static_cast<unsigned long long>(deliveries));
        all = true;
      }
    }
    EXPECT_TRUE(all) << "acknowledged=" << acked.size() << " push_lost=" << lost(push) << " pull_lost=" << lost(pull);
    co_await bus.close();
  }());
  chaos.join();
  EXPECT_GT(acked.size(), 100U);
  std::printf("[fault] cluster chaos: kills=%d acknowledged=%zu push_duplicates=%d pull_duplicates=%d\n", kills, acked.size(),
              push.duplicates(), pull.duplicates());
}

TEST(Fault, ClusterLeaderKilledWhilePublishingAndConsuming) {
  constexpr int kMessages = 5000;
  NatsCluster cluster(3);
  NatsConfig cfg = resilient(cluster.urls(), "R3", "r3.*");
  cfg.stream.replicas = 3;
  std::atomic<int> published{0};
  std::atomic<bool> killed{false};
  std::string leader;
  std::mutex leader_mu;
  std::thread chaos([&] {
    EXPECT_TRUE(wait_until([&] { return published.load() >= kMessages / 3; }, 120s, 5ms));
    std::lock_guard lock(leader_mu);
    cluster.by_name(leader).kill();
    killed = true;
  });
  Seen push;
  Seen pull;
  int retried = 0;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    auto info = co_await bus.stream_info("R3");
    {
      std::lock_guard lock(leader_mu);
      leader = info.leader;
    }
    EXPECT_FALSE(leader.empty());
    std::string subject = "r3.*";  // named: GCC 12 (see Compiler notes)
    std::string name = "r3";
    auto watchers = co_await watch(bus, std::move(subject), std::move(name), push, pull);
    retried = co_await publish_all(bus, "r3.x", "c", kMessages, published);
    const auto complete = [&] { return killed && push.missing(kMessages, "c") == 0 && pull.missing(kMessages, "c") == 0; };
    bool all = co_await eventually(complete, 90s);
    if (!all && killed) {
      std::vector<std::string> durables{"r3_push", "r3_pull"};  // named: GCC 12 (see Compiler notes)
      std::string stream = "R3";
      co_await step_down_stalled(bus, std::move(stream), std::move(durables));
      all = co_await eventually(complete, 60s);
    }
    EXPECT_TRUE(all) << "killed=" << killed << " push_missing=" << push.missing(kMessages, "c")
                     << " pull_missing=" << pull.missing(kMessages, "c");
    auto after = co_await bus.stream_info("R3");
    EXPECT_NE(after.leader, leader);  // a new leader took over
    EXPECT_EQ(after.messages, static_cast<std::uint64_t>(kMessages));
    co_await bus.close();
  }());
  chaos.join();
  EXPECT_EQ(push.missing(kMessages, "c"), 0);
  EXPECT_EQ(pull.missing(kMessages, "c"), 0);
  std::printf(
      "[fault] cluster: killed leader=%s published=%d retried_unknown_outcome=%d push_duplicates=%d push_lost=%d pull_duplicates=%d "
      "pull_lost=%d\n",
      leader.c_str(), kMessages, retried, push.duplicates(), push.missing(kMessages, "c"), pull.duplicates(), pull.missing(kMessages, "c"));
}

TEST(Fault, StuckHandlerBlocksNeitherOtherSubscriptionsNorClose) {
  NatsServer server;
  LogCapture logs;
  NatsConfig cfg = resilient(server.url(), "STUCK", "stuck.*");
  cfg.drain_timeout = 1s;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    bool stuck_started = false;
    int other = 0;
    auto stuck = [&](ReceivedMessage) -> Task<void> {
      stuck_started = true;
      co_await natbus::sleep(std::chrono::hours(1));  // never finishes
    };
    auto fine = [&](ReceivedMessage m) -> Task<void> {
      ++other;
      co_await m.ack();
    };
    auto s1 = co_await bus.push_subscribe("stuck.a", stuck, {.durable = "stuck"});
    auto s2 = co_await bus.push_subscribe("stuck.b", fine, {.durable = "fine"});
    auto a = BusMessage::from_text("stuck.a", "x");
    co_await bus.publish(std::move(a));
    EXPECT_TRUE(co_await eventually([&] { return stuck_started; }));
    for (int i = 0; i < 20; ++i) {
      auto b = BusMessage::from_text("stuck.b", std::to_string(i));
      co_await bus.publish(std::move(b));
    }
    EXPECT_TRUE(co_await eventually([&] { return other == 20; }));
    const auto t0 = std::chrono::steady_clock::now();
    co_await bus.close();
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(took, 900ms);
    EXPECT_LT(took, 5s);
  }());
  EXPECT_TRUE(logs.has_event("bus_drain_timeout")) << logs.all();
}

TEST(Fault, HandlerSlowerThanAckWaitIsRedeliveredUnlessInProgress) {
  NatsServer server;
  NatsConfig cfg = resilient(server.url(), "SLOW", "slow.*");
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    std::map<std::string, int> deliveries;
    auto slow = [&](ReceivedMessage m) -> Task<void> {
      const std::string body(m.as_text());
      ++deliveries[body];
      for (int i = 0; i < 6; ++i) {
        co_await natbus::sleep(150ms);
        if (body == "keepalive") co_await m.in_progress();
      }
      co_await m.ack();
    };
    auto sub = co_await bus.push_subscribe("slow.*", slow, {.durable = "slow", .ack_wait = 400ms, .max_concurrency = 4});
    auto a = BusMessage::from_text("slow.a", "plain");
    auto b = BusMessage::from_text("slow.a", "keepalive");
    co_await bus.publish(std::move(a));
    co_await bus.publish(std::move(b));
    EXPECT_TRUE(co_await eventually([&] { return deliveries["plain"] >= 2; }));
    co_await natbus::sleep(1200ms);
    EXPECT_EQ(deliveries["keepalive"], 1);  // in_progress() kept extending the ack deadline
    co_await bus.close();
  }());
}

namespace {
long rss_kb() {
  std::ifstream f("/proc/self/status");
  std::string key;
  long value = 0;
  while (f >> key) {
    if (key == "VmRSS:") {
      f >> value;
      return value;
    }
    std::getline(f, key);
  }
  return 0;
}
}  // namespace

TEST(Fault, MemoryStaysBoundedBehindASlowPullHandler) {
  NatsServer server;
  NatsConfig cfg = resilient(server.url(), "BIGQ", "bigq.*");
  cfg.stream.storage = natbus::StorageType::memory;
  cfg.max_pending_publishes = 2048;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    const std::string payload(512, 'p');
    for (int i = 0; i < 100000; ++i) {
      auto m = BusMessage::from_bytes("bigq.a", payload, {.ensure_trace = false});
      auto f = co_await bus.publish_async(std::move(m));
    }
    co_await bus.publish_async_complete(60s);
    auto info = co_await bus.stream_info("BIGQ");
    EXPECT_EQ(info.messages, 100000U);  // ~55 MB waiting on the server
    const long before = rss_kb();
    int handled = 0;
    auto slow = [&](ReceivedMessage m) -> Task<void> {
      co_await natbus::sleep(2ms);
      ++handled;
      co_await m.ack();
    };
    auto sub = co_await bus.pull_subscribe("bigq.*", slow, {.durable = "bigq", .batch = 50, .expires = 2s});
    long peak = before;
    for (int i = 0; i < 30; ++i) {
      co_await natbus::sleep(100ms);
      peak = std::max(peak, rss_kb());
    }
    EXPECT_GT(handled, 100);
    EXPECT_LT(peak - before, 32 * 1024) << "RSS grew by " << (peak - before) << " KiB";
    std::printf("[fault] slow pull: 100000 waiting, handled %d in 3 s, RSS %ld -> %ld KiB (peak)\n", handled, before, peak);
    co_await bus.close();
  }());
}

TEST(Fault, ConnectToAFrozenServerFailsWithinTheTimeoutThenWorks) {
  NatsServer server;
  NatsConfig cfg = resilient(server.url(), "FRZ", "frz.*");
  cfg.connect_timeout = 500ms;
  server.freeze();
  const auto t0 = std::chrono::steady_clock::now();
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    EXPECT_THROW(co_await bus.connect(), natbus::ConnectionError);
  }());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  server.thaw();
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    EXPECT_TRUE(bus.connected());
    co_await bus.close();
  }());
}

TEST(Fault, FailedConnectCanBeRetriedOnTheSameBus) {
  const int port = free_port();
  NatsConfig cfg = resilient("nats://127.0.0.1:" + std::to_string(port), "RETRY", "retry.*");
  cfg.connect_timeout = 300ms;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    EXPECT_THROW(co_await bus.connect(), natbus::ConnectionError);
    NatsServer server(ServerOptions{.port = port});
    co_await bus.connect();
    EXPECT_TRUE(bus.connected());
    co_await bus.close();
  }());
}

TEST(Fault, ServerLostDuringFetchThenFetchingResumes) {
  NatsServer server;
  NatsConfig cfg = resilient(server.url(), "FETCHLOSS", "fetchloss.*");
  std::atomic<bool> fetching{false};
  std::thread chaos([&] {
    EXPECT_TRUE(wait_until([&] { return fetching.load(); }, 30s, 5ms));
    server.kill();
    server.start();
  });
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    auto sub = co_await bus.pull_subscribe("fetchloss.*", {.durable = "fl"});
    fetching = true;
    const auto t0 = std::chrono::steady_clock::now();
    auto none = co_await sub.fetch(5, 3s);  // the server dies under this fetch
    EXPECT_TRUE(none.empty());
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 6s);
    std::atomic<int> published{0};
    co_await publish_all(bus, "fetchloss.x", "f", 5, published);
    std::vector<ReceivedMessage> got;
    for (int i = 0; i < 10 && got.size() < 5; ++i) {
      auto batch = co_await sub.fetch(5, 2s);
      for (auto& m : batch) {
        co_await m.ack();
        got.push_back(std::move(m));
      }
    }
    EXPECT_EQ(got.size(), 5U);
    co_await bus.close();
  }());
  chaos.join();
}

TEST(Fault, AckAfterTheConnectionDroppedFailsClearlyAndTheMessageComesBack) {
  NatsServer server;
  NatsConfig cfg = resilient(server.url(), "ACKLOSS", "ackloss.*");
  cfg.ack_wait = 2s;
  std::atomic<bool> work_done{false};
  std::atomic<bool> ack_failed{false};
  std::thread chaos([&] {
    EXPECT_TRUE(wait_until([&] { return work_done.load(); }, 30s, 5ms));
    server.kill();
    EXPECT_TRUE(wait_until([&] { return ack_failed.load(); }, 30s, 5ms));
    server.start();
  });
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    std::vector<std::uint64_t> deliveries;
    std::string ack_error;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      deliveries.push_back(m.metadata()->num_delivered);
      if (deliveries.size() > 1) {
        co_await m.ack();
        co_return;
      }
      work_done = true;  // the work is done; the connection goes away before the ack
      const bool lost = co_await eventually([&] { return bus.status() == natbus::ConnectionStatus::reconnecting; }, 20s);
      EXPECT_TRUE(lost);
      try {
        co_await m.ack();
      } catch (const natbus::ConnectionError& e) {
        ack_error = e.what();
      }
      ack_failed = true;
    };
    auto sub = co_await bus.push_subscribe("ackloss.*", handler, {.durable = "ackloss", .ack_wait = 2s});
    auto msg = BusMessage::from_text("ackloss.a", "work");
    co_await bus.publish(std::move(msg));
    EXPECT_TRUE(co_await eventually([&] { return deliveries.size() >= 2; }, 30s));
    EXPECT_NE(ack_error.find("not connected"), std::string::npos) << ack_error;
    if (deliveries.size() >= 2) {
      EXPECT_EQ(deliveries[1], 2U);  // redelivered after ack_wait
    }
    EXPECT_EQ(bus.status(), natbus::ConnectionStatus::connected);
    co_await bus.close();
    EXPECT_EQ(bus.status(), natbus::ConnectionStatus::closed);
  }());
  chaos.join();
}

TEST(Fault, ServerLostDuringCloseStillClosesInBoundedTime) {
  NatsServer server;
  NatsConfig cfg = resilient(server.url(), "CLOSELOSS", "closeloss.*");
  cfg.drain_timeout = 2s;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    bool started = false;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      started = true;
      co_await natbus::sleep(500ms);
      try {
        co_await m.ack();
      } catch (const natbus::Error&) {
      }
    };
    auto sub = co_await bus.push_subscribe("closeloss.*", handler, {.durable = "cl"});
    auto msg = BusMessage::from_text("closeloss.a", "x");
    co_await bus.publish(std::move(msg));
    EXPECT_TRUE(co_await eventually([&] { return started; }));
    server.kill();
    const auto t0 = std::chrono::steady_clock::now();
    co_await bus.close();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 6s);
    EXPECT_FALSE(bus.connected());
  }());
}

TEST(Fault, MaxDeliverRoutesToTheDeadLetterSubject) {
  NatsServer server;
  LogCapture logs;
  NatsConfig cfg = resilient(server.url(), "ORDERS", "orders.*");
  cfg.dead_letter_subject = "dlq.orders";
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    const std::vector<std::string> dlq_subjects{"dlq.>"};
    co_await bus.create_stream("DLQ", dlq_subjects);
    int deliveries = 0;
    auto failing = [&](ReceivedMessage) -> Task<void> {
      ++deliveries;
      throw std::runtime_error("cannot process order 42");
      co_return;
    };
    auto sub = co_await bus.push_subscribe("orders.*", failing, {.durable = "orders", .max_deliver = 3});
    auto order =
        BusMessage::from_json("orders.new", {{"id", 42}}, {.sender = "shop", .correlation_id = "corr-42", .message_type = "order"});
    co_await bus.publish(std::move(order));
    auto dlq = co_await bus.pull_subscribe("dlq.>", {.stream = "DLQ", .durable = "dlq_reader"});
    std::vector<ReceivedMessage> dead;
    for (int i = 0; i < 20 && dead.empty(); ++i) dead = co_await dlq.fetch(1, 500ms);
    EXPECT_EQ(deliveries, 3);
    EXPECT_EQ(dead.size(), 1U);
    if (!dead.empty()) {
      const auto& d = dead[0];
      EXPECT_EQ(d.subject(), "dlq.orders");
      EXPECT_EQ(d.as_json()["id"], 42);  // the original payload
      EXPECT_EQ(d.sender(), "shop");     // the original headers
      EXPECT_EQ(d.correlation_id(), "corr-42");
      EXPECT_EQ(d.message_type(), "order");
      EXPECT_EQ(d.content_type(), "application/json");
      EXPECT_EQ(d.header("x-dead-letter-reason").value_or(""), "handler failed on the last delivery");
      EXPECT_EQ(d.header("x-dead-letter-error").value_or(""), "cannot process order 42");
      EXPECT_EQ(d.header("x-dead-letter-subject").value_or(""), "orders.new");
      EXPECT_EQ(d.header("x-dead-letter-stream").value_or(""), "ORDERS");
      EXPECT_EQ(d.header("x-dead-letter-durable").value_or(""), "orders");
      EXPECT_EQ(d.header("x-dead-letter-deliveries").value_or(""), "3");
      EXPECT_EQ(d.header("x-dead-letter-sequence").value_or(""), "1");
    }
    co_await natbus::sleep(500ms);
    EXPECT_EQ(deliveries, 3);  // terminated: no fourth delivery
    auto info = co_await bus.consumer_info("ORDERS", "orders");
    EXPECT_EQ(info.num_ack_pending, 0U);
    co_await bus.close();
  }());
  EXPECT_TRUE(logs.has_event("sub_dead_lettered")) << logs.all();
}

TEST(Fault, StreamDeletedUnderLiveConsumers) {
  NatsServer server;
  LogCapture logs;
  NatsConfig cfg = resilient(server.url(), "GONE", "gone.*");
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    int handled = 0;
    auto handler = [&](ReceivedMessage m) -> Task<void> {
      ++handled;
      co_await m.ack();
    };
    auto push = co_await bus.push_subscribe("gone.*", handler, {.durable = "gone_push"});
    auto pull = co_await bus.pull_subscribe("gone.*", handler, {.durable = "gone_pull", .expires = 1s});
    co_await bus.delete_stream("GONE");
    // The pull loop meets the missing consumer (a refused request, or heartbeats that stop).
    const bool noticed =
        co_await eventually([&] { return logs.has_event("pull_request_refused") || logs.has_event("pull_consumer_recover_failed"); }, 15s);
    EXPECT_TRUE(noticed) << logs.all();
    auto msg = BusMessage::from_text("gone.a", "x");
    EXPECT_THROW(co_await bus.publish(std::move(msg)), natbus::NoStreamError);
    // The bus still works: recreate the stream, subscribe again.
    const std::vector<std::string> subjects{"gone.*"};
    co_await bus.create_stream("GONE", subjects);
    auto again = co_await bus.push_subscribe("gone.*", handler, {.durable = "gone_push2"});
    auto m2 = BusMessage::from_text("gone.a", "y");
    co_await bus.publish(std::move(m2));
    EXPECT_TRUE(co_await eventually([&] { return handled >= 1; }));
    co_await bus.close();
  }());
}

// A connection that ends in the middle of a protocol frame (what a server restart under load
// does by chance): the client must reconnect once, deliver no corrupted message, and go on.
// cnats 3.4.1's own reconnect carries the half frame into the next connection (nats.c#1007): a
// corrupted message, or a parser stuck for good and a reconnect storm. natbus opens a fresh
// connection (and parser) instead.
namespace {
/// A subscriber behind a CutProxy; the proxy ends its connection `cuts` times in a row at
/// `where`. Every message must arrive whole (none built from two connections' bytes), messages
/// must flow again after each cut, and the bus must reconnect exactly once per cut.
void cut_and_check(CutProxy::Cut where, int cuts, const TestCerts* tls) {
  NatsServer server(tls == nullptr ? ServerOptions{} : ServerOptions{.tls_cert = tls->server_cert, .tls_key = tls->server_key});
  CutProxy proxy(server.port());
  NatsConfig pub_cfg = config_for(server);
  if (tls != nullptr) pub_cfg.tls.ca_file = tls->ca_cert;
  NatsConfig sub_cfg = pub_cfg;
  sub_cfg.server = tls == nullptr ? proxy.url() : fmt::format("tls://127.0.0.1:{}", proxy.port());
  sub_cfg.name = "natbus-cut-test";
  sub_cfg.reconnect_time_wait = 50ms;
  sub_cfg.max_reconnect_attempts = -1;
  const std::string filler(1500, 'x');  // frames larger than a socket read or two
  int received = 0;
  int corrupted = 0;
  int last = -1;
  std::uint64_t reconnects = 0;
  natbus::run([&]() -> Task<void> {
    NatsBus publisher{pub_cfg};
    NatsBus subscriber{sub_cfg};
    co_await publisher.connect();
    co_await subscriber.connect();
    auto on_msg = [&](ReceivedMessage m) -> Task<void> {
      const std::string_view text = m.as_text();
      const auto semi = text.find(';');
      const bool ok =
          m.sender() == "cut-test" && text.starts_with("n=") && semi != std::string_view::npos && text.substr(semi + 1) == filler + ";end";
      if (ok) {
        ++received;
        last = std::stoi(std::string(text.substr(2, semi - 2)));
      } else {
        ++corrupted;
        ADD_FAILURE() << "corrupted message: sender=" << m.sender() << " body starts " << text.substr(0, 40);
      }
      co_return;
    };
    auto sub = co_await subscriber.subscribe_core("cut.x", on_msg);
    int n = 0;
    auto publish_some = [&](int count) -> Task<void> {
      for (int i = 0; i < count; ++i, ++n) {
        co_await publisher.publish_core(
            BusMessage::from_text("cut.x", "n=" + std::to_string(n) + ";" + filler + ";end", {.sender = "cut-test"}));
      }
      co_await natbus::sleep(2ms);
    };
    // Flowing, then cut, then flowing again on the new connection; `cuts` times.
    while (received < 200) {
      co_await publish_some(20);
      if (n > 100000) break;
    }
    for (int c = 1; c <= cuts; ++c) {
      proxy.cut_next_message(where);
      const auto cut_deadline = std::chrono::steady_clock::now() + 20s;
      while (proxy.cuts() < c && std::chrono::steady_clock::now() < cut_deadline) co_await publish_some(20);
      EXPECT_EQ(proxy.cuts(), c) << "the proxy never saw a message to cut";
      const int after_cut = n;
      const int received_at_cut = received;
      const auto deadline = std::chrono::steady_clock::now() + 30s;
      while ((last <= after_cut || received < received_at_cut + 300) && std::chrono::steady_clock::now() < deadline) {
        co_await publish_some(20);
      }
      EXPECT_GT(last, after_cut) << "messages stopped flowing after cut " << c << " (connections accepted: " << proxy.accepted() << ")";
      EXPECT_GE(received, received_at_cut + 300) << "connections accepted: " << proxy.accepted();
    }
    EXPECT_EQ(subscriber.status(), natbus::ConnectionStatus::connected);
    reconnects = subscriber.reconnects();
    co_await subscriber.close();
    co_await publisher.close();
  }());
  EXPECT_EQ(corrupted, 0);
  // One connection before the first cut and one after each: a stuck parser would make many more.
  EXPECT_EQ(proxy.accepted(), cuts + 1) << "connections after " << cuts << " cuts";
  EXPECT_EQ(reconnects, static_cast<std::uint64_t>(cuts));
  std::printf("[fault] cut %s%s x%d: received=%d corrupted=%d connections=%d reconnects=%llu\n",
              where == CutProxy::Cut::payload        ? "payload"
              : where == CutProxy::Cut::control_line ? "control line"
                                                     : "anywhere",
              tls != nullptr ? " (TLS)" : "", cuts, received, corrupted, proxy.accepted(), static_cast<unsigned long long>(reconnects));
}
}  // namespace

TEST(Fault, ConnectionCutInsideAPayloadRecoversWithoutCorruption) { cut_and_check(CutProxy::Cut::payload, 3, nullptr); }

TEST(Fault, ConnectionCutInsideAControlLineRecoversWithoutCorruption) { cut_and_check(CutProxy::Cut::control_line, 3, nullptr); }

TEST(Fault, TlsConnectionCutMidRecordRecoversWithoutCorruption) {
  // TLS records cannot be framed from outside: a cut inside one leaves cnats' parser wherever
  // the last whole record ended. A fresh connection (and parser) per reconnect is what helps.
  const TestCerts certs = TestCerts::make();
  cut_and_check(CutProxy::Cut::anywhere, 3, &certs);
}

TEST(Fault, PubAckOutstandingAtLossFailsAtOnceAndPublishesWaitForTheNewConnection) {
  NatsServer server;
  NatsConfig cfg = resilient(server.url(), "LOSS", "loss.*");
  cfg.publish_timeout = 15s;  // the failure must come from the loss, long before this
  std::string what;
  auto lost_after = std::chrono::milliseconds::max();
  std::uint64_t sequence = 0;
  std::thread restarter;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    server.freeze();  // the publish reaches the socket; no PubAck comes
    auto msg = BusMessage::from_text("loss.x", "first", {.msg_id = "first"});
    auto future = co_await bus.publish_async(std::move(msg));
    const auto t0 = std::chrono::steady_clock::now();
    server.kill();  // the frozen server dies: its sockets close under the client
    try {
      (void)co_await std::move(future);
      ADD_FAILURE() << "the PubAck of a publish sent to a dead server arrived";
    } catch (const natbus::ConnectionError& e) {
      what = e.what();
      lost_after = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    }
    EXPECT_EQ(bus.status(), natbus::ConnectionStatus::reconnecting);
    restarter = std::thread([&] { server.start(); });
    // Published while the bus reconnects: waits for the new connection, then is stored.
    auto again = BusMessage::from_text("loss.x", "first", {.msg_id = "first"});
    const natbus::PubAck ack = co_await bus.publish(std::move(again));
    sequence = ack.sequence;
    co_await bus.close();
  }());
  if (restarter.joinable()) restarter.join();
  EXPECT_LT(lost_after, 5s) << "the outcome was reported only after " << lost_after.count() << " ms";
  EXPECT_NE(what.find("retry with the same msg_id"), std::string::npos) << what;
  EXPECT_EQ(sequence, 1U);
}

TEST(Fault, UnboundedPushConsumerIsBoundedAndEveryDropIsCountedAndLogged) {
  // max_ack_pending = -1 and a handler that does not keep up: natbus' and cnats' queues stop at
  // their bounds, cnats drops the excess, and the drops show in the metrics and (rate-limited)
  // in the log. JetStream redelivers what was dropped.
  constexpr int kCount = 150000;
  NatsServer server;
  LogCapture logs;
  NatsConfig cfg = resilient(server.url(), "FLOOD", "flood.*");
  cfg.stream.storage = natbus::StorageType::memory;
  std::uint64_t dropped = 0;
  std::string prometheus;
  natbus::run([&]() -> Task<void> {
    NatsBus publisher{cfg};
    co_await publisher.connect();
    std::vector<natbus::PublishFuture> futures;
    for (int i = 0; i < kCount; ++i) {
      auto msg = BusMessage::from_text("flood.a", "x", {.natbus_headers = false});
      futures.push_back(co_await publisher.publish_async(std::move(msg)));
    }
    co_await publisher.publish_async_complete(60s);
    futures.clear();
    NatsBus bus{cfg};
    co_await bus.connect();
    bool release = false;
    auto stuck = [&](ReceivedMessage m) -> Task<void> {
      while (!release) co_await natbus::sleep(10ms);
      co_await m.ack();
    };
    auto sub = co_await bus.push_subscribe("flood.*", stuck, {.durable = "flood", .max_ack_pending = -1});
    const bool saw = co_await eventually(
        [&] {
          const auto m = bus.metrics();
          return !m.subscriptions.empty() && m.subscriptions.front().dropped > 0;
        },
        60s);
    EXPECT_TRUE(saw) << "no drop was counted";
    dropped = bus.metrics().subscriptions.front().dropped;
    prometheus = bus.prometheus_metrics();
    release = true;
    co_await sub.close();
    co_await bus.close();
    co_await publisher.close();
  }());
  EXPECT_GT(dropped, 0U);
  EXPECT_LT(dropped, static_cast<std::uint64_t>(kCount));
  EXPECT_NE(prometheus.find("natbus_dropped_total{"), std::string::npos);
  int lines = 0;
  for (const auto& l : logs.lines()) lines += l.find("sub_slow_consumer") != std::string::npos ? 1 : 0;
  EXPECT_GE(lines, 1) << "drops were not logged";
  EXPECT_LE(lines, 3) << "drops are logged at most every 10 s";
  std::printf("[fault] flood: dropped=%llu log_lines=%d\n", static_cast<unsigned long long>(dropped), lines);
}

TEST(Fault, MaxReconnectAttemptsEndsTheBusAndEveryConsumerWithTheCause) {
  NatsServer server;
  NatsConfig cfg = resilient(server.url(), "GIVEUP", "giveup.*");
  cfg.max_reconnect_attempts = 3;
  cfg.reconnect_time_wait = 100ms;
  std::vector<natbus::ConnectionStatus> seen;
  std::string reason;
  std::string fetch_error;
  bool stream_ended = false;
  bool push_active_after = true;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    auto on_push = [](ReceivedMessage m) -> Task<void> { co_await m.ack(); };
    auto push = co_await bus.push_subscribe("giveup.*", on_push, {.durable = "gp"});
    auto pull = co_await bus.pull_subscribe("giveup.*", {.durable = "gf"});
    auto stream = co_await bus.messages("giveup.*", {.durable = "gs"});
    server.stop();  // for good
    auto s = bus.status();
    seen.push_back(s);
    // Waits for each change (no polling), bounded: 3 rounds of 100 ms and a 2 s connect timeout each.
    while (s != natbus::ConnectionStatus::closed && seen.size() < 10) {
      const auto next = co_await bus.status_changed(s, 30s);
      if (next == s) break;  // timed out
      s = next;
      seen.push_back(s);
    }
    reason = std::string(bus.closed_reason());
    ReceivedMessage m = co_await stream.next();
    stream_ended = !m;
    try {
      (void)co_await pull.fetch(1, 1s);
    } catch (const natbus::ClosedError& e) {
      fetch_error = e.what();
    }
    push_active_after = push.active();
  }());
  ASSERT_GE(seen.size(), 3U);
  EXPECT_EQ(seen[0], natbus::ConnectionStatus::connected);
  EXPECT_EQ(seen[1], natbus::ConnectionStatus::reconnecting);
  EXPECT_EQ(seen.back(), natbus::ConnectionStatus::closed);
  EXPECT_NE(reason.find("max_reconnect_attempts 3"), std::string::npos) << reason;
  EXPECT_TRUE(stream_ended);
  EXPECT_NE(fetch_error.find("max_reconnect_attempts"), std::string::npos) << fetch_error;
  EXPECT_FALSE(push_active_after);
}

TEST(Fault, LameDuckServerIsLeftForAnotherNodeWithoutLoss) {
  NatsCluster cluster(3);
  cluster.wait_for_jetstream();
  // Only the first node is configured: the others are learnt from the cluster (connect_urls).
  NatsConfig cfg = resilient(cluster.node(0).url(), "LDM", "ldm.*");
  cfg.stream.replicas = 3;
  constexpr int kCount = 600;
  LogCapture logs;
  Seen push_seen;
  std::uint64_t reconnects = 0;
  std::atomic<int> published{0};
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    auto on_push = push_seen.handler();
    auto push = co_await bus.push_subscribe("ldm.*", on_push, {.durable = "lp", .ack_wait = 4s});
    auto first = [&]() -> Task<void> { co_await publish_all(bus, "ldm.a", "m", kCount / 2, published); };
    co_await first();
    ::kill(cluster.node(0).pid(), SIGUSR2);  // lame duck mode: the server asks clients to leave, then exits
    const bool moved = co_await eventually([&] { return bus.reconnects() >= 1; }, 20s);
    EXPECT_TRUE(moved) << "the bus did not leave the lame-duck server";
    std::atomic<int> more{0};
    auto rest = [&]() -> Task<void> { co_await publish_all(bus, "ldm.a", "n", kCount / 2, more); };
    co_await rest();
    const bool all =
        co_await eventually([&] { return push_seen.missing(kCount / 2, "m") == 0 && push_seen.missing(kCount / 2, "n") == 0; }, 60s);
    EXPECT_TRUE(all) << "missing m=" << push_seen.missing(kCount / 2, "m") << " n=" << push_seen.missing(kCount / 2, "n");
    reconnects = bus.reconnects();
    co_await bus.close();
  }());
  EXPECT_GE(reconnects, 1U);
  EXPECT_TRUE(logs.has_event("nats_server_discovered")) << "the other nodes were not learnt from the cluster";
  EXPECT_TRUE(logs.has_event("nats_lame_duck_leaving")) << "the bus waited to be dropped instead of leaving";
  std::printf("[fault] lame duck: reconnects=%llu delivered=%zu duplicates=%d\n", static_cast<unsigned long long>(reconnects),
              push_seen.count.size(), push_seen.duplicates());
}
