#include "cut_proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include <fmt/format.h>

#include "nats_server.hpp"

namespace natbus::testing {

namespace {

bool send_all(int fd, const char* data, std::size_t len) {
  while (len > 0) {
    const ssize_t n = ::send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    len -= static_cast<std::size_t>(n);
  }
  return true;
}

/// Where to cut `chunk` for `where`, or npos when no whole-enough frame start is in it.
std::size_t cut_point(std::string_view chunk, CutProxy::Cut where) {
  if (where == CutProxy::Cut::anywhere) return chunk.size() >= 64 ? chunk.size() / 2 : std::string_view::npos;
  for (std::size_t at = chunk.find("MSG "); at != std::string_view::npos; at = chunk.find("MSG ", at + 1)) {
    std::size_t start = at;
    if (start > 0 && chunk[start - 1] == 'H') --start;
    if (start > 0 && chunk[start - 1] != '\n') continue;  // not at the start of a line
    const std::size_t eol = chunk.find("\r\n", start);
    if (eol == std::string_view::npos) continue;
    if (where == CutProxy::Cut::control_line) return start + (eol - start) / 2;
    // Inside the payload: at least one payload byte relayed, at least one held back.
    const std::size_t body = eol + 2;
    const std::size_t next = chunk.find("\r\n", body);
    if (next != std::string_view::npos && next > body + 1) return body + (next - body) / 2;
  }
  return std::string_view::npos;
}

}  // namespace

CutProxy::CutProxy(int server_port) : server_port_(server_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw HarnessError(fmt::format("cut proxy: socket: {}", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 16) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || ::pipe2(stop_pipe_, O_CLOEXEC) != 0) {
    const int err = errno;
    ::close(listen_fd_);
    throw HarnessError(fmt::format("cut proxy: listen on 127.0.0.1: {}", std::strerror(err)));
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

CutProxy::~CutProxy() {
  const char b = 'x';
  (void)!::write(stop_pipe_[1], &b, 1);  // every thread polls the pipe's read end
  acceptor_.join();
  std::vector<std::thread> relays;
  {
    std::lock_guard lock(mu_);
    relays.swap(relays_);
  }
  for (auto& t : relays) t.join();
  ::close(listen_fd_);
  ::close(stop_pipe_[0]);
  ::close(stop_pipe_[1]);
}

std::string CutProxy::url() const { return fmt::format("nats://127.0.0.1:{}", port_); }

void CutProxy::cut_next_message(Cut where) { armed_.store(static_cast<int>(where)); }

void CutProxy::accept_loop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if ((fds[1].revents & POLLIN) != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(server_port_));
    if (server < 0 || ::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      if (server >= 0) ::close(server);
      ::close(client);
      continue;
    }
    const int one = 1;
    ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    accepted_.fetch_add(1);
    std::lock_guard lock(mu_);
    relays_.emplace_back([this, client, server] { relay(client, server); });
  }
}

void CutProxy::relay(int client, int server) {
  std::vector<char> buf(64 * 1024);
  for (;;) {
    pollfd fds[3] = {{client, POLLIN, 0}, {server, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if ((fds[2].revents & POLLIN) != 0) break;
    bool done = false;
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const ssize_t n = ::recv(client, buf.data(), buf.size(), 0);
      done = n <= 0 || !send_all(server, buf.data(), static_cast<std::size_t>(n));
    }
    if (!done && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const ssize_t n = ::recv(server, buf.data(), buf.size(), 0);
      if (n <= 0) {
        done = true;
      } else {
        std::size_t len = static_cast<std::size_t>(n);
        const int armed = armed_.load();
        std::size_t cut = std::string_view::npos;
        if (armed >= 0) cut = cut_point(std::string_view(buf.data(), len), static_cast<Cut>(armed));
        int expected = armed;
        if (cut != std::string_view::npos && armed_.compare_exchange_strong(expected, -1)) {
          (void)send_all(client, buf.data(), cut);  // half a frame, then the connection ends
          cuts_.fetch_add(1);
          done = true;
        } else {
          done = !send_all(client, buf.data(), len);
        }
      }
    }
    if (done) break;
  }
  ::shutdown(client, SHUT_RDWR);
  ::shutdown(server, SHUT_RDWR);
  ::close(client);
  ::close(server);
}

}  // namespace natbus::testing
