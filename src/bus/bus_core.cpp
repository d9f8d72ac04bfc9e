// BusCore's life: connect, the connection supervisor (reconnects, lame duck, discovered
// servers), connection events, plain publishing (acks, replies, core messages), close.
// The cnats options of a connection are built in cnats_options.cpp.
#include <algorithm>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "base/validate.hpp"
#include "bus/bus_core.hpp"
#include "bus/cnats_options.hpp"
#include "jetstream/consumer.hpp"
#include "message/msg_impl.hpp"
#include "message/nats_msg.hpp"
#include "transport/request.hpp"

namespace natbus {
namespace detail {

namespace {

void replace_all(std::string& s, std::string_view what, std::string_view with) {
  if (what.empty()) return;
  for (auto pos = s.find(what); pos != std::string::npos; pos = s.find(what, pos + with.size())) s.replace(pos, what.size(), with);
}

NatsConfig validated(NatsConfig c) {
  validate(c);
  return c;
}

}  // namespace

BusCore* bus_core_of(const NatsBus& bus) noexcept { return bus.core_; }

BusCore& core_of(BusCore* core, std::string_view operation) {
  if (core == nullptr) throw ClosedError("this NatsBus was moved from", ErrorContext{.operation = std::string(operation)});
  return *core;
}

BusCore::BusCore(NatsConfig config)
    : cfg_(validated(std::move(config))),
      mux_(*this),
      js_(*this, JsApi::Settings{.domain = cfg_.js_domain,
                                 .timeout = cfg_.js_api_timeout,
                                 .default_stream = cfg_.stream_name,
                                 .inbox_prefix = cfg_.inbox_prefix}),
      publisher_(*this, Publisher::Settings{.publish_timeout = cfg_.publish_timeout,
                                            .dedupe_window = cfg_.dedupe_window,
                                            .max_pending = static_cast<std::size_t>(cfg_.max_pending_publishes)}) {
  servers_ = parse_server_list(cfg_.server);
  tls_ = wants_tls(cfg_, servers_);
  if (!cfg_.no_randomize && servers_.size() > 1) {
    std::random_device rd;
    std::mt19937 g(rd());
    std::shuffle(servers_.begin(), servers_.end(), g);
  }
}

BusCore::~BusCore() { close_now(); }

void BusCore::ensure_open(std::string_view operation) const {
  if (state_ == State::open) return;
  if (state_ == State::reconnecting) {
    throw ConnectionError("not connected to NATS (reconnecting); retry once the bus is connected again",
                          ErrorContext{.operation = std::string(operation)});
  }
  if (state_ == State::closed && !closed_reason_.empty()) {
    throw ClosedError(fmt::format("the bus is closed: {}", closed_reason_), ErrorContext{.operation = std::string(operation)});
  }
  const char* why = state_ == State::idle         ? "the bus is not connected (call connect() first)"
                    : state_ == State::connecting ? "the bus is still connecting"
                    : state_ == State::closing    ? "the bus is closing"
                                                  : "the bus is closed";
  throw ClosedError(why, ErrorContext{.operation = std::string(operation)});
}

void BusCore::ensure_usable(std::string_view operation) const {
  if (nc_ != nullptr && (state_ == State::open || state_ == State::closing || state_ == State::connecting)) return;
  if (state_ == State::closing) {
    throw ConnectionError("the connection to NATS was lost while the bus was closing", ErrorContext{.operation = std::string(operation)});
  }
  ensure_open(operation);
}

std::string BusCore::scrub(std::string text) const {
  replace_all(text, cfg_.password, "***");
  replace_all(text, cfg_.token, "***");
  return text;
}

namespace {

struct ConnectResult {
  std::shared_ptr<ConnIo> io;  // declared first: destroyed after the connection
  std::shared_ptr<natsConnection> conn;
  natsStatus status = NATS_OK;
  std::string text;
};

/// "nats://user:pw@host:4222" -> "nats://host:4222".
std::string strip_user_info(std::string_view url) {
  const auto scheme = url.find("://");
  const auto start = scheme == std::string_view::npos ? 0 : scheme + 3;
  const auto at = url.find('@', start);
  if (at == std::string_view::npos) return std::string(url);
  return std::string(url.substr(0, start)) + std::string(url.substr(at + 1));
}

/// The connection's last error text, for the disconnect log line.
std::string last_conn_error(natsConnection* nc) {
  if (nc == nullptr) return "connection lost";
  const char* text = nullptr;
  const natsStatus s = natsConnection_GetLastError(nc, &text);
  if (s == NATS_OK) return "connection lost";
  return text != nullptr && *text != '\0' ? std::string(text) : std::string(natsStatus_GetText(s));
}

}  // namespace

void BusCore::set_state(State s) noexcept {
  if (state_ == s) return;
  state_ = s;
  if (loop_ != nullptr) state_waiters_.wake_all(*loop_);
}

void BusCore::count_ack(AckState kind) noexcept {
  switch (kind) {
    case AckState::acked:
      ++counters_.acks;
      break;
    case AckState::naked:
      ++counters_.naks;
      break;
    case AckState::termed:
      ++counters_.terms;
      break;
    case AckState::none:
      ++counters_.in_progress;
      break;
  }
}

Task<BusCore::State> BusCore::state_changed(State seen, Clock::time_point deadline) {
  Ref<BusCore> keep(this);
  while (state_ == seen && Clock::now() < deadline) {
    const bool woken = co_await WaitUntil(state_waiters_, deadline);
    if (!woken) break;  // the deadline, or a with_timeout() around this wait
  }
  co_return state_;
}

Task<bool> BusCore::wait_connected(Clock::time_point deadline) {
  Ref<BusCore> keep(this);
  while (state_ == State::reconnecting && Clock::now() < deadline) {
    const bool woken = co_await WaitUntil(state_waiters_, deadline);
    if (!woken) break;  // the deadline, or a with_timeout() around this wait
  }
  co_return state_ == State::open;
}

Task<BusCore::Dialed> BusCore::dial(std::vector<std::string> urls) {
  OptionsPtr opts = make_options(cfg_, urls, tls_);
  auto io = std::make_shared<ConnIo>(*loop_);
  io->install(opts.get());
  io->set_listener(this);
  loop_->add_iteration_hook(io.get());
  dialing_ = io;  // so that a close while the attempt runs stops it too
  auto job = [opts = std::move(opts), io]() mutable {
    ConnectResult r;
    r.io = io;
    natsConnection* nc = nullptr;
    r.status = natsConnection_Connect(&nc, opts.get());
    if (nc != nullptr) r.conn = std::shared_ptr<natsConnection>(nc, NatsConnDeleter{});
    if (r.status != NATS_OK) r.text = last_error_text(r.status);
    opts.reset();
    return r;
  };
  ConnectResult r = co_await blocking(std::move(job));
  if (dialing_ == io) dialing_.reset();
  if (r.status != NATS_OK || !r.conn) {
    discard(Dialed{std::move(r.io), std::move(r.conn)});
    ErrorContext ctx;
    ctx.operation = "connect";
    ctx.nats_status = static_cast<int>(r.status);
    ctx.server_text = scrub(r.text);
    std::string where;
    for (const auto& u : urls) where += (where.empty() ? "" : ",") + redact_url(u);
    switch (r.status) {
      case NATS_CONNECTION_AUTH_FAILED:
      case NATS_NOT_PERMITTED:
        throw AuthError(fmt::format("the server at {} refused the credentials{}", where,
                                    cfg_.username.empty() ? std::string() : fmt::format(" of user \"{}\"", cfg_.username)),
                        std::move(ctx));
      case NATS_SSL_ERROR:
        throw ConnectionError(fmt::format("TLS with {} failed (certificate not trusted, wrong host name, or not a TLS server)", where),
                              std::move(ctx));
      case NATS_SECURE_CONNECTION_REQUIRED:
        throw ConnectionError(fmt::format("the server at {} requires TLS: use a tls:// URL or NatsConfig.tls", where), std::move(ctx));
      case NATS_SECURE_CONNECTION_WANTED:
        throw ConnectionError(fmt::format("TLS was asked for, but the server at {} does not offer it", where), std::move(ctx));
      default:
        throw ConnectionError(fmt::format("no NATS server reachable at {} ({})", where, natsStatus_GetText(r.status)), std::move(ctx));
    }
  }
  co_return Dialed{std::move(r.io), std::move(r.conn)};
}

void BusCore::adopt(Dialed d) {
  io_ = std::move(d.io);
  conn_ = std::move(d.conn);
  nc_ = conn_.get();
  char url[256] = "";
  natsConnection_GetConnectedUrl(nc_, url, sizeof url);
  current_url_ = url;
  learn_discovered_servers();
}

void BusCore::discard(Dialed d) noexcept {
  if (d.io) {
    d.io->abandon();
    if (loop_ != nullptr) loop_->remove_iteration_hook(d.io.get());
  }
  if (!d.conn) return;
  // Closing joins cnats threads and may flush: never on the loop.
  try {
    loop_->offload([conn = std::move(d.conn), io = std::move(d.io)]() mutable {
      natsConnection_Close(conn.get());
      conn.reset();
    });
  } catch (...) {
    // No worker to be had: cnats closes it when the last reference goes, here.
  }
}

Task<void> BusCore::js_ready(std::string operation, std::chrono::milliseconds bound) {
  if (state_ == State::reconnecting) (void)co_await wait_connected(saturating_deadline(bound));
  ensure_usable(operation);
}

Task<void> BusCore::bootstrap_stream() {
  if (cfg_.stream_name.empty()) co_return;
  co_await js_.ensure_stream(cfg_.stream_name, cfg_.stream_subjects, cfg_.stream, cfg_.stream_create, cfg_.stream_update_subjects);
}

Task<void> BusCore::open_connection() {
  Dialed d = co_await dial(servers_);
  adopt(std::move(d));
}

Task<void> BusCore::connect() {
  Ref<BusCore> keep(this);
  if (state_ == State::open || state_ == State::reconnecting) co_return;
  if (state_ == State::connecting) {
    throw InvalidArgument("connect() is already running for this bus", ErrorContext{.operation = "connect"});
  }
  if (state_ == State::closing || state_ == State::closed) {
    throw ClosedError("the bus was closed; create a new NatsBus to connect again", ErrorContext{.operation = "connect"});
  }
  if (loop_ == nullptr) {
    loop_ = &Loop::require("connect");
    loop_->add_shutdown_hook(this);
  }
  set_state(State::connecting);
  std::exception_ptr failure;
  try {
    co_await open_connection();
    mux_.start(nc_, cfg_.inbox_prefix);
    set_state(State::open);
    if (cfg_.jetstream) {
      co_await js_.check_enabled();
      co_await bootstrap_stream();
    }
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure) {
    teardown_connection();
    if (state_ != State::closed) set_state(State::idle);
    connect_done_.wake_all(*loop_);
    std::rethrow_exception(failure);
  }
  ever_connected_ = true;
  log(LogLevel::info, "nats_connected",
      {{"url", redact_url(current_url_)},
       {"name", cfg_.name},
       {"max_payload", std::to_string(max_payload())},
       {"jetstream", cfg_.jetstream ? "true" : "false"}});
  connect_done_.wake_all(*loop_);
}

void BusCore::after_read() noexcept {  // Sinks may be added or removed by handlers started from here: iterate by index over a
  // snapshot of the size, skipping removed entries (set to nullptr, compacted afterwards).
  ++pumping_sinks_;
  for (std::size_t i = 0; i < sinks_.size(); ++i) {
    if (MsgSink* s = sinks_[i]; s != nullptr) s->pump();
  }
  if (--pumping_sinks_ == 0 && sinks_dirty_) {
    std::erase(sinks_, nullptr);
    sinks_dirty_ = false;
  }
}

void BusCore::remove_sink(MsgSink* s) noexcept {
  for (auto& p : sinks_) {
    if (p == s) {
      p = nullptr;
      sinks_dirty_ = true;
    }
  }
  if (pumping_sinks_ == 0 && sinks_dirty_) {
    std::erase(sinks_, nullptr);
    sinks_dirty_ = false;
  }
}

SubCore* BusCore::find_durable(std::string_view stream, std::string_view durable) const noexcept {
  for (SubCore* s : subs_) {
    if (dynamic_cast<PushCore*>(s) != nullptr && s->stream() == stream && s->durable() == durable && s->active()) return s;
  }
  return nullptr;
}

void BusCore::handler_finished() noexcept {
  --handlers_running_;
  if (handlers_running_ == 0 && loop_ != nullptr) handlers_idle_.wake_all(*loop_);
}

// ---- the connection supervisor ----------------------------------------------------------------

void BusCore::on_conn_lost() noexcept { connection_lost(last_conn_error(nc_)); }

void BusCore::on_conn_event(ConnIo* from, int kind, int status) noexcept {
  if (from != io_.get()) return;  // a connection the bus already left
  switch (kind) {
    case kDisconnected:
    case kClosed:
      // cnats closed it off the loop (stale connection: PINGs unanswered).
      connection_lost(last_conn_error(nc_));
      break;
    case kAsyncError:
      log(LogLevel::warn, "nats_async_error", {{"status", natsStatus_GetText(static_cast<natsStatus>(status))}, {"name", cfg_.name}});
      break;
    case kLameDuck:
      log(LogLevel::warn, "nats_lame_duck", {{"url", redact_url(current_url_)}, {"servers", std::to_string(server_pool().size())}});
      if (state_ == State::open && loop_ != nullptr) loop_->spawn(leave_lame_duck(Ref<BusCore>(this), current_url_));
      break;
    case kDiscovered:
      learn_discovered_servers();
      break;
    default:
      break;
  }
}

void BusCore::connection_lost(std::string_view why) noexcept {
  if (state_ != State::open || loop_ == nullptr) return;  // closing: close() goes on without it
  log(LogLevel::warn, "nats_disconnected", {{"url", redact_url(current_url_)}, {"reason", scrub(std::string(why))}, {"name", cfg_.name}});
  drop_connection(NATS_CONNECTION_DISCONNECTED);
  set_state(State::reconnecting);
  loop_->spawn(supervise(Ref<BusCore>(this)));
}

void BusCore::drop_connection(natsStatus status) noexcept {
  // Subscriptions first: each takes what cnats still queues for it (a live connection's
  // subscription hands it out; that of a closed one has nothing left that was not taken).
  std::vector<Ref<SubCore>> subs(subs_.begin(), subs_.end());
  for (auto& s : subs) s->on_disconnected();
  mux_.drop(status);
  Dialed old{std::move(io_), std::move(conn_)};
  nc_ = nullptr;
  discard(std::move(old));
}

void BusCore::reestablish() noexcept {
  try {
    mux_.resubscribe(nc_);
  } catch (const std::exception& e) {
    log(LogLevel::error, "nats_reply_inbox_failed", {{"error", e.what()}});
  }
  std::vector<Ref<SubCore>> subs(subs_.begin(), subs_.end());
  for (auto& s : subs) s->resubscribe(nc_);
}

std::vector<std::string> BusCore::server_pool() const {
  std::vector<std::string> pool;
  std::string current;
  const std::string lost = strip_user_info(current_url_);
  auto add = [&](const std::string& url) {
    const std::string bare = strip_user_info(url);
    for (const auto& p : pool) {
      if (strip_user_info(p) == bare) return;
    }
    if (bare == lost) {
      current = url;
      return;
    }
    pool.push_back(url);
  };
  for (const auto& s : servers_) add(s);
  for (const auto& s : discovered_) add(with_user_info(s));
  if (!current.empty()) pool.push_back(current);  // the one just lost, last
  return pool;
}

std::string BusCore::with_user_info(const std::string& url) const {
  if (url.find('@') != std::string::npos || servers_.empty()) return url;
  const std::string& first = servers_.front();
  const auto scheme = first.find("://");
  const auto start = scheme == std::string::npos ? 0 : scheme + 3;
  const auto at = first.find('@', start);
  if (at == std::string::npos) return url;
  const auto uscheme = url.find("://");
  const auto ustart = uscheme == std::string::npos ? 0 : uscheme + 3;
  return url.substr(0, ustart) + first.substr(start, at + 1 - start) + url.substr(ustart);
}

void BusCore::learn_discovered_servers() noexcept {
  if (nc_ == nullptr) return;
  char** list = nullptr;
  int count = 0;
  if (natsConnection_GetDiscoveredServers(nc_, &list, &count) != NATS_OK) return;
  for (int i = 0; i < count; ++i) {
    const std::string url = list[i];
    free(list[i]);  // NOLINT(cppcoreguidelines-no-malloc): cnats allocates the list with malloc
    const std::string bare = strip_user_info(url);
    const bool known = std::any_of(servers_.begin(), servers_.end(), [&](const std::string& s) { return strip_user_info(s) == bare; }) ||
                       std::find(discovered_.begin(), discovered_.end(), url) != discovered_.end();
    if (!known && discovered_.size() < 64) {
      discovered_.push_back(url);
      log(LogLevel::info, "nats_server_discovered", {{"url", redact_url(url)}});
    }
  }
  free(static_cast<void*>(list));  // NOLINT(cppcoreguidelines-no-malloc)
}

std::chrono::milliseconds BusCore::reconnect_delay() {
  const auto wait = cfg_.reconnect_time_wait;
  const auto jitter = cfg_.reconnect_jitter.count() >= 0 ? cfg_.reconnect_jitter : std::min(std::chrono::milliseconds(100), wait / 2);
  if (jitter.count() <= 0) return wait;
  // splitmix64: spreading clients apart needs no cryptographic quality.
  if (rng_state_ == 0) rng_state_ = static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) | 1U;
  std::uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30U)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27U)) * 0x94d049bb133111ebULL;
  z ^= z >> 31U;
  const auto extra = std::chrono::milliseconds(static_cast<std::int64_t>(z % (static_cast<std::uint64_t>(jitter.count()) + 1U)));
  return wait > std::chrono::milliseconds::max() - extra ? std::chrono::milliseconds::max() : wait + extra;
}

