// CutProxy: a TCP relay between clients and a real nats-server (both on 127.0.0.1) that can
// end a client's connection in the middle of a protocol frame, which a server restart under
// load does only by chance. Every other byte is relayed unchanged, and new connections (the
// client's reconnects) are relayed normally.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace natbus::testing {

class CutProxy {
 public:
  /// Relays 127.0.0.1:port() to 127.0.0.1:`server_port`.
  explicit CutProxy(int server_port);
  ~CutProxy();
  CutProxy(const CutProxy&) = delete;
  CutProxy& operator=(const CutProxy&) = delete;

  [[nodiscard]] int port() const noexcept { return port_; }
  [[nodiscard]] std::string url() const;

  enum class Cut {
    control_line,  // inside the "MSG ..." / "HMSG ..." line
    payload,       // inside the message's payload
    anywhere,      // in the middle of the next chunk the server sends (TLS: inside a record)
  };
  /// Arms a cut: the next server-to-client MSG or HMSG frame seen on any relayed connection is
  /// relayed only up to `where`, then that connection is closed at both ends. `anywhere` cuts
  /// the next chunk of 64 bytes or more in its middle, whatever it holds (encrypted TLS records).
  void cut_next_message(Cut where);
  /// Cuts made so far.
  [[nodiscard]] int cuts() const noexcept { return cuts_.load(); }
  /// Client connections accepted so far (the first connect plus each reconnect).
  [[nodiscard]] int accepted() const noexcept { return accepted_.load(); }

 private:
  void accept_loop();
  void relay(int client, int server);

  int server_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  int stop_pipe_[2] = {-1, -1};
  std::atomic<int> armed_{-1};  // -1: no cut armed; else a Cut value
  std::atomic<int> cuts_{0};
  std::atomic<int> accepted_{0};
  std::mutex mu_;
  std::vector<std::thread> relays_;
  std::thread acceptor_;
};

}  // namespace natbus::testing
