// The test harness itself: real servers start, restart, stop and leave nothing behind; a raw
// cnats client publishes a JetStream message through them (the harness is proven independently
// of natbus).
#include <gtest/gtest.h>
#include <nats/nats.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include "support/nats_server.hpp"

using namespace std::chrono_literals;
using natbus::testing::HarnessError;
using natbus::testing::NatsCluster;
using natbus::testing::NatsServer;
using natbus::testing::ServerOptions;

namespace {

bool process_alive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

// Raw cnats: create a stream and publish one message; returns its sequence.
std::uint64_t raw_js_publish(const std::string& url, const char* stream, const char* subject) {
  natsConnection* nc = nullptr;
  EXPECT_EQ(natsConnection_ConnectTo(&nc, url.c_str()), NATS_OK);
  if (nc == nullptr) return 0;
  jsCtx* js = nullptr;
  EXPECT_EQ(natsConnection_JetStream(&js, nc, nullptr), NATS_OK);
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = stream;
  const char* subjects[] = {subject};
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsStreamInfo* si = nullptr;
  natsStatus s = js_AddStream(&si, js, &cfg, nullptr, &jerr);
  if (s == NATS_OK) jsStreamInfo_Destroy(si);
  jsPubAck* pa = nullptr;
  s = js_Publish(&pa, js, subject, "hello", 5, nullptr, &jerr);
  EXPECT_EQ(s, NATS_OK) << natsStatus_GetText(s);
  const std::uint64_t seq = pa != nullptr ? pa->Sequence : 0;
  jsPubAck_Destroy(pa);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return seq;
}

}  // namespace

TEST(Harness, StartsAServerThatTakesJetStreamPublishes) {
  NatsServer server;
  EXPECT_TRUE(server.running());
  EXPECT_GT(server.port(), 0);
  EXPECT_EQ(server.url(), "nats://127.0.0.1:" + std::to_string(server.port()));
  EXPECT_EQ(raw_js_publish(server.url(), "HARNESS", "harness.one"), 1U);
  EXPECT_EQ(raw_js_publish(server.url(), "HARNESS", "harness.one"), 2U);
}

TEST(Harness, AServerThatIsReadyBeforeThisThreadLooksIsSeenReady) {
  // The server writes its whole start-up log, "Server is ready" included, before start() looks
  // at the log (a loaded machine; CI's lint ran beside it). start() must still see it ready.
  NatsServer::pause_after_spawn = std::chrono::milliseconds(500);
  ServerOptions o;
  o.start_timeout = std::chrono::seconds(3);
  std::optional<NatsServer> server;
  try {
    server.emplace(o);
  } catch (...) {
    NatsServer::pause_after_spawn = std::chrono::milliseconds(0);
    throw;
  }
  NatsServer::pause_after_spawn = std::chrono::milliseconds(0);
  EXPECT_TRUE(server->running());
}

TEST(Harness, RestartKeepsPortAndStore) {
  NatsServer server;
  const int port = server.port();
  const pid_t first = server.pid();
  ASSERT_EQ(raw_js_publish(server.url(), "KEEP", "keep.it"), 1U);
  server.restart(/*hard=*/true);  // SIGKILL, then start on the same port and store
  EXPECT_EQ(server.port(), port);
  EXPECT_NE(server.pid(), first);
  EXPECT_FALSE(process_alive(first));
  EXPECT_EQ(raw_js_publish(server.url(), "KEEP", "keep.it"), 2U);  // the stream survived
  server.restart();                                                // SIGTERM this time
  EXPECT_EQ(raw_js_publish(server.url(), "KEEP", "keep.it"), 3U);
}

