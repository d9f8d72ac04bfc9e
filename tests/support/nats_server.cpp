#include "nats_server.hpp"

#include "spawner.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <random>
#include <sstream>
#include <string_view>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace natbus::testing {

namespace fs = std::filesystem;

namespace {
/// NATBUS_TEST_SERVER_DEBUG: "1" (debug log) or "trace" (with every protocol line); the server's
/// folder is then kept for reading. Empty when unset.
std::string_view server_debug() {
  const char* v = std::getenv("NATBUS_TEST_SERVER_DEBUG");  // NOLINT(concurrency-mt-unsafe): nothing sets it
  return v == nullptr ? std::string_view{} : std::string_view(v);
}
}  // namespace

namespace {
/// The kernel's ephemeral range: connect() takes its local ports from it, so a server port picked
/// there can be taken by any outgoing connection (or a TCP self-connect) while the server is down
/// for a restart, and the restarted server then fails with "address already in use".
std::pair<int, int> ephemeral_range() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 32768;
  int high = 60999;
  if (!(in >> low >> high)) return {32768, 60999};
  return {low, high};
}

bool can_bind(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw HarnessError(fmt::format("free_port: socket: {}", std::strerror(errno)));
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // as nats-server binds
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

/// Holds a port for this process's life: an flock on /tmp/natbus-test-ports/<port>, so that test
/// processes running side by side never hand out the same port, even while its server is down.
/// The kernel drops the lock when the process ends, however it ends.
bool reserve(int port) {
  static std::mutex mu;
  static std::vector<int> held;                   // the lock descriptors, open until exit
  const fs::path dir = "/tmp/natbus-test-ports";  // not $TMPDIR: every test process must share it
  std::error_code ec;
  fs::create_directories(dir, ec);
  ::chmod(dir.c_str(), 01777);  // shared by every user's test runs, like /tmp
  const std::string file = (dir / std::to_string(port)).string();
  const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return false;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return false;
  }
  const std::lock_guard lock(mu);
  held.push_back(fd);
  return true;
}
}  // namespace

int free_port() {
  // Below the ephemeral range, reserved across processes, and free now.
  const auto [low, high] = ephemeral_range();
  (void)high;
  const int top = low > 20000 ? low - 1 : 32767;
  const int bottom = top - 12000;
  static std::mutex mu;
  static std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  for (int attempt = 0; attempt < 500; ++attempt) {
    int port = 0;
    {
      const std::lock_guard lock(mu);
      port = std::uniform_int_distribution<int>(bottom, top)(rng);
    }
    if (!reserve(port)) continue;
    if (can_bind(port)) return port;
  }
  throw HarnessError(fmt::format("free_port: no free port in {}..{} after 500 tries", bottom, top));
}

