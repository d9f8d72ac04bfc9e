#include "frame_guard.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace natbus::detail {

// ---- FrameScanner ---------------------------------------------------------------------------

namespace {

bool is_op_start(char c) noexcept {
  switch (c) {
    case 'M':
    case 'm':  // MSG
    case 'H':
    case 'h':  // HMSG
    case 'P':
    case 'p':  // PING, PONG
    case 'I':
    case 'i':  // INFO
    case '+':
    case '-':  // +OK, -ERR
      return true;
    default:
      return false;
  }
}

/// "MSG" or "HMSG" (any case) followed by a space or tab.
bool is_msg_line(const char* s, std::size_t len) noexcept {
  std::size_t i = (len > 0 && (s[0] == 'H' || s[0] == 'h')) ? 1 : 0;
  for (const char c : {'m', 's', 'g'}) {
    if (i >= len || (s[i] | 0x20) != c) return false;
    ++i;
  }
  return i < len && (s[i] == ' ' || s[i] == '\t');
}

}  // namespace

void FrameScanner::scan(const char* buf, std::size_t len) noexcept {
  while (pos_ < len) {
    if (passthrough_) {
      pos_ = complete_ = len;
      return;
    }
    if (need_ > 0) {  // inside a payload: skip it whole
      const std::size_t take = std::min(need_, len - pos_);
      pos_ += take;
      need_ -= take;
      if (need_ == 0) complete_ = line_start_ = pos_;
      continue;
    }
    if (pos_ == line_start_ && !is_op_start(buf[pos_])) {
      passthrough_ = true;
      continue;
    }
    const void* nl = std::memchr(buf + pos_, '\n', len - pos_);
    if (nl == nullptr) {
      pos_ = len;
      if (len - line_start_ > kMaxLine) passthrough_ = true;
      return;
    }
    const std::size_t end = static_cast<std::size_t>(static_cast<const char*>(nl) - buf);
    pos_ = end + 1;
    end_line(buf + line_start_, end - line_start_);
    if (need_ == 0 && !passthrough_) complete_ = line_start_ = pos_;
  }
}

void FrameScanner::end_line(const char* line, std::size_t len) noexcept {
  if (len > 0 && line[len - 1] == '\r') --len;
  if (!is_msg_line(line, len)) return;  // a control line: complete at its LF
  // The last argument is the byte count of what follows (headers and payload for HMSG).
  std::size_t e = len;
  while (e > 0 && (line[e - 1] == ' ' || line[e - 1] == '\t')) --e;
  std::size_t b = e;
  while (b > 0 && line[b - 1] >= '0' && line[b - 1] <= '9') --b;
  if (b == e || e - b > 12 || b == 0 || (line[b - 1] != ' ' && line[b - 1] != '\t')) {
    passthrough_ = true;  // not a frame we understand: stop framing rather than guess
    return;
  }
  std::size_t size = 0;
  for (std::size_t i = b; i < e; ++i) size = size * 10 + static_cast<std::size_t>(line[i] - '0');
  need_ = size + 2;  // payload, then CRLF
  line_start_ = pos_;
}

void FrameScanner::consumed(std::size_t n) noexcept {
  n = std::min(n, complete_);
  pos_ -= n;
  complete_ -= n;
  line_start_ -= std::min(n, line_start_);
}

// ---- FrameGuard -----------------------------------------------------------------------------

namespace {
constexpr std::size_t kChunk = std::size_t{64} * 1024;

bool would_block(int err) noexcept { return err == EAGAIN; }  // EWOULDBLOCK == EAGAIN on Linux

}  // namespace

char* RelayBuffer::reserve_tail(std::size_t n) {
  if (cap_ - tail_ < n) {
    const std::size_t live = tail_ - head_;
    if (cap_ - live >= n && head_ > 0) {
      std::memmove(buf_.get(), buf_.get() + head_, live);  // room enough once compacted
    } else {
      const std::size_t cap = std::max(cap_ * 2, live + n);
      auto bigger = std::make_unique_for_overwrite<char[]>(cap);
      if (live > 0) std::memcpy(bigger.get(), buf_.get() + head_, live);
      buf_ = std::move(bigger);
      cap_ = cap;
    }
    head_ = 0;
    tail_ = live;
  }
  return buf_.get() + tail_;
}

void RelayBuffer::drop_front(std::size_t n) noexcept {
  head_ += std::min(n, tail_ - head_);
  if (head_ == tail_) head_ = tail_ = 0;
}

bool FrameGuard::attach(Loop& loop, int fd) noexcept {
  std::lock_guard lock(mu_);
  close_fds();
  int pair[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) return false;
  const int real = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);  // shares O_NONBLOCK with fd (set by cnats)
  if (real < 0 || ::dup3(pair[0], fd, O_CLOEXEC) < 0) {
    if (real >= 0) ::close(real);
    ::close(pair[0]);
    ::close(pair[1]);
    return false;
  }
  ::close(pair[0]);  // cnats' descriptor number now holds this end
  real_ = real;
  outer_ = pair[1];
  loop_ = &loop;
  in_.clear();
  out_.clear();
  scanner_.reset();
  real_eof_ = cnats_eof_ = shut_ = false;
  real_events_ = EPOLLIN;
  outer_events_ = EPOLLIN;
  loop.add_io(real_, real_events_, real_side_);
  loop.add_io(outer_, outer_events_, cnats_side_);
  return true;
}

void FrameGuard::detach() noexcept {
  std::lock_guard lock(mu_);
  close_fds();
}

