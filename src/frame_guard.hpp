// FrameGuard: hands cnats only whole protocol frames, so a lost connection never leaves cnats'
// parser in the middle of one.
//
// Why: in its event-loop mode, cnats 3.4.1 keeps one protocol parser for the life of the
// connection and never resets it on a reconnect (only its reader thread, which event-loop mode
// does not have, destroys it; nats.c#1007, still open). When a connection dies in the middle of
// a MSG, the parser carries that half frame into the next connection: the new server's bytes are
// taken as the rest of the old message (a corrupted message delivered to the old subscription),
// or fail to parse, and a parse error leaves the parser stuck for good, so every reconnect is
// dropped a few milliseconds later, forever (seen as a reconnect storm after a server restart
// under load).
//
// How: when cnats attaches a new socket, the guard moves the TCP socket to a descriptor of its
// own and puts one end of a local socket pair under cnats' descriptor number. The loop then
// relays bytes both ways and forwards server bytes to cnats only up to the end of the last
// complete frame. When the server side ends, the partial frame is dropped and cnats reads end of
// file at a frame boundary, so its parser is back at the start of a frame when it reconnects.
//
// Traffic that is not the plain NATS protocol (TLS records) cannot be framed: the guard sees it
// on the first byte and relays it unchanged (the TLS case keeps cnats' behaviour).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>

#include "loop.hpp"

namespace natbus::detail {

/// Finds where complete server-to-client NATS protocol frames end in a byte stream:
/// control lines (INFO, PING, PONG, +OK, -ERR) end at their LF; MSG and HMSG also carry
/// the payload their last argument counts, plus CRLF.
class FrameScanner {
 public:
  /// Scans `buf[0, len)`, of which an earlier call saw a prefix (the buffer may only grow
  /// at the end, or lose its front through consumed()).
  void scan(const char* buf, std::size_t len) noexcept;
  /// Bytes at the front of the buffer that are whole frames.
  [[nodiscard]] std::size_t complete() const noexcept { return complete_; }
  /// The caller dropped `n` (<= complete()) bytes from the front of the buffer.
  void consumed(std::size_t n) noexcept;
  /// Not the NATS protocol (TLS, garbage): every byte counts as complete from now on.
  [[nodiscard]] bool passthrough() const noexcept { return passthrough_; }
  void reset() noexcept { *this = FrameScanner{}; }

  /// Longest control line accepted before the stream is declared unframeable.
  static constexpr std::size_t kMaxLine = std::size_t{64} * 1024;

 private:
  void end_line(const char* line, std::size_t len) noexcept;

  std::size_t pos_ = 0;         // next byte to look at
  std::size_t line_start_ = 0;  // start of the control line being read
  std::size_t complete_ = 0;    // end of the last whole frame
  std::size_t need_ = 0;        // payload bytes (with CRLF) still to come
  bool passthrough_ = false;
};

/// A byte queue for the relay: appends without zero-filling, drops from the front without
/// moving the rest (the live bytes move to the front only when room runs out at the end).
class RelayBuffer {
 public:
  [[nodiscard]] char* data() noexcept { return buf_.get() + head_; }
  [[nodiscard]] std::size_t size() const noexcept { return tail_ - head_; }
  [[nodiscard]] bool empty() const noexcept { return tail_ == head_; }
  /// Room for at least `n` more bytes at the end; returns where they go.
  char* reserve_tail(std::size_t n);
  void commit_tail(std::size_t n) noexcept { tail_ += n; }
  void drop_front(std::size_t n) noexcept;
  void clear() noexcept { head_ = tail_ = 0; }
  void release() noexcept {
    buf_.reset();
    cap_ = head_ = tail_ = 0;
  }

 private:
  std::unique_ptr<char[]> buf_;
  std::size_t cap_ = 0, head_ = 0, tail_ = 0;
};

/// The relay between cnats' descriptor and the TCP socket (see the file comment).
/// Thread-safe: cnats attaches and detaches from its threads, the loop thread relays.
class FrameGuard {
 public:
  FrameGuard(IoHandler* real_side, IoHandler* cnats_side) noexcept : real_side_(real_side), cnats_side_(cnats_side) {}
  FrameGuard(const FrameGuard&) = delete;
  FrameGuard& operator=(const FrameGuard&) = delete;
  ~FrameGuard() { detach(); }

  /// cnats attached `fd` (connected, handshake done): interpose. False (and `fd` untouched)
  /// when the relay cannot be set up; cnats then uses the socket directly.
  bool attach(Loop& loop, int fd) noexcept;
  /// Closes the relay (cnats is about to close its descriptor). Idempotent; any thread.
  void detach() noexcept;

  // Loop thread. The owner drives the inbound side in steps: on_real() reads the server,
  // hand_over() puts whole frames under cnats' descriptor, the owner then has cnats read until
  // that descriptor is empty, and settle() ends the step. cnats' parser is thus back at a
  // frame boundary at the end of every step, whatever its read size.
  /// The TCP socket is ready (`events` from epoll). True when whole frames wait for cnats.
  bool on_real(std::uint32_t events) noexcept;
  /// Our end of the pair is ready: cnats wrote (EPOLLIN) or can take more (EPOLLOUT). True
  /// when whole frames wait for cnats.
  bool on_cnats_side(std::uint32_t events) noexcept;
  /// Moves as many whole-frame bytes as the pair takes; true when it moved some.
  bool hand_over() noexcept;
  /// Ends a step: once the server side is gone and cnats has every whole frame, drops the
  /// partial one and gives cnats end of file. True when cnats should read now (to see it).
  bool settle() noexcept;
  /// cnats just wrote: send it on now rather than on the next loop iteration.
  void relay_out() noexcept;

  /// Relay buffer limits: reading from a side stops while this much waits for the other side.
  static constexpr std::size_t kMaxPendingIn = std::size_t{4} * 1024 * 1024;
  static constexpr std::size_t kMaxPendingOut = std::size_t{4} * 1024 * 1024;

 private:
  void read_real() noexcept;        // mu_ held
  void read_cnats() noexcept;       // mu_ held
  void push_out() noexcept;         // mu_ held
  bool finish_if_done() noexcept;   // mu_ held
  void update_interest() noexcept;  // mu_ held
  void close_fds() noexcept;        // mu_ held

  std::mutex mu_;
  IoHandler* real_side_;
  IoHandler* cnats_side_;
  Loop* loop_ = nullptr;
  int real_ = -1;    // the TCP socket
  int outer_ = -1;   // our end of the pair; cnats' descriptor is the other end
  RelayBuffer in_;   // server -> cnats, not yet forwarded
  RelayBuffer out_;  // cnats -> server, not yet sent
  FrameScanner scanner_;
  bool real_eof_ = false;   // the server side ended (EOF or error)
  bool cnats_eof_ = false;  // cnats closed its end
  bool shut_ = false;       // cnats was told (EOF on its end)
  std::uint32_t real_events_ = 0;
  std::uint32_t outer_events_ = 0;
};

}  // namespace natbus::detail
