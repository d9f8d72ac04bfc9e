// Test support: real nats-server processes on 127.0.0.1, started and stopped by the tests.
//
//   natbus::testing::NatsServer server;                 // JetStream, free port, temp store
//   natbus::testing::NatsServer auth({.user = "app", .password = "s3cret"});
//   server.restart();                                   // same port, same store
//   natbus::testing::NatsCluster cluster(3);            // routes on loopback, JetStream R3
//
// Every wait is bounded; servers are stopped by their own PID (SIGTERM, then SIGKILL), die with
// the test process (PR_SET_PDEATHSIG) and their folders are removed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace natbus::testing {

/// Thrown for harness problems (nats-server missing, port in use, server did not start).
class HarnessError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ServerOptions {
  bool jetstream = true;
  std::string user{};
  std::string password{};
  std::string token{};
  /// TLS: server certificate and key (PEM); ca_file to verify client certificates.
  std::string tls_cert{};
  std::string tls_key{};
  std::string tls_ca{};
  bool tls_verify_clients = false;
  /// 0: a free port is picked.
  int port = 0;
  std::string name{};
  /// Server-side ping interval/max (0: server defaults). Small values make the server notice a
  /// frozen client quickly.
  std::chrono::milliseconds ping_interval{0};
  int ping_max = 0;
  /// Extra lines for the configuration file.
  std::vector<std::string> extra_config{};
  /// Max payload (0: server default, 1 MiB).
  int max_payload = 0;
  /// How long start() waits for the server to accept connections.
  std::chrono::milliseconds start_timeout{15000};
  /// Readiness: also wait until JetStream answers.
  bool wait_for_jetstream = true;
  /// Credentials file the readiness check logs in with (operator/JWT configurations).
  std::string ready_credentials{};
  std::chrono::milliseconds stop_timeout{10000};
};

class NatsServer {
 public:
  explicit NatsServer(ServerOptions options = {}, bool start_now = true);
  ~NatsServer();
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  /// Starts the server and waits until it accepts connections (and, with JetStream, answers
  /// $JS.API.INFO). Throws HarnessError with the log's tail when it does not.
  void start();
  /// SIGTERM, wait (bounded), then SIGKILL. Idempotent.
  void stop();
  /// SIGKILL at once (a crash).
  void kill();
  /// stop() (or kill() when `hard`), then start() on the same port and store.
  void restart(bool hard = false);
  /// SIGSTOP / SIGCONT: a frozen server (or, used on a client, a frozen pod).
  void freeze();
  void thaw();

  [[nodiscard]] bool running() const;
  [[nodiscard]] int port() const noexcept { return port_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  /// "nats://127.0.0.1:<port>" (tls:// when TLS is on).
  [[nodiscard]] std::string url() const;
  [[nodiscard]] const std::string& dir() const noexcept { return dir_; }
  [[nodiscard]] const std::string& store_dir() const noexcept { return store_; }
  [[nodiscard]] const std::string& log_file() const noexcept { return log_; }
  [[nodiscard]] std::string log_tail(std::size_t lines = 20) const;
  [[nodiscard]] const ServerOptions& options() const noexcept { return opts_; }
  /// Cluster use: lines for the cluster block, set before start().
  void set_cluster(std::string cluster_block) { cluster_block_ = std::move(cluster_block); }

  /// Path of the nats-server binary: $NATS_SERVER, else PATH, else /usr/sbin, /usr/bin.
  static std::string binary();
  /// Test hook: how long start() sleeps right after spawning the server, standing in for a test
  /// thread that the scheduler does not run while the server starts (0: none).
  static inline std::chrono::milliseconds pause_after_spawn{0};

 private:
  void write_config();
  bool wait_ready(std::chrono::milliseconds timeout, std::string& why);
  [[nodiscard]] bool log_says_ready() const;

  ServerOptions opts_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::string dir_;
  std::string store_;
  std::string log_;
  std::uintmax_t log_offset_ = 0;  // where the current process' lines start in log_
  std::string conf_;
  std::string cluster_block_;
};

/// n JetStream servers routed together on loopback, cluster "natbus", names N1..Nn.
class NatsCluster {
 public:
  explicit NatsCluster(int n = 3, ServerOptions base = {});
  ~NatsCluster();
  NatsCluster(const NatsCluster&) = delete;
  NatsCluster& operator=(const NatsCluster&) = delete;

  NatsServer& node(std::size_t i) { return *nodes_.at(i); }
  [[nodiscard]] std::size_t size() const noexcept { return nodes_.size(); }
  /// "nats://127.0.0.1:p1,nats://127.0.0.1:p2,..."
  [[nodiscard]] std::string urls() const;
  /// Waits until JetStream has a meta leader (bounded).
  void wait_for_jetstream(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  /// The node whose server_name is `name` (as reported in stream info's cluster.leader).
  NatsServer& by_name(const std::string& name);

 private:
  std::vector<std::unique_ptr<NatsServer>> nodes_;
};

/// A free TCP port on 127.0.0.1, below the kernel's ephemeral range (so no outgoing connection
/// takes it while its server restarts) and held by this process until it exits (so no test
/// running beside it gets the same one).
int free_port();
/// True when something accepts connections on 127.0.0.1:port.
bool port_open(int port);
/// A new empty temporary folder "natbus-test-<tag>-XXXXXX" under $TMPDIR (or /tmp); the tag
/// comes from $NATBUS_TEST_TAG so that one suite can find its own leftovers.
std::string make_temp_dir(const std::string& what);
/// Removes a folder tree (best effort).
void remove_tree(const std::string& path);

/// Test CA, server and client certificates made with the openssl command line.
struct TestCerts {
  std::string dir;
  std::string ca_cert, ca_key;
  std::string server_cert, server_key;  ///< for 127.0.0.1 / localhost
  std::string client_cert, client_key;
  std::string other_ca_cert;  ///< a CA that signed nothing here (untrusted)
  static TestCerts make();
  ~TestCerts();
  TestCerts() = default;
  TestCerts(TestCerts&&) noexcept;
  TestCerts& operator=(TestCerts&&) = delete;
  TestCerts(const TestCerts&) = delete;
  TestCerts& operator=(const TestCerts&) = delete;
};

/// Polls `cond` every `step` until it is true or `timeout` passes; returns the last result.
template <class F>
bool wait_until(F&& cond, std::chrono::milliseconds timeout, std::chrono::milliseconds step = std::chrono::milliseconds(20));

}  // namespace natbus::testing

#include <thread>

template <class F>
bool natbus::testing::wait_until(F&& cond, std::chrono::milliseconds timeout, std::chrono::milliseconds step) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return cond();
    std::this_thread::sleep_for(step);
  }
}