bool port_open(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

std::string make_temp_dir(const std::string& what) {
  const char* tmp = std::getenv("TMPDIR");
  const char* tag = std::getenv("NATBUS_TEST_TAG");
  std::string pattern = fmt::format("{}/natbus-test-{}-{}-XXXXXX", (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp",
                                    (tag != nullptr && *tag != '\0') ? tag : "x", what);
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) throw HarnessError(fmt::format("mkdtemp {}: {}", pattern, std::strerror(errno)));
  return std::string(buf.data());
}

void remove_tree(const std::string& path) {
  std::error_code ec;
  if (!path.empty()) fs::remove_all(path, ec);
}

std::string NatsServer::binary() {
  if (const char* env = std::getenv("NATS_SERVER"); env != nullptr && *env != '\0') {
    if (::access(env, X_OK) == 0) return env;
    throw HarnessError(fmt::format("NATS_SERVER={} is not an executable", env));
  }
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::stringstream ss(path);
    std::string dir;
    while (std::getline(ss, dir, ':')) {
      const std::string candidate = dir + "/nats-server";
      if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  for (const char* c : {"/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"}) {
    if (::access(c, X_OK) == 0) return c;
  }
  throw HarnessError("nats-server not found: install Debian's nats-server package (apt-get install nats-server) or set NATS_SERVER");
}

NatsServer::NatsServer(ServerOptions options, bool start_now) : opts_(std::move(options)) {
  (void)binary();  // fail fast, before creating anything
  dir_ = make_temp_dir("server");
  store_ = dir_ + "/store";
  log_ = dir_ + "/server.log";
  conf_ = dir_ + "/server.conf";
  fs::create_directories(store_);
  if (opts_.port != 0) {
    if (port_open(opts_.port)) {
      remove_tree(dir_);
      throw HarnessError(fmt::format("port {} is already in use on 127.0.0.1", opts_.port));
    }
    port_ = opts_.port;
  }
  if (start_now) {
    try {
      start();
    } catch (...) {
      remove_tree(dir_);
      throw;
    }
  }
}

NatsServer::~NatsServer() {
  try {
    stop();
  } catch (...) {
  }
  if (!server_debug().empty()) {
    std::fprintf(stderr, "[harness] kept %s (NATBUS_TEST_SERVER_DEBUG)\n", dir_.c_str());
    return;
  }
  remove_tree(dir_);
}

std::string NatsServer::url() const { return fmt::format("{}://127.0.0.1:{}", opts_.tls_cert.empty() ? "nats" : "tls", port_); }

void NatsServer::write_config() {
  std::ofstream f(conf_, std::ios::trunc);
  f << "listen: 127.0.0.1:" << port_ << "\n";
  f << "server_name: " << (opts_.name.empty() ? fmt::format("natbus_test_{}", port_) : opts_.name) << "\n";
  f << "http: 0\n";
  if (opts_.jetstream) f << "jetstream { store_dir: \"" << store_ << "\" }\n";
  if (opts_.max_payload > 0) f << "max_payload: " << opts_.max_payload << "\n";
  if (opts_.ping_interval.count() > 0) f << "ping_interval: \"" << opts_.ping_interval.count() << "ms\"\n";
  if (opts_.ping_max > 0) f << "ping_max: " << opts_.ping_max << "\n";
  if (!opts_.user.empty()) {
    f << "authorization { user: \"" << opts_.user << "\", password: \"" << opts_.password << "\" }\n";
  } else if (!opts_.token.empty()) {
    f << "authorization { token: \"" << opts_.token << "\" }\n";
  }
  if (!opts_.tls_cert.empty()) {
    f << "tls {\n  cert_file: \"" << opts_.tls_cert << "\"\n  key_file: \"" << opts_.tls_key << "\"\n";
    if (!opts_.tls_ca.empty()) f << "  ca_file: \"" << opts_.tls_ca << "\"\n";
    if (opts_.tls_verify_clients) f << "  verify: true\n";
    f << "  timeout: 2\n}\n";
  }
  if (!cluster_block_.empty()) f << cluster_block_ << "\n";
  for (const auto& line : opts_.extra_config) f << line << "\n";
  // Diagnostics: NATBUS_TEST_SERVER_DEBUG=1 (debug) or =trace (debug and protocol trace) makes
  // the server log why it does what it does; the folder is then kept (see the destructor).
  if (const std::string_view dbg = server_debug(); !dbg.empty()) {
    f << "debug: true\n";
    if (dbg == "trace") f << "trace: true\n";
  }
}

void NatsServer::start() {
  if (running()) return;
  const std::string bin = binary();
  const bool pick_port = opts_.port == 0 && port_ == 0;
  for (int attempt = 0;; ++attempt) {
    if (port_ == 0) port_ = free_port();
    write_config();
    const int logfd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) throw HarnessError(fmt::format("cannot open {}: {}", log_, std::strerror(errno)));
    // Where this start's lines begin: measured before the server runs. Measured after, a server
    // that writes its whole start-up (ready line included) before this thread gets the CPU back
    // puts the offset past "Server is ready", and wait_ready() never sees it.
    {
      std::error_code ec;
      const auto size = fs::file_size(log_, ec);
      log_offset_ = ec ? 0 : size;
    }
    // The server dies with the test process (and gets a Ctrl-C of the test run only that way).
    pid_t pid = -1;
    try {
      pid = spawn_process({bin, "-c", conf_}, {}, logfd, true, true);
    } catch (...) {
      ::close(logfd);
      throw;
    }
    ::close(logfd);
    pid_ = pid;
    if (pause_after_spawn.count() > 0) std::this_thread::sleep_for(pause_after_spawn);
    std::string why;
    if (wait_ready(opts_.start_timeout, why)) return;
    const std::string tail = log_tail();
    kill();
    const bool port_race = tail.find("address already in use") != std::string::npos;
    if (pick_port && port_race && attempt < 5) {
      port_ = 0;  // another process took the port we picked: pick again
      continue;
    }
    throw HarnessError(fmt::format("nats-server on 127.0.0.1:{} did not become ready: {}\n--- {} ---\n{}", port_, why, log_, tail));
  }
}

bool NatsServer::wait_ready(std::chrono::milliseconds timeout, std::string& why) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // 1. The process runs, its own log says it is ready (a port that accepts connections could be
  //    another test's server that won the race for the port we picked), and the port is open.
  for (;;) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      why = fmt::format("the process exited ({})",
                        WIFEXITED(status) ? fmt::format("status {}", WEXITSTATUS(status)) : fmt::format("signal {}", WTERMSIG(status)));
      return false;
    }
    if (log_says_ready() && port_open(port_)) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      why = "the server did not report ready with its port open in time";
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!opts_.jetstream || !opts_.wait_for_jetstream || !cluster_block_.empty() || !opts_.tls_cert.empty()) return true;
  // 2. JetStream answers (a restarted server recovers its store first).
  natsOptions* o = nullptr;
  natsOptions_Create(&o);
  const std::string u = url();
  natsOptions_SetURL(o, u.c_str());
  if (!opts_.user.empty()) natsOptions_SetUserInfo(o, opts_.user.c_str(), opts_.password.c_str());
  if (!opts_.token.empty()) natsOptions_SetToken(o, opts_.token.c_str());
  if (!opts_.ready_credentials.empty()) natsOptions_SetUserCredentialsFromFiles(o, opts_.ready_credentials.c_str(), nullptr);
  natsOptions_SetTimeout(o, 2000);
  natsConnection* nc = nullptr;
  bool ok = false;
  while (!ok && std::chrono::steady_clock::now() < deadline) {
    if (nc == nullptr && natsConnection_Connect(&nc, o) != NATS_OK) nc = nullptr;
    if (nc != nullptr) {
      natsMsg* reply = nullptr;
      if (natsConnection_RequestString(&reply, nc, "$JS.API.INFO", "", 1000) == NATS_OK) {
        const char* data = natsMsg_GetData(reply);
        ok = data != nullptr && std::strstr(data, "\"error\"") == nullptr;
        natsMsg_Destroy(reply);
      }
    }
    if (!ok) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (nc != nullptr) natsConnection_Destroy(nc);
  natsOptions_Destroy(o);
  if (!ok) why = "JetStream did not answer $JS.API.INFO in time";
  return ok;
}