Task<void> BusCore::supervise(Ref<BusCore> self) {
  BusCore& b = *self;
  const auto lost_at = Clock::now();
  int rounds = 0;
  int attempts = 0;
  std::string last_error;
  while (b.state_ == State::reconnecting) {
    const std::vector<std::string> pool = b.server_pool();
    for (const std::string& url : pool) {
      if (b.state_ != State::reconnecting) co_return;
      ++attempts;
      std::vector<std::string> one;
      one.push_back(url);
      bool adopted = false;
      try {
        Dialed d = co_await b.dial(std::move(one));
        if (b.state_ != State::reconnecting) {
          b.discard(std::move(d));
          co_return;
        }
        b.adopt(std::move(d));
        adopted = true;
      } catch (const std::exception& e) {
        last_error = e.what();
      }
      if (!adopted) {
        if (b.state_ != State::reconnecting) co_return;
        log(LogLevel::debug, "nats_reconnect_failed",
            {{"url", redact_url(url)}, {"attempt", std::to_string(attempts)}, {"error", last_error}});
        continue;
      }
      b.set_state(State::open);
      ++b.reconnects_;
      b.reestablish();
      log(LogLevel::info, "nats_reconnected",
          {{"url", redact_url(b.current_url_)},
           {"name", b.cfg_.name},
           {"attempts", std::to_string(attempts)},
           {"took_ms", std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - lost_at).count())}});
      b.after_read();  // messages held over from the old connection start now
      co_return;
    }
    ++rounds;
    if (b.cfg_.max_reconnect_attempts >= 0 && rounds >= b.cfg_.max_reconnect_attempts) {
      b.give_up(fmt::format("gave up reconnecting after {} attempts over {} ms (max_reconnect_attempts {}); last error: {}", attempts,
                            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - lost_at).count(),
                            b.cfg_.max_reconnect_attempts, last_error));
      co_return;
    }
    const auto deadline = saturating_deadline(b.reconnect_delay());
    while (b.state_ == State::reconnecting && Clock::now() < deadline) {
      const bool woken = co_await WaitUntil(b.state_waiters_, deadline);
      if (!woken) break;
    }
  }
}

