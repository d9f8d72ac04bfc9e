#include "transport/connection.hpp"

#include <sys/epoll.h>

#include <cstdint>
#include <unordered_map>

namespace natbus::detail {

namespace {

// Connection-event callbacks (disconnected, reconnected, closed, async errors) run on cnats'
// single global callback thread and can run after natsConnection_Destroy returned (nats.c
// #735). Their closure is therefore an id looked up here, never a pointer: an event for a
// ConnIo that is gone finds nothing and is dropped.
struct EventRegistry {
  std::mutex mu;
  std::unordered_map<std::uint64_t, std::weak_ptr<ConnIo>> map;
  std::uint64_t next_id = 1;
};

EventRegistry& registry() {
  // Never destroyed: cnats' callback thread may look an id up until the process is gone, after
  // static destructors ran. Reachable, so leak checkers do not report it.
  static auto* r = new EventRegistry;  // NOLINT: cnats' callback closures must be process-wide
  return *r;
}

void* id_to_closure(std::uint64_t id) { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(id)); }
std::uint64_t closure_to_id(void* closure) { return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(closure)); }

}  // namespace

ConnIo::ConnIo(Loop& loop) : loop_(&loop), remote_(loop.remote()) {}

ConnIo::~ConnIo() {
  if (registry_id_ != 0) {
    auto& r = registry();
    std::lock_guard lock(r.mu);
    r.map.erase(registry_id_);
  }
}

void ConnIo::install(natsOptions* opts) {
  {
    auto& r = registry();
    std::lock_guard lock(r.mu);
    registry_id_ = r.next_id++;
    r.map.emplace(registry_id_, weak_from_this());
  }
  void* closure = id_to_closure(registry_id_);
  check_status(natsOptions_SetEventLoop(opts, this, &attach_cb, &read_cb, &write_cb, &detach_cb), "natsOptions_SetEventLoop");
  // Event-loop mode has no reader thread; SendAsap removes the flusher thread and its 1 ms
  // wait: a write request then only flags this ConnIo, and on_iteration_end() writes.
  check_status(natsOptions_SetSendAsap(opts, true), "natsOptions_SetSendAsap");
  check_status(natsOptions_SetDisconnectedCB(opts, &disconnected_cb, closure), "natsOptions_SetDisconnectedCB");
  check_status(natsOptions_SetDiscoveredServersCB(opts, &discovered_cb, closure), "natsOptions_SetDiscoveredServersCB");
  check_status(natsOptions_SetClosedCB(opts, &closed_cb, closure), "natsOptions_SetClosedCB");
  check_status(natsOptions_SetLameDuckModeCB(opts, &lame_duck_cb, closure), "natsOptions_SetLameDuckModeCB");
  check_status(natsOptions_SetErrorHandler(opts, &error_cb, closure), "natsOptions_SetErrorHandler");
}

natsStatus ConnIo::attach_cb(void** user_data, void* loop, natsConnection* nc, natsSock fd) {
  auto* io = static_cast<ConnIo*>(loop);
  *user_data = io;
  std::lock_guard lock(io->mu_);
  if (io->loop_ == nullptr) return NATS_ILLEGAL_STATE;  // the bus or its loop is gone
  io->nc_.store(nc);
  io->fd_ = fd;
  io->out_armed_ = false;
  io->loop_->add_io(fd, EPOLLIN, io);
  io->remote_->wake();  // a reconnect may have queued writes: make the loop look
  return NATS_OK;
}

natsStatus ConnIo::read_cb(void* user_data, bool add) {
  auto* io = static_cast<ConnIo*>(user_data);
  std::lock_guard lock(io->mu_);
  if (io->loop_ == nullptr || io->fd_ == kInvalidSock) return NATS_OK;
  if (add) {
    io->loop_->add_io(io->fd_, EPOLLIN, io);
  } else {
    // cnats closes the socket right after this: stop polling it first.
    io->loop_->del_io(io->fd_);
    io->fd_ = kInvalidSock;
    io->out_armed_ = false;
  }
  return NATS_OK;
}

natsStatus ConnIo::write_cb(void* user_data, bool add) {
  // Called with the connection's lock held, from any thread: only flag and wake.
  auto* io = static_cast<ConnIo*>(user_data);
  io->want_write_.store(add);
  if (add && Loop::current() == nullptr) io->remote_->wake();
  return NATS_OK;
}

natsStatus ConnIo::detach_cb(void* user_data) {
  auto* io = static_cast<ConnIo*>(user_data);
  std::lock_guard lock(io->mu_);
  if (io->loop_ != nullptr && io->fd_ != kInvalidSock) io->loop_->del_io(io->fd_);
  io->fd_ = kInvalidSock;
  io->want_write_.store(false);
  return NATS_OK;
}