void FrameGuard::close_fds() noexcept {
  if (real_ >= 0) {
    if (loop_ != nullptr && real_events_ != 0) loop_->del_io(real_);
    ::shutdown(real_, SHUT_RDWR);  // a FIN, whatever linger cnats set on the socket
    ::close(real_);
  }
  if (outer_ >= 0) {
    if (loop_ != nullptr && outer_events_ != 0) loop_->del_io(outer_);
    ::close(outer_);
  }
  real_ = outer_ = -1;
  real_events_ = outer_events_ = 0;
  loop_ = nullptr;
  in_.release();
  out_.release();
}

bool FrameGuard::on_real(std::uint32_t events) noexcept {
  std::lock_guard lock(mu_);
  if (real_ < 0) return false;
  if ((events & EPOLLOUT) != 0) push_out();
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) read_real();
  update_interest();
  return scanner_.complete() > 0 || (real_eof_ && !shut_);
}

bool FrameGuard::on_cnats_side(std::uint32_t events) noexcept {
  std::lock_guard lock(mu_);
  if (outer_ < 0) return false;
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
    read_cnats();
    push_out();
  }
  (void)finish_if_done();
  update_interest();
  return scanner_.complete() > 0;
}

void FrameGuard::relay_out() noexcept {
  std::lock_guard lock(mu_);
  if (outer_ < 0) return;
  read_cnats();
  push_out();
  (void)finish_if_done();
  update_interest();
}

bool FrameGuard::hand_over() noexcept {
  std::lock_guard lock(mu_);
  if (outer_ < 0 || cnats_eof_ || shut_ || scanner_.complete() == 0) return false;
  for (;;) {
    const ssize_t n = ::send(outer_, in_.data(), scanner_.complete(), MSG_NOSIGNAL);
    if (n > 0) {
      in_.drop_front(static_cast<std::size_t>(n));
      scanner_.consumed(static_cast<std::size_t>(n));
      return true;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && would_block(errno)) return false;  // cnats has not read yet: EPOLLOUT tells
    cnats_eof_ = true;
    return false;
  }
}

bool FrameGuard::settle() noexcept {
  std::lock_guard lock(mu_);
  if (outer_ < 0) return false;
  const bool eof_now = finish_if_done();
  update_interest();
  return eof_now;
}

void FrameGuard::read_real() noexcept {
  while (!real_eof_ && (in_.size() < kMaxPendingIn || scanner_.complete() == 0)) {
    const ssize_t n = ::recv(real_, in_.reserve_tail(kChunk), kChunk, 0);
    if (n > 0) {
      in_.commit_tail(static_cast<std::size_t>(n));
      scanner_.scan(in_.data(), in_.size());
      if (static_cast<std::size_t>(n) < kChunk) break;  // drained: epoll says when there is more
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && would_block(errno)) break;
    real_eof_ = true;  // EOF, reset or another error: the server side is gone
  }
}

void FrameGuard::read_cnats() noexcept {
  while (!cnats_eof_ && out_.size() < kMaxPendingOut) {
    const ssize_t n = ::recv(outer_, out_.reserve_tail(kChunk), kChunk, 0);
    if (n > 0) {
      out_.commit_tail(static_cast<std::size_t>(n));
      if (static_cast<std::size_t>(n) < kChunk) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && would_block(errno)) break;
    cnats_eof_ = true;  // cnats shut its end down: it is closing or reconnecting
  }
}

void FrameGuard::push_out() noexcept {
  while (!real_eof_ && !out_.empty()) {
    const ssize_t n = ::send(real_, out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out_.drop_front(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && would_block(errno)) break;  // EPOLLOUT on the socket tells
    real_eof_ = true;
  }
  if (real_eof_) out_.clear();  // nowhere to send it: the server side is gone
}

bool FrameGuard::finish_if_done() noexcept {
  bool eof_now = false;
  // The server side is gone and cnats has every whole frame: drop the partial one and let cnats
  // read end of file, at a frame boundary. Only our sending side is shut: cnats' writes still
  // succeed (and are dropped), so cnats learns of the loss by reading, after the last frame.
  if (real_eof_ && !shut_ && (scanner_.complete() == 0 || cnats_eof_)) {
    in_.clear();
    scanner_.reset();
    ::shutdown(outer_, SHUT_WR);
    shut_ = true;
    eof_now = !cnats_eof_;
  }
  // cnats shut its end: it closes the connection or starts a reconnect, and detaches soon.
  if (cnats_eof_ && !real_eof_) {
    push_out();
    ::shutdown(real_, SHUT_RDWR);
    real_eof_ = true;
  }
  return eof_now;
}

void FrameGuard::update_interest() noexcept {
  if (loop_ == nullptr) return;
  // A socket at end of file is always ready: stop polling it rather than spin.
  std::uint32_t want_real = 0;
  if (!real_eof_) {
    if (in_.size() < kMaxPendingIn || scanner_.complete() == 0) want_real |= EPOLLIN;
    if (!out_.empty()) want_real |= EPOLLOUT;
  }
  std::uint32_t want_outer = 0;
  if (!cnats_eof_) {
    if (out_.size() < kMaxPendingOut) want_outer |= EPOLLIN;  // after shut_ too: cnats may still write
    if (!shut_ && scanner_.complete() > 0) want_outer |= EPOLLOUT;
  }
  if (want_real != real_events_) {
    if (want_real == 0) {
      loop_->del_io(real_);
    } else {
      loop_->add_io(real_, want_real, real_side_);  // adds, or modifies when registered
    }
    real_events_ = want_real;
  }
  if (want_outer != outer_events_) {
    if (want_outer == 0) {
      loop_->del_io(outer_);
    } else {
      loop_->add_io(outer_, want_outer, cnats_side_);
    }
    outer_events_ = want_outer;
  }
}

}  // namespace natbus::detail