bool NatsServer::running() const {
  if (pid_ <= 0) return false;
  return ::kill(pid_, 0) == 0;
}

void NatsServer::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGCONT);  // a frozen server cannot handle SIGTERM
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + opts_.stop_timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  pid_ = -1;
}

void NatsServer::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

void NatsServer::restart(bool hard) {
  if (hard) {
    kill();
  } else {
    stop();
  }
  start();
}

bool NatsServer::log_says_ready() const {
  std::ifstream f(log_);
  f.seekg(static_cast<std::streamoff>(log_offset_));
  std::string line;
  while (std::getline(f, line)) {
    if (line.find("Server is ready") != std::string::npos) return true;
  }
  return false;
}

namespace {

/// True when every thread of `pid` is in the stopped state ('T').
bool all_threads_stopped(pid_t pid) {
  std::error_code ec;
  bool any = false;
  for (const auto& entry : fs::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    std::ifstream stat(entry.path() / "stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto paren = text.rfind(')');
    if (paren == std::string::npos || paren + 2 >= text.size()) return false;
    if (text[paren + 2] != 'T' && text[paren + 2] != 't') return false;
    any = true;
  }
  return any && !ec;
}

}  // namespace

void NatsServer::freeze() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGSTOP);
  // kill() returns before the threads have stopped: a message sent right after could still be
  // handled. Wait (bounded) until the kernel reports every thread stopped.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!all_threads_stopped(pid_)) {
    if (std::chrono::steady_clock::now() >= deadline) throw HarnessError(fmt::format("nats-server {} did not stop on SIGSTOP", pid_));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void NatsServer::thaw() {
  if (pid_ > 0) ::kill(pid_, SIGCONT);
}