void ConnIo::on_io(std::uint32_t events) noexcept {
  if (abandoned_.load()) return;
  // A handler run from after_read() may close and release the bus that owns this ConnIo.
  const auto self = shared_from_this();
  natsConnection* nc = nc_.load();
  if (nc == nullptr) return;
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
    natsConnection_ProcessReadEvent(nc);
    // Messages parsed before a failed read are taken off their subscriptions first: a closed
    // cnats subscription no longer hands out what it queued.
    if (listener_ != nullptr && !abandoned_.load()) listener_->after_read();
    check_closed(nc);
  }
  if ((events & EPOLLOUT) != 0 && !abandoned_.load()) {
    write_out(nc);
    check_closed(nc);
    if (Loop* loop = Loop::current(); loop != nullptr) writable_.wake_all(*loop);
    std::lock_guard lock(mu_);
    if (!want_write_.load() && out_armed_ && loop_ != nullptr && fd_ != kInvalidSock) {
      loop_->mod_io(fd_, EPOLLIN, this);
      out_armed_ = false;
    }
  }
}

void ConnIo::on_iteration_end() noexcept {
  if (!want_write_.load(std::memory_order_relaxed) || abandoned_.load()) return;
  // A failed write can make the bus drop this connection (check_closed): stay alive until done.
  const auto self = shared_from_this();
  {
    std::lock_guard lock(mu_);
    if (out_armed_) return;  // the socket is full: EPOLLOUT will tell when to go on
  }
  natsConnection* nc = nc_.load();
  if (nc == nullptr) return;
  write_out(nc);
  check_closed(nc);
  if (abandoned_.load()) return;
  if (want_write_.load()) {
    // Partial write: wait for the socket to drain instead of spinning.
    std::lock_guard lock(mu_);
    if (loop_ != nullptr && fd_ != kInvalidSock && !out_armed_) {
      loop_->mod_io(fd_, EPOLLIN | EPOLLOUT, this);
      out_armed_ = true;
    }
  }
}

void ConnIo::flush_now() noexcept {
  if (abandoned_.load()) return;
  natsConnection* nc = nc_.load();
  if (nc != nullptr && want_write_.load()) write_out(nc);
}

void ConnIo::write_out(natsConnection* nc) noexcept { natsConnection_ProcessWriteEvent(nc); }

void ConnIo::check_closed(natsConnection* nc) noexcept {
  if (lost_told_ || abandoned_.load() || listener_ == nullptr || !natsConnection_IsClosed(nc)) return;
  lost_told_ = true;
  const auto self = shared_from_this();  // the listener lets go of this ConnIo
  listener_->on_conn_lost();
}

void ConnIo::abandon() noexcept {
  std::lock_guard lock(mu_);
  abandoned_.store(true);
  if (loop_ != nullptr && fd_ != kInvalidSock) loop_->del_io(fd_);
  if (loop_ != nullptr && Loop::current() == loop_) writable_.wake_all(*loop_);  // they see the connection gone
  loop_ = nullptr;
  listener_ = nullptr;
}

// ---- connection events ----------------------------------------------------------------------

void ConnIo::post_event(void* closure, int kind, int status) {
  std::shared_ptr<ConnIo> io;
  {
    auto& r = registry();
    std::lock_guard lock(r.mu);
    auto it = r.map.find(closure_to_id(closure));
    if (it == r.map.end()) return;
    io = it->second.lock();
  }
  if (!io || io->abandoned_.load()) return;
  const auto packed = static_cast<std::uintptr_t>(kind) | (static_cast<std::uintptr_t>(static_cast<unsigned>(status)) << 8U);
  auto remote = io->remote_;
  remote->post(Work{&ConnIo::event_work, new std::shared_ptr<ConnIo>(std::move(io)), reinterpret_cast<void*>(packed)});
}

void ConnIo::event_work(void* a, void* b, bool run) noexcept {
  auto* box = static_cast<std::shared_ptr<ConnIo>*>(a);
  if (run) {
    ConnIo& io = **box;
    const auto packed = reinterpret_cast<std::uintptr_t>(b);
    if (!io.abandoned_.load() && io.listener_ != nullptr) {
      io.listener_->on_conn_event(&io, static_cast<int>(packed & 0xffU), static_cast<int>(packed >> 8U));
    }
  }
  delete box;
}

void ConnIo::disconnected_cb(natsConnection*, void* closure) { post_event(closure, kDisconnected, 0); }
void ConnIo::discovered_cb(natsConnection*, void* closure) { post_event(closure, kDiscovered, 0); }
void ConnIo::closed_cb(natsConnection*, void* closure) { post_event(closure, kClosed, 0); }
void ConnIo::lame_duck_cb(natsConnection*, void* closure) { post_event(closure, kLameDuck, 0); }
void ConnIo::error_cb(natsConnection*, natsSubscription*, natsStatus err, void* closure) {
  // `sub` may already be freed in cnats 3.4.1 (fixed in 3.7.0): never touch it.
  post_event(closure, kAsyncError, static_cast<int>(err));
}

}  // namespace natbus::detail