Task<void> BusCore::leave_lame_duck(Ref<BusCore> self, std::string from) {
  // The server will go away: move to another one before it does, while this one still works.
  BusCore& b = *self;
  const std::vector<std::string> pool = b.server_pool();
  for (const std::string& url : pool) {
    if (strip_user_info(url) == strip_user_info(from)) continue;
    std::vector<std::string> one;
    one.push_back(url);
    try {
      Dialed d = co_await b.dial(std::move(one));
      if (b.state_ != State::open || b.current_url_ != from) {
        b.discard(std::move(d));  // closed, or already moved on (the old one went first)
        co_return;
      }
      log(LogLevel::info, "nats_lame_duck_leaving", {{"from", redact_url(from)}});
      b.after_read();  // take what the old connection already delivered
      b.drop_connection(NATS_CONNECTION_DISCONNECTED);
      b.adopt(std::move(d));
      ++b.reconnects_;
      b.reestablish();
      log(LogLevel::info, "nats_reconnected", {{"url", redact_url(b.current_url_)}, {"name", b.cfg_.name}, {"reason", "lame duck"}});
      b.after_read();
      co_return;
    } catch (const std::exception& e) {
      log(LogLevel::warn, "nats_lame_duck_no_alternative", {{"url", redact_url(url)}, {"error", e.what()}});
    }
    if (b.state_ != State::open) co_return;
  }
}

