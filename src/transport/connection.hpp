// Folder transport/: the cnats bridge. RAII owners of cnats handles and the mapping of
// natsStatus to natbus errors (cnats.*), one connection's socket driven by the loop
// (connection.*), the reply mux every request shares (mux.*, request.hpp), and message sinks.
// Only transport/ and the layers above include nats.h. It calls runtime/ and base/ only: what
// it needs from the bus comes through interfaces it defines (ConnListener, Mux::Host).
//
// The bridge between one cnats connection and natbus' event loop.
//
// cnats runs in its event-loop mode (natsOptions_SetEventLoop): it has no reader thread; the
// loop calls natsConnection_ProcessReadEvent when the socket is readable, and
// natsConnection_ProcessWriteEvent once per iteration when cnats asked to write. With SendAsap
// cnats has no flusher thread either, so a publish costs no thread hop and waits for no timer:
// everything written during an iteration leaves in one write at its end.
//
// One ConnIo per natsConnection, and one natsConnection per TCP/TLS connection: cnats' own
// reconnect is off, so cnats' protocol parser never carries a half frame from a dead connection
// into the next one (cnats 3.4.1 never resets it on reconnect, nats.c#1007). BusCore's
// supervisor opens a fresh connection instead and re-establishes what the bus had on it.
//
// cnats calls the attach/read/write/detach callbacks from its own threads too (connect runs on
// a worker, PINGs on its timer thread), so ConnIo's state is guarded by a mutex, and ConnIo is
// shared (shared_ptr) by everything that may still receive a callback: the bus, a connect job in
// progress, a close job in progress.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "runtime/loop.hpp"
#include "runtime/wait.hpp"
#include "transport/cnats.hpp"

namespace natbus::detail {

inline constexpr natsSock kInvalidSock = -1;  // cnats' NATS_SOCK_INVALID on POSIX (not in nats.h)

/// What the loop thread is told about a connection (implemented by BusCore).
class ConnIo;

class ConnListener {
 public:
  /// After a read: messages may be waiting in subscriptions.
  virtual void after_read() noexcept = 0;
  /// cnats closed the connection under the loop (a read failed): called at once, on the loop
  /// thread, before any other event of this connection is handled.
  virtual void on_conn_lost() noexcept = 0;
  /// A connection event (kind: ConnEvent) of the connection that `from` serves, with a cnats
  /// status for async errors.
  virtual void on_conn_event(ConnIo* from, int kind, int status) noexcept = 0;

 protected:
  ConnListener() = default;
  ConnListener(const ConnListener&) = default;
  ConnListener& operator=(const ConnListener&) = default;
  ~ConnListener() = default;
};

enum ConnEvent : int { kDisconnected = 1, kClosed = 3, kAsyncError = 4, kLameDuck = 5, kDiscovered = 6 };

class ConnIo final : public IoHandler, public std::enable_shared_from_this<ConnIo> {
 public:
  explicit ConnIo(Loop& loop);
  ~ConnIo();
  ConnIo(const ConnIo&) = delete;
  ConnIo& operator=(const ConnIo&) = delete;

  /// Puts this ConnIo's callbacks and the connection-event callbacks on `opts`.
  void install(natsOptions* opts);

  // Loop thread.
  void set_listener(ConnListener* l) noexcept { listener_ = l; }
  void on_io(std::uint32_t events) noexcept override;
  void on_iteration_end() noexcept override;
  /// Stops every use of the loop and of the connection (before natsConnection_Destroy, or when
  /// the loop ends). Idempotent; any thread.
  void abandon() noexcept;
  [[nodiscard]] bool abandoned() const noexcept { return abandoned_.load(); }
  /// Writes everything cnats buffered now (used before closing).
  void flush_now() noexcept;
  /// Loop thread: a write was partial and the loop waits for EPOLLOUT; writable() wakes when
  /// the socket took more (or this ConnIo is abandoned on the loop thread).
  [[nodiscard]] bool socket_full() const noexcept { return out_armed_; }
  [[nodiscard]] WaitList& writable() noexcept { return writable_; }

 private:
  /// cnats writes what it buffered.
  void write_out(natsConnection* nc) noexcept;
  /// After a read or write: tells the listener once when cnats closed the connection.
  void check_closed(natsConnection* nc) noexcept;

  static natsStatus attach_cb(void** user_data, void* loop, natsConnection* nc, natsSock fd);
  static natsStatus read_cb(void* user_data, bool add);
  static natsStatus write_cb(void* user_data, bool add);
  static natsStatus detach_cb(void* user_data);
  static void disconnected_cb(natsConnection* nc, void* closure);
  static void discovered_cb(natsConnection* nc, void* closure);
  static void closed_cb(natsConnection* nc, void* closure);
  static void lame_duck_cb(natsConnection* nc, void* closure);
  static void error_cb(natsConnection* nc, natsSubscription* sub, natsStatus err, void* closure);
  static void post_event(void* closure, int kind, int status);
  static void event_work(void* a, void* b, bool run) noexcept;

  std::mutex mu_;
  Loop* loop_;  // nullptr once abandoned
  std::shared_ptr<RemoteQueue> remote_;
  natsSock fd_ = kInvalidSock;  // registered with the loop's epoll
  std::atomic<natsConnection*> nc_{nullptr};
  std::atomic<bool> want_write_{false};
  std::atomic<bool> abandoned_{false};
  bool out_armed_ = false;            // loop thread: EPOLLOUT registered after a partial write
  ConnListener* listener_ = nullptr;  // loop thread
  std::uint64_t registry_id_ = 0;     // closure of the connection-event callbacks
  bool lost_told_ = false;            // loop thread: on_conn_lost() was called
  WaitList writable_;                 // loop thread: publishers waiting for the socket to drain
};

}  // namespace natbus::detail