std::string NatsServer::log_tail(std::size_t lines) const {
  std::ifstream f(log_);
  std::deque<std::string> last;
  std::string line;
  while (std::getline(f, line)) {
    last.push_back(line);
    if (last.size() > lines) last.pop_front();
  }
  std::string out;
  for (const auto& l : last) out += l + "\n";
  return out;
}

// ---- cluster ------------------------------------------------------------------------------------

NatsCluster::NatsCluster(int n, ServerOptions base) {
  std::vector<int> client_ports;
  std::vector<int> route_ports;
  for (int i = 0; i < n; ++i) {
    client_ports.push_back(free_port());
    route_ports.push_back(free_port());
  }
  std::string routes;
  for (int p : route_ports) routes += fmt::format("nats-route://127.0.0.1:{}, ", p);
  for (int i = 0; i < n; ++i) {
    ServerOptions o = base;
    o.port = client_ports[static_cast<std::size_t>(i)];
    o.name = fmt::format("N{}", i + 1);
    auto node = std::make_unique<NatsServer>(o, false);
    node->set_cluster(fmt::format("cluster {{\n  name: natbus\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}",
                                  route_ports[static_cast<std::size_t>(i)], routes));
    nodes_.push_back(std::move(node));
  }
  for (auto& node : nodes_) node->start();
  wait_for_jetstream();
}

NatsCluster::~NatsCluster() {
  for (auto& n : nodes_) {
    try {
      n->stop();
    } catch (...) {
    }
  }
}

std::string NatsCluster::urls() const {
  std::string out;
  for (const auto& n : nodes_) {
    if (!out.empty()) out += ",";
    out += n->url();
  }
  return out;
}