void BusCore::give_up(std::string reason) noexcept {
  closed_reason_ = std::move(reason);
  log(LogLevel::error, "nats_connection_closed",
      {{"servers", redact_url(cfg_.server)},
       {"reason", closed_reason_},
       {"max_reconnect_attempts", std::to_string(cfg_.max_reconnect_attempts)}});
  close_now();
}

// ---- plain publishing ----------------------------------------------------------------------

void BusCore::publish_core(std::string_view subject, std::string_view data, std::string_view op) {
  ensure_usable(op);
  send_bytes(nc_, subject, nullptr, data, op);
}

void BusCore::publish_core_msg(const BusMessage& msg, const char* reply, std::string_view op) {
  ensure_usable(op);
  send_message(nc_, msg, reply, op);
}

bool BusCore::write_backlogged() const noexcept { return nc_ != nullptr && natsConnection_Buffered(nc_) > kWriteHighWater; }

Task<void> BusCore::relieve_write_backlog() {
  Ref<BusCore> keep(this);
  if (io_) io_->flush_now();  // what the socket takes now
  // The rest goes out as the loop writes (at the end of each iteration, or on EPOLLOUT); the
  // loop also reads meanwhile, so a subscriber in this process keeps up. Bounded: a server that
  // stops reading does not hold the publisher longer than publish_timeout.
  const auto deadline = saturating_deadline(cfg_.publish_timeout);
  while (write_backlogged() && Clock::now() < deadline) {
    const std::shared_ptr<ConnIo> io = io_;
    if (io && io->socket_full()) {
      (void)co_await WaitUntil(io->writable(), deadline);  // EPOLLOUT, not a spin
    } else {
      co_await yield();  // the end of this iteration writes
    }
  }
}