TEST(Harness, StopLeavesNoProcessAndNoFolder) {
  pid_t pid = -1;
  std::string dir;
  {
    NatsServer server;
    pid = server.pid();
    dir = server.dir();
    EXPECT_TRUE(std::filesystem::exists(dir));
  }
  EXPECT_FALSE(process_alive(pid));
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(Harness, PortInUseIsAClearError) {
  NatsServer first;
  try {
    NatsServer second(ServerOptions{.port = first.port()});
    FAIL() << "expected HarnessError";
  } catch (const HarnessError& e) {
    EXPECT_NE(std::string(e.what()).find("already in use"), std::string::npos) << e.what();
  }
}

// A server restarted on its port must find the port free. A port from the kernel's ephemeral
// range can meanwhile be taken as the local port of any outgoing connection (CI once saw
// "bind: address already in use" on a TLS server's restart), and a second test process must not
// be handed a port whose server is only down for a restart.
TEST(Harness, FreePortsAreBelowTheEphemeralRangeAndNeverHandedOutTwice) {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  int high = 0;
  ASSERT_TRUE(range >> low >> high);
  std::set<int> mine;
  for (int i = 0; i < 20; ++i) {
    const int port = natbus::testing::free_port();
    EXPECT_LT(port, low) << port << " is in the ephemeral range " << low << ".." << high;
    EXPECT_GT(port, 1023);
    EXPECT_TRUE(mine.insert(port).second) << port << " handed out twice";
  }
  // Another process, running beside this one, gets none of them.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    for (int i = 0; i < 200; ++i) {
      const int port = natbus::testing::free_port();
      if (::write(fds[1], &port, sizeof port) != sizeof port) ::_exit(2);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  int port = 0;
  int got = 0;
  while (::read(fds[0], &port, sizeof port) == sizeof port) {
    ++got;
    EXPECT_EQ(mine.count(port), 0U) << port << " was given to both processes";
  }
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(got, 200);
}

TEST(Harness, MissingBinaryIsAClearError) {
  ::setenv("NATS_SERVER", "/nonexistent/nats-server", 1);
  try {
    NatsServer server;
    ::unsetenv("NATS_SERVER");
    FAIL() << "expected HarnessError";
  } catch (const HarnessError& e) {
    ::unsetenv("NATS_SERVER");
    EXPECT_NE(std::string(e.what()).find("NATS_SERVER"), std::string::npos) << e.what();
  }
}

TEST(Harness, BadConfigFailsFastWithTheLog) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    NatsServer server(ServerOptions{.extra_config = {"this is { not valid"}});
    FAIL() << "expected HarnessError";
  } catch (const HarnessError& e) {
    EXPECT_NE(std::string(e.what()).find("did not become ready"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);  // the exit is noticed, no long wait
}

TEST(Harness, AuthServerRefusesWrongPassword) {
  NatsServer server(ServerOptions{.user = "app", .password = "s3cret"});
  natsConnection* nc = nullptr;
  const std::string bad = "nats://app:wrong@127.0.0.1:" + std::to_string(server.port());
  EXPECT_EQ(natsConnection_ConnectTo(&nc, bad.c_str()), NATS_CONNECTION_AUTH_FAILED);
  const std::string good = "nats://app:s3cret@127.0.0.1:" + std::to_string(server.port());
  ASSERT_EQ(natsConnection_ConnectTo(&nc, good.c_str()), NATS_OK);
  natsConnection_Destroy(nc);
}

TEST(Harness, ThreeNodeClusterWithReplicatedStream) {
  NatsCluster cluster(3);
  std::vector<pid_t> pids;
  for (std::size_t i = 0; i < cluster.size(); ++i) pids.push_back(cluster.node(i).pid());
  natsConnection* nc = nullptr;
  natsOptions* o = nullptr;
  natsOptions_Create(&o);
  std::vector<std::string> urls;
  for (std::size_t i = 0; i < cluster.size(); ++i) urls.push_back(cluster.node(i).url());
  std::vector<const char*> curls;
  for (const auto& u : urls) curls.push_back(u.c_str());
  natsOptions_SetServers(o, curls.data(), static_cast<int>(curls.size()));
  ASSERT_EQ(natsConnection_Connect(&nc, o), NATS_OK);
  jsCtx* js = nullptr;
  natsConnection_JetStream(&js, nc, nullptr);
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = "R3";
  const char* subjects[] = {"r3.>"};
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Replicas = 3;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  ASSERT_EQ(js_AddStream(&si, js, &cfg, nullptr, &jerr), NATS_OK) << jerr;
  ASSERT_NE(si->Cluster, nullptr);
  ASSERT_NE(si->Cluster->Leader, nullptr);
  EXPECT_EQ(si->Config->Replicas, 3);
  const std::string leader = si->Cluster->Leader;
  jsStreamInfo_Destroy(si);
  // Restart the stream leader: the stream keeps taking messages.
  cluster.by_name(leader).restart(/*hard=*/true);
  jsPubAck* pa = nullptr;
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 10000;
  const bool published = natbus::testing::wait_until(
      [&] {
        if (js_Publish(&pa, js, "r3.a", "x", 1, &po, &jerr) != NATS_OK) return false;
        jsPubAck_Destroy(pa);
        return true;
      },
      30s, 200ms);
  EXPECT_TRUE(published);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  natsOptions_Destroy(o);
  for (std::size_t i = 0; i < cluster.size(); ++i) cluster.node(i).stop();
  for (pid_t p : pids) EXPECT_FALSE(process_alive(p));
}