void NatsCluster::wait_for_jetstream(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  natsOptions* o = nullptr;
  natsOptions_Create(&o);
  std::vector<std::string> urls;
  for (auto& n : nodes_) {
    if (n->running()) urls.push_back(n->url());
  }
  std::vector<const char*> cs;
  for (auto& u : urls) cs.push_back(u.c_str());
  natsOptions_SetServers(o, cs.data(), static_cast<int>(cs.size()));
  natsOptions_SetTimeout(o, 2000);
  natsConnection* nc = nullptr;
  bool ok = false;
  std::string last;
  while (!ok && std::chrono::steady_clock::now() < deadline) {
    if (nc == nullptr && natsConnection_Connect(&nc, o) != NATS_OK) nc = nullptr;
    if (nc != nullptr) {
      natsMsg* reply = nullptr;
      // A meta leader answers INFO before it knows every peer: a stream with one replica per
      // node is only placed once all of them have joined, so create (and delete) a probe.
      const std::string probe = fmt::format(
          R"({{"name":"NATBUS_READY_PROBE","subjects":["natbus.ready-probe"],"num_replicas":{},"storage":"memory"}})", urls.size());
      if (natsConnection_RequestString(&reply, nc, "$JS.API.STREAM.CREATE.NATBUS_READY_PROBE", probe.c_str(), 5000) == NATS_OK) {
        const char* data = natsMsg_GetData(reply);
        last = data != nullptr ? data : "";
        ok = !last.empty() && last.find("\"error\"") == std::string::npos;
        natsMsg_Destroy(reply);
        reply = nullptr;
      }
      if (ok && natsConnection_RequestString(&reply, nc, "$JS.API.STREAM.DELETE.NATBUS_READY_PROBE", "", 5000) == NATS_OK) {
        natsMsg_Destroy(reply);
      }
    }
    if (!ok) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (nc != nullptr) natsConnection_Destroy(nc);
  natsOptions_Destroy(o);
  if (!ok)
    throw HarnessError(fmt::format("cluster JetStream could not place a stream on every node within {} ms: {}", timeout.count(), last));
}

NatsServer& NatsCluster::by_name(const std::string& name) {
  for (auto& n : nodes_) {
    if (n->options().name == name) return *n;
  }
  throw HarnessError(fmt::format("no cluster node named {}", name));
}

// ---- certificates ---------------------------------------------------------------------------------

namespace {
void run(const std::string& cmd) {
  const std::string full = cmd + " >/dev/null 2>&1";
  if (std::system(full.c_str()) != 0) throw HarnessError(fmt::format("command failed: {}", cmd));
}
}  // namespace

TestCerts TestCerts::make() {
  TestCerts c;
  c.dir = make_temp_dir("certs");
  const std::string d = c.dir;
  c.ca_cert = d + "/ca.pem";
  c.ca_key = d + "/ca.key";
  c.server_cert = d + "/server.pem";
  c.server_key = d + "/server.key";
  c.client_cert = d + "/client.pem";
  c.client_key = d + "/client.key";
  c.other_ca_cert = d + "/other-ca.pem";
  {
    std::ofstream ext(d + "/server.ext");
    ext << "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n";
    std::ofstream cext(d + "/client.ext");
    cext << "extendedKeyUsage=clientAuth\n";
  }
  run(fmt::format("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=natbus-test-ca -keyout {} -out {}", c.ca_key, c.ca_cert));
  run(fmt::format("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=natbus-other-ca -keyout {}/other-ca.key -out {}", d,
                  c.other_ca_cert));
  run(fmt::format("openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout {} -out {}/server.csr", c.server_key, d));
  run(fmt::format("openssl x509 -req -in {0}/server.csr -CA {1} -CAkey {2} -CAcreateserial -days 2 -extfile {0}/server.ext -out {3}", d,
                  c.ca_cert, c.ca_key, c.server_cert));
  run(fmt::format("openssl req -newkey rsa:2048 -nodes -subj /CN=natbus-client -keyout {} -out {}/client.csr", c.client_key, d));
  run(fmt::format("openssl x509 -req -in {0}/client.csr -CA {1} -CAkey {2} -CAcreateserial -days 2 -extfile {0}/client.ext -out {3}", d,
                  c.ca_cert, c.ca_key, c.client_cert));
  return c;
}

TestCerts::TestCerts(TestCerts&& o) noexcept
    : dir(std::move(o.dir)),
      ca_cert(std::move(o.ca_cert)),
      ca_key(std::move(o.ca_key)),
      server_cert(std::move(o.server_cert)),
      server_key(std::move(o.server_key)),
      client_cert(std::move(o.client_cert)),
      client_key(std::move(o.client_key)),
      other_ca_cert(std::move(o.other_ca_cert)) {
  o.dir.clear();
}

TestCerts::~TestCerts() { remove_tree(dir); }

}  // namespace natbus::testing