void BusCore::teardown_connection() noexcept {
  std::vector<Ref<SubCore>> subs(subs_.begin(), subs_.end());
  for (auto& s : subs) s->stop();
  mux_.stop(NATS_CONNECTION_CLOSED);
  if (dialing_) {
    dialing_->abandon();
    if (loop_ != nullptr) loop_->remove_iteration_hook(dialing_.get());
    dialing_.reset();
  }
  if (io_) {
    io_->flush_now();
    io_->abandon();
    if (loop_ != nullptr) loop_->remove_iteration_hook(io_.get());
  }
  if (conn_) natsConnection_Close(conn_.get());  // wakes any worker blocked on it
  conn_.reset();                                 // destroyed here, or by the last worker job holding it
  nc_ = nullptr;
}

void BusCore::close_now() noexcept {
  if (state_ == State::closed && !conn_ && !io_ && !dialing_) {
    if (loop_ != nullptr) loop_->remove_shutdown_hook(this);  // a bus destroyed after it gave up
    return;
  }
  if (state_ == State::open || state_ == State::closing || (state_ == State::reconnecting && closed_reason_.empty()))
    log(LogLevel::info, "bus_closed", {{"name", cfg_.name}, {"mode", "immediate"}});
  set_state(State::closed);
  teardown_connection();
  io_.reset();
  if (loop_ != nullptr) {
    loop_->remove_shutdown_hook(this);
    closed_waiters_.wake_all(*loop_);
    connect_done_.wake_all(*loop_);
    handlers_idle_.wake_all(*loop_);
    publisher_.tracker().wake_all(*loop_);
  }
}

