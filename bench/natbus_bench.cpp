// natbus-bench: natbus in the peer benchmark harness (../shared/bench-peers, run.sh).
//
//   natbus-bench MODE PORT N SIZE [memory|file]
//
// Prints exactly one line, as the peers do:
//   natbus mode=<m> msgs=<N> size=<B> storage=<s> secs=<S> rate=<N/S> cpu=<s> srv_cpu=<s> host_busy=<s>
//          [p50_us= p99_us=] [errors=] [lost=] [allocs_per_msg=] [peak_rss_mb=]
// cpu: this process' user+sys CPU in the timed section; srv_cpu: the server's (BENCH_SERVER_PID);
// host_busy: all CPUs of the host (/proc/stat). Setup is the peers': a fresh stream per mode
// (BENCH_<MODE> on bench.<mode>, 1 replica), consume modes pre-filled with core publishes
// before timing, max_ack_pending 1000, pull batches of 256, 4096 publishes in flight.
// Heap allocations are counted by a replaced operator new/malloc hook (allocs_per_msg).
#include <dlfcn.h>
#include <nats/nats.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "natbus/natbus.hpp"

using namespace std::chrono_literals;

// ---- allocation counting ---------------------------------------------------------------------
// Counts every heap allocation of the process (natbus, cnats, libstdc++) while enabled.
namespace {
std::atomic<std::uint64_t> g_allocs{0};
std::atomic<bool> g_counting{false};
}  // namespace

// Sanitizer builds (the test suite's smoke run) leave malloc to the sanitizer's own interceptors.
#ifndef NATBUS_BENCH_NO_ALLOC_HOOKS
extern "C" {
// cnats allocates with malloc/calloc/realloc: interpose them too.
void* malloc(std::size_t size) {
  static auto* real = reinterpret_cast<void* (*)(std::size_t)>(dlsym(RTLD_NEXT, "malloc"));
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
  return real(size);
}
void* calloc(std::size_t n, std::size_t size) {
  // dlsym itself may call calloc: serve that from a static buffer.
  static char boot[4096];
  static std::size_t used = 0;
  using Fn = void* (*)(std::size_t, std::size_t);
  static Fn real = nullptr;
  static bool resolving = false;
  if (real == nullptr) {
    if (resolving) {
      void* p = boot + used;
      used += (n * size + 15) & ~std::size_t{15};
      return p;
    }
    resolving = true;
    real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "calloc"));
    resolving = false;
  }
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
  return real(n, size);
}
void* realloc(void* p, std::size_t size) {
  static auto* real = reinterpret_cast<void* (*)(void*, std::size_t)>(dlsym(RTLD_NEXT, "realloc"));
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
  return real(p, size);
}
}
#endif

namespace {

const char* g_mode = "?";
constexpr int kAsyncMaxPending = 4096;
constexpr int kFetchBatch = 256;
constexpr int kMaxAckPending = 1000;
constexpr auto kDeadline = 120s;

[[noreturn]] void fail(const std::string& what) {
  std::string w = what;
  for (auto& c : w) {
    if (std::isspace(static_cast<unsigned char>(c))) c = '_';
  }
  std::printf("natbus mode=%s error=%s\n", g_mode, w.c_str());
  std::fflush(stdout);
  std::exit(1);  // NOLINT(concurrency-mt-unsafe): the benchmark ends here, as the peers do
}

double cpu_self() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_utime.tv_usec) / 1e6 +
         static_cast<double>(ru.ru_stime.tv_sec) + static_cast<double>(ru.ru_stime.tv_usec) / 1e6;
}

double cpu_server() {
  const char* pid = std::getenv("BENCH_SERVER_PID");  // NOLINT(concurrency-mt-unsafe): nothing sets the environment
  if (pid == nullptr || *pid == '\0') return -1;
  const std::string path = std::string("/proc/") + pid + "/stat";
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return -1;
  char buf[2048];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return -1;
  // Fields after ')' start at field 3 (state); utime is field 14, stime field 15.
  unsigned long long ut = 0;
  unsigned long long st = 0;
  if (std::sscanf(p + 2, "%*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu", &ut, &st) != 2) return -1;
  const long tck = sysconf(_SC_CLK_TCK);
  return static_cast<double>(ut + st) / static_cast<double>(tck > 0 ? tck : 100);
}