Task<void> BusCore::flush(std::chrono::milliseconds timeout) {
  ensure_usable("flush");
  io_->flush_now();
  struct Hold {
    std::shared_ptr<ConnIo> io;
    std::shared_ptr<natsConnection> conn;
  };
  Hold hold{io_, conn_};
  const auto ms = cnats_ms(timeout);
  auto job = [hold, ms] { return natsConnection_FlushTimeout(hold.conn.get(), ms); };
  const natsStatus s = co_await blocking(std::move(job));
  if (s != NATS_OK) throw_status(s, ErrorContext{.operation = "flush"});
}

Task<void> BusCore::close() {
  Ref<BusCore> keep(this);
  while (state_ == State::connecting) co_await WaitOn(connect_done_);
  if (state_ == State::idle) {
    set_state(State::closed);
    co_return;
  }
  if (state_ == State::closed) {
    if (conn_ || io_) close_now();
    co_return;
  }
  if (state_ == State::closing) {
    while (state_ != State::closed) co_await WaitOn(closed_waiters_);
    co_return;
  }
  // Reconnecting: close without a connection (the supervisor sees the state and stops).
  set_state(State::closing);
  const auto started = Clock::now();
  const auto deadline = saturating_deadline(cfg_.drain_timeout);
  log(LogLevel::info, "bus_closing",
      {{"name", cfg_.name},
       {"handlers_running", std::to_string(handlers_running_)},
       {"publishes_pending", std::to_string(publisher_.tracker().in_flight())}});
  // 1. No handler starts from now on; messages received but not started are nak'ed.
  {
    std::vector<Ref<SubCore>> subs(subs_.begin(), subs_.end());
    for (auto& s : subs) s->stop();
  }
  // 2. Running handlers finish (their acks are written as they go).
  while (handlers_running_ > 0 && state_ == State::closing) {
    // GCC 12 miscompiles co_await directly in an if condition: bind the result first.
    const bool woken = co_await WaitUntil(handlers_idle_, deadline);
    if (!woken) {
      log(LogLevel::warn, "bus_drain_timeout",
          {{"handlers_running", std::to_string(handlers_running_)},
           {"drain_timeout_ms", std::to_string(cfg_.drain_timeout.count())},
           {"note", "their messages are redelivered after ack_wait"}});
      break;
    }
  }
  // 3. Publishes waiting for their PubAck.
  while (publisher_.tracker().in_flight() > 0 && state_ == State::closing) {
    // GCC 12 miscompiles co_await directly in an if condition: bind the result first.
    const bool woken = co_await WaitUntil(publisher_.tracker().all_settled(), deadline);
    if (!woken) {
      log(LogLevel::warn, "bus_drain_timeout", {{"publishes_pending", std::to_string(publisher_.tracker().in_flight())}});
      break;
    }
  }
  // 3b. Stopped consumers drain: what the server had already sent them is nak'ed, so that
  // another subscriber gets it now rather than after ack_wait.
  {
    std::vector<Ref<SubCore>> subs(subs_.begin(), subs_.end());
    for (auto& s : subs) {
      if (s->draining() && state_ == State::closing) co_await s->wait_idle(deadline);
    }
  }
  // 4. PING/PONG: once the PONG is back, the server has every ack and publish written before.
  if (state_ == State::closing && conn_) {
    io_->flush_now();
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    const auto ms = std::max<std::int64_t>(cnats_ms(left), 1000);
    struct Hold {
      std::shared_ptr<ConnIo> io;
      std::shared_ptr<natsConnection> conn;
    };
    Hold hold{io_, conn_};
    auto flush = [hold, ms] { return natsConnection_FlushTimeout(hold.conn.get(), ms); };
    const natsStatus fs = co_await blocking(std::move(flush));
    if (fs != NATS_OK && state_ == State::closing) {
      log(LogLevel::warn, "bus_flush_failed", {{"status", natsStatus_GetText(fs)}});
    }
  }
  // 5. Close: the connection itself is destroyed on a worker (it joins cnats threads).
  if (state_ == State::closing) {
    std::vector<Ref<SubCore>> subs(subs_.begin(), subs_.end());
    for (auto& s : subs) {
      s->stop();
      s->abandon_drain();
    }
    mux_.stop(NATS_CONNECTION_CLOSED);
    struct Hold {
      std::shared_ptr<ConnIo> io;
      std::shared_ptr<natsConnection> conn;
    };
    Hold hold{io_, conn_};
    if (io_) {
      // Write the UNSUBs now: natsConnection_Close would otherwise wait up to 500 ms for a PONG
      // that nobody reads once the loop let go of the socket.
      io_->flush_now();
      io_->abandon();
      loop_->remove_iteration_hook(io_.get());
    }
    if (dialing_) {
      dialing_->abandon();
      loop_->remove_iteration_hook(dialing_.get());
      dialing_.reset();
    }
    conn_.reset();
    nc_ = nullptr;
    auto destroy = [h = std::move(hold)]() mutable {
      if (h.conn) natsConnection_Close(h.conn.get());
      h.conn.reset();
    };
    co_await blocking(std::move(destroy));
    io_.reset();
    set_state(State::closed);
    loop_->remove_shutdown_hook(this);
    log(LogLevel::info, "bus_closed",
        {{"name", cfg_.name},
         {"took_ms", std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count())}});
  }
  closed_waiters_.wake_all(*loop_);
}

}  // namespace detail
}  // namespace natbus