double cpu_host() {
  std::FILE* f = std::fopen("/proc/stat", "r");
  if (f == nullptr) return -1;
  unsigned long long v[8] = {};
  const int k = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
  std::fclose(f);
  if (k < 8) return -1;
  const long tck = sysconf(_SC_CLK_TCK);
  return static_cast<double>(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / static_cast<double>(tck > 0 ? tck : 100);
}

long peak_rss_kb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

struct Timer {
  std::chrono::steady_clock::time_point t0, t1;
  double cpu0 = 0, cpu1 = 0, srv0 = 0, srv1 = 0, host0 = 0, host1 = 0;
  std::uint64_t allocs0 = 0, allocs1 = 0;
  void start() {
    host0 = cpu_host();
    srv0 = cpu_server();
    cpu0 = cpu_self();
    allocs0 = g_allocs.load();
    g_counting.store(true);
    t0 = std::chrono::steady_clock::now();
  }
  void stop() {
    t1 = std::chrono::steady_clock::now();
    g_counting.store(false);
    allocs1 = g_allocs.load();
    cpu1 = cpu_self();
    srv1 = cpu_server();
    host1 = cpu_host();
  }
};

// NATBUS_BENCH_HEADERS=natbus (default): every message carries natbus' wire contract
// (content-type, x-trace-id, x-correlation-id, x-sent-at: ~190 bytes the server parses and
// stores too). =trace: the same plus a W3C traceparent (what tracing on costs).
// =none: bare messages, byte for byte what the peers publish.
const char* headers_mode() {
  static const char* mode = [] {
    const char* h = std::getenv("NATBUS_BENCH_HEADERS");  // NOLINT(concurrency-mt-unsafe): nothing sets the environment
    if (h != nullptr && std::strcmp(h, "none") == 0) return "none";
    if (h != nullptr && std::strcmp(h, "trace") == 0) return "trace";
    return "natbus";
  }();
  return mode;
}
bool bare_messages() { return std::strcmp(headers_mode(), "none") == 0; }
natbus::TraceParent traceparent() {
  return std::strcmp(headers_mode(), "trace") == 0 ? natbus::TraceParent::always : natbus::TraceParent::automatic;
}

void report(const Timer& t, long n, int size, const char* storage, const std::string& extra) {
  const double secs = std::chrono::duration<double>(t.t1 - t.t0).count();
  std::string line = fmt::format("natbus mode={} msgs={} size={} storage={} secs={:.3f} rate={:.0f} cpu={:.2f}", g_mode, n, size, storage,
                                 secs, secs > 0 ? static_cast<double>(n) / secs : 0.0, t.cpu1 - t.cpu0);
  if (t.srv0 >= 0 && t.srv1 >= 0) line += fmt::format(" srv_cpu={:.2f}", t.srv1 - t.srv0);
  if (t.host0 >= 0 && t.host1 >= 0) line += fmt::format(" host_busy={:.2f}", t.host1 - t.host0);
  if (!extra.empty()) line += " " + extra;
  line += fmt::format(" headers={}", headers_mode());
#ifdef NATBUS_BENCH_NO_ALLOC_HOOKS
  line += fmt::format(" allocs_per_msg=n/a peak_rss_mb={:.1f}", static_cast<double>(peak_rss_kb()) / 1024.0);
#else
  line += fmt::format(" allocs_per_msg={:.2f} peak_rss_mb={:.1f}", static_cast<double>(t.allocs1 - t.allocs0) / static_cast<double>(n),
                      static_cast<double>(peak_rss_kb()) / 1024.0);
#endif
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

struct Args {
  int port = 0;
  long n = 0;
  int size = 0;
  bool file = false;
  std::string stream, subject, payload;
};

// Untimed pre-fill, as the peers do it: core publishes, flush, poll stream info.
void prefill(const Args& a) {
  natsConnection* nc = nullptr;
  const std::string url = fmt::format("nats://127.0.0.1:{}", a.port);
  if (natsConnection_ConnectTo(&nc, url.c_str()) != NATS_OK) fail("prefill_connect");
  for (long i = 0; i < a.n; ++i) {
    if (natsConnection_Publish(nc, a.subject.c_str(), a.payload.data(), static_cast<int>(a.payload.size())) != NATS_OK) {
      fail("prefill_publish");
    }
  }
  natsConnection_FlushTimeout(nc, 10000);
  jsCtx* js = nullptr;
  natsConnection_JetStream(&js, nc, nullptr);
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  std::uint64_t have = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (js_GetStreamInfo(&si, js, a.stream.c_str(), nullptr, &jerr) == NATS_OK) {
      have = si->State.Msgs;
      jsStreamInfo_Destroy(si);
      if (have >= static_cast<std::uint64_t>(a.n)) break;
    }
    nats_Sleep(20);
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  if (have < static_cast<std::uint64_t>(a.n)) fail(fmt::format("prefill_stored_{}_of_{}", have, a.n));
}

natbus::Task<void> fresh_stream(natbus::NatsBus& bus, const Args& a) {
  try {
    co_await bus.delete_stream(a.stream);
  } catch (const natbus::NotFoundError&) {
  }
  natbus::StreamOptions so;
  so.storage = a.file ? natbus::StorageType::file : natbus::StorageType::memory;
  so.replicas = 1;
  const std::vector<std::string> subjects{a.subject};
  co_await bus.create_stream(a.stream, subjects, so);
}

natbus::BusMessage make_msg(const Args& a) {
  static const bool bare = bare_messages();
  return natbus::BusMessage::from_bytes(a.subject, a.payload, {.traceparent = traceparent(), .natbus_headers = !bare});
}

// NATBUS_BENCH_IDLE_SUBS=K: K more core subscriptions, on subjects nothing publishes to, live on
// the receiving bus during the timed section (what a service with many subscriptions pays per
// read). Reported as idle_subs=K.
int idle_subs_wanted() {
  const char* k = std::getenv("NATBUS_BENCH_IDLE_SUBS");  // NOLINT(concurrency-mt-unsafe): nothing sets the environment
  return k != nullptr ? std::max(0, std::atoi(k)) : 0;
}

natbus::Task<std::vector<natbus::Subscription>> idle_subs(natbus::NatsBus& bus) {
  std::vector<natbus::Subscription> subs;
  auto idle = [](natbus::ReceivedMessage&) -> natbus::Task<void> { co_return; };
  for (int i = 0; i < idle_subs_wanted(); ++i) {
    const std::string subject = fmt::format("bench.idle.{}", i);
    subs.push_back(co_await bus.subscribe_core(subject, idle));
  }
  co_return subs;
}

natbus::Task<int> bench(Args a) {
  const std::string mode = g_mode;
  natbus::NatsConfig cfg;
  cfg.server = fmt::format("nats://127.0.0.1:{}", a.port);
  cfg.name = "natbus-bench";
  cfg.max_pending_publishes = kAsyncMaxPending;
  cfg.publish_timeout = 10s;
  cfg.js_api_timeout = 10s;
  cfg.deliver_policy = natbus::DeliverPolicy::all;
  cfg.max_ack_pending = kMaxAckPending;
  natbus::NatsBus bus{cfg};
  co_await bus.connect();
  const char* storage = a.file ? "file" : "memory";
  Timer t;
  std::string extra;
  // On the bus that receives (core_pub_sub: its receiver), made before the timed section.
  std::vector<natbus::Subscription> idle;
  if (mode != "core_pub_sub") idle = co_await idle_subs(bus);

  if (mode == "js_pub_sync") {
    co_await fresh_stream(bus, a);
    t.start();
    for (long i = 0; i < a.n; ++i) {
      auto msg = make_msg(a);
      co_await bus.publish(std::move(msg));
    }
    t.stop();
  } else if (mode == "js_pub_async") {
    co_await fresh_stream(bus, a);
    long errors = 0;
    std::deque<natbus::PublishFuture> inflight;
    t.start();
    for (long i = 0; i < a.n; ++i) {
      auto msg = make_msg(a);
      inflight.push_back(co_await bus.publish_async(std::move(msg)));
      while (!inflight.empty() && inflight.front().ready()) {
        try {
          co_await std::move(inflight.front());
        } catch (const natbus::Error&) {
          ++errors;
        }
        inflight.pop_front();
      }
    }
    co_await bus.publish_async_complete(kDeadline);
    for (auto& f : inflight) {
      try {
        co_await std::move(f);
      } catch (const natbus::Error&) {
        ++errors;
      }
    }
    t.stop();
    if (errors > 0) extra = fmt::format("errors={}", errors);
  } else if (mode == "js_push_consume" || mode == "js_pull_consume" || mode == "js_consume") {
    co_await fresh_stream(bus, a);
    prefill(a);
    long got = 0;
    long errors = 0;
    auto handler = [&](natbus::ReceivedMessage& m) -> natbus::Task<void> {
      try {
        co_await m.ack();
      } catch (const natbus::Error&) {
        ++errors;
      }
      ++got;
    };
    t.start();
    natbus::Subscription sub;
    if (mode == "js_push_consume") {
      sub = co_await bus.push_subscribe(a.subject, handler, {.durable = "bench_push", .max_ack_pending = kMaxAckPending});
    } else {
      sub = co_await bus.pull_subscribe(
          a.subject, handler,
          {.stream = a.stream, .durable = "bench_pull", .batch = kFetchBatch, .expires = 5s, .max_ack_pending = kMaxAckPending});
    }
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (got < a.n && std::chrono::steady_clock::now() < deadline) co_await natbus::sleep(1ms);
    co_await bus.flush(10s);
    t.stop();
    if (got < a.n) fail(fmt::format("timeout_received_{}_of_{}", got, a.n));
    if (errors > 0) extra = fmt::format("errors={}", errors);
  } else if (mode == "e2e_latency") {
    // Publish at a fixed rate with a push consumer running; latency from publish to handler entry.
    co_await fresh_stream(bus, a);
    const char* rate_env = std::getenv("E2E_RATE");  // NOLINT(concurrency-mt-unsafe): nothing sets the environment
    const long rate = rate_env != nullptr ? std::atol(rate_env) : 5000;
    std::vector<std::int64_t> lat;
    lat.reserve(static_cast<std::size_t>(a.n));
    auto handler = [&](natbus::ReceivedMessage& m) -> natbus::Task<void> {
      const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
      std::int64_t sent = 0;
      const auto p = m.payload();
      if (p.size() >= sizeof sent) std::memcpy(&sent, p.data(), sizeof sent);
      lat.push_back(now - sent);
      co_await m.ack();
    };
    auto sub = co_await bus.push_subscribe(a.subject, handler, {.durable = "bench_e2e", .max_ack_pending = kMaxAckPending});
    std::string payload = a.payload;
    if (payload.size() < sizeof(std::int64_t)) payload.resize(sizeof(std::int64_t));
    const auto period = std::chrono::nanoseconds(1000000000L / std::max(1L, rate));
    t.start();
    auto next = std::chrono::steady_clock::now();
    for (long i = 0; i < a.n; ++i) {
      next += period;
      if (next > std::chrono::steady_clock::now()) co_await natbus::sleep_until(next);
      const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
      std::memcpy(payload.data(), &now, sizeof now);
      auto msg = natbus::BusMessage::from_bytes(a.subject, payload, {.traceparent = traceparent(), .natbus_headers = !bare_messages()});
      auto f = co_await bus.publish_async(std::move(msg));
      (void)f;
    }
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (static_cast<long>(lat.size()) < a.n && std::chrono::steady_clock::now() < deadline) co_await natbus::sleep(1ms);
    t.stop();
    if (static_cast<long>(lat.size()) < a.n) fail(fmt::format("timeout_received_{}_of_{}", lat.size(), a.n));
    std::sort(lat.begin(), lat.end());
    const auto at = [&](double q) {
      return static_cast<double>(lat[static_cast<std::size_t>(q * static_cast<double>(lat.size() - 1))]) / 1e3;
    };
    extra = fmt::format("p50_us={:.1f} p99_us={:.1f} rate_target={}", at(0.50), at(0.99), rate);
  } else if (mode == "req_reply_latency") {
    // Sequential core requests to an echo responder on a second connection (same process).
    natbus::NatsBus responder{cfg};
    co_await responder.connect();
    auto echo = [&responder](natbus::ReceivedMessage& m) -> natbus::Task<void> {
      auto answer =
          natbus::BusMessage::from_bytes(m.reply(), m.payload(), {.traceparent = traceparent(), .natbus_headers = !bare_messages()});
      co_await responder.publish_core(std::move(answer));
    };
    auto sub = co_await responder.subscribe_core(a.subject, echo);
    for (int i = 0; i < 200; ++i) {  // untimed warm-up, as the peers
      auto r = co_await bus.request(make_msg(a), 5s);
      (void)r;
    }
    std::vector<std::int64_t> lat;
    lat.reserve(static_cast<std::size_t>(a.n));
    t.start();
    for (long i = 0; i < a.n; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      auto r = co_await bus.request(make_msg(a), 5s);
      lat.push_back((std::chrono::steady_clock::now() - t0).count());
      if (r.raw_payload().size() != a.payload.size()) fail("echo_payload_mismatch");
    }
    t.stop();
    std::sort(lat.begin(), lat.end());
    const auto at = [&](double q) {
      return static_cast<double>(lat[static_cast<std::size_t>(q * static_cast<double>(lat.size() - 1))]) / 1e3;
    };
    extra = fmt::format("p50_us={:.1f} p99_us={:.1f}", at(0.50), at(0.99));
    co_await sub.close();
    co_await responder.close();
  } else if (mode == "core_pub_sub") {
    // Core publishes on one connection, counted by a subscriber on a second one.
    natbus::NatsBus receiver{cfg};
    co_await receiver.connect();
    long got = 0;
    auto count = [&got](natbus::ReceivedMessage) -> natbus::Task<void> {
      ++got;
      co_return;
    };
    auto sub = co_await receiver.subscribe_core(a.subject, count);
    idle = co_await idle_subs(receiver);
    t.start();
    for (long i = 0; i < a.n; ++i) co_await bus.publish_core(make_msg(a));
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (got < a.n && std::chrono::steady_clock::now() < deadline) co_await natbus::sleep(1ms);
    t.stop();
    if (got < a.n) fail(fmt::format("lost_{}_of_{}", a.n - got, a.n));
    idle.clear();
    co_await sub.close();
    co_await receiver.close();
  } else {
    std::printf("natbus mode=%s unsupported=not_implemented_yet\n", g_mode);
    std::fflush(stdout);
    co_await bus.close();
    co_return 3;
  }
  if (idle_subs_wanted() > 0) extra += fmt::format("{}idle_subs={}", extra.empty() ? "" : " ", idle_subs_wanted());
  report(t, a.n, a.size, storage, extra);
  try {
    co_await bus.delete_stream(a.stream);
  } catch (const natbus::Error&) {
  }
  co_await bus.close();
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODE PORT N SIZE [memory|file]\n", argv[0]);
    return 2;
  }
  g_mode = argv[1];
  Args a;
  a.port = std::atoi(argv[2]);
  a.n = std::atol(argv[3]);
  a.size = std::atoi(argv[4]);
  a.file = argc > 5 && std::strcmp(argv[5], "file") == 0;
  if (a.n <= 0 || a.size < 0 || a.port <= 0) {
    std::fprintf(stderr, "bad arguments\n");
    return 2;
  }
  a.stream = std::string("BENCH_") + g_mode;
  for (auto& c : a.stream) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  a.subject = std::string("bench.") + g_mode;
  a.payload.resize(static_cast<std::size_t>(a.size));
  for (int i = 0; i < a.size; ++i) a.payload[static_cast<std::size_t>(i)] = static_cast<char>('a' + i % 26);
  natbus::set_log_level(natbus::LogLevel::warn);
  try {
    return natbus::run(bench(std::move(a)));
  } catch (const std::exception& e) {
    fail(e.what());
  }
}
