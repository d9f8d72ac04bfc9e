// BusCore's lifecycle (connect, events, close) and the public NatsBus / Subscription handles.
#include <algorithm>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "base/validate.hpp"
#include "bus/bus_core.hpp"
#include "jetstream/consumer.hpp"
#include "message/msg_impl.hpp"
#include "transport/request.hpp"

namespace natbus {
namespace detail {

namespace {

void replace_all(std::string& s, std::string_view what, std::string_view with) {
  if (what.empty()) return;
  for (auto pos = s.find(what); pos != std::string::npos; pos = s.find(what, pos + with.size())) s.replace(pos, what.size(), with);
}

bool wants_tls(const NatsConfig& c, const std::vector<std::string>& servers);

}  // namespace

BusCore* bus_core_of(const NatsBus& bus) noexcept { return bus.core_; }

BusCore& core_of(BusCore* core, std::string_view operation) {
  if (core == nullptr) throw ClosedError("this NatsBus was moved from", ErrorContext{.operation = std::string(operation)});
  return *core;
}

BusCore::BusCore(NatsConfig config) : cfg_(std::move(config)), mux_(*this) {
  validate(cfg_);
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

bool wants_tls(const NatsConfig& c, const std::vector<std::string>& servers) {
  return servers.front().starts_with("tls://") || !c.tls.ca_file.empty() || !c.tls.cert_file.empty() || c.tls.skip_verify;
}

/// Options of one connection attempt. cnats' own reconnect is off: a connection that dies is
/// closed for good, and the bus' supervisor opens a fresh one (a fresh parser, nats.c#1007).
OptionsPtr make_options(const NatsConfig& c, const std::vector<std::string>& servers, bool tls) {
  natsOptions* raw = nullptr;
  check_status(natsOptions_Create(&raw), "natsOptions_Create");
  OptionsPtr opts(raw);
  std::vector<const char*> urls;
  urls.reserve(servers.size());
  for (const auto& s : servers) urls.push_back(s.c_str());
  check_status(natsOptions_SetServers(raw, urls.data(), static_cast<int>(urls.size())), "natsOptions_SetServers");
  check_status(natsOptions_SetNoRandomize(raw, true), "natsOptions_SetNoRandomize");  // the bus orders them
  if (!c.name.empty()) check_status(natsOptions_SetName(raw, c.name.c_str()), "natsOptions_SetName");
  if (!c.username.empty()) check_status(natsOptions_SetUserInfo(raw, c.username.c_str(), c.password.c_str()), "natsOptions_SetUserInfo");
  if (!c.token.empty()) check_status(natsOptions_SetToken(raw, c.token.c_str()), "natsOptions_SetToken");
  if (!c.credentials_file.empty()) {
    const natsStatus s = natsOptions_SetUserCredentialsFromFiles(raw, c.credentials_file.c_str(), nullptr);
    if (s != NATS_OK) {
      throw ConfigError(fmt::format("NatsConfig.credentials_file {}: {}", quote(c.credentials_file), natsStatus_GetText(s)),
                        ErrorContext{.operation = "connect"});
    }
  }
  if (tls) {
    check_status(natsOptions_SetSecure(raw, true), "natsOptions_SetSecure");
    if (!c.tls.ca_file.empty()) {
      const natsStatus s = natsOptions_LoadCATrustedCertificates(raw, c.tls.ca_file.c_str());
      if (s != NATS_OK) {
        throw ConfigError(fmt::format("NatsConfig.tls.ca_file {}: {}", quote(c.tls.ca_file), last_error_text(s)),
                          ErrorContext{.operation = "connect"});
      }
    }
    if (!c.tls.cert_file.empty()) {
      const natsStatus s = natsOptions_LoadCertificatesChain(raw, c.tls.cert_file.c_str(), c.tls.key_file.c_str());
      if (s != NATS_OK) {
        throw ConfigError(fmt::format("NatsConfig.tls.cert_file/key_file {}: {}", quote(c.tls.cert_file), last_error_text(s)),
                          ErrorContext{.operation = "connect"});
      }
    }
    if (c.tls.skip_verify) check_status(natsOptions_SkipServerVerification(raw, true), "natsOptions_SkipServerVerification");
    if (!c.tls.expected_hostname.empty()) {
      check_status(natsOptions_SetExpectedHostname(raw, c.tls.expected_hostname.c_str()), "natsOptions_SetExpectedHostname");
    }
  }
  check_status(natsOptions_SetTimeout(raw, cnats_ms(c.connect_timeout)), "natsOptions_SetTimeout");
  check_status(natsOptions_SetAllowReconnect(raw, false), "natsOptions_SetAllowReconnect");
  check_status(natsOptions_SetPingInterval(raw, cnats_ms(c.ping_interval)), "natsOptions_SetPingInterval");
  check_status(natsOptions_SetMaxPingsOut(raw, c.max_pings_out), "natsOptions_SetMaxPingsOut");
  // Reads of 64 KiB: a batch of small JetStream messages per read event.
  check_status(natsOptions_SetIOBufSize(raw, 64 * 1024), "natsOptions_SetIOBufSize");
  return opts;
}

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
      co_await check_jetstream();
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

void BusCore::publish_core(std::string_view subject, std::string_view reply, std::string_view data, std::string_view op) {
  ensure_usable(op);
  char subj_buf[256];
  std::string subj_heap;
  const char* subj = nullptr;
  if (subject.size() < sizeof subj_buf) {
    std::memcpy(subj_buf, subject.data(), subject.size());
    subj_buf[subject.size()] = '\0';
    subj = subj_buf;
  } else {
    subj_heap.assign(subject);
    subj = subj_heap.c_str();
  }
  natsStatus s = NATS_OK;
  if (reply.empty()) {
    s = natsConnection_Publish(nc_, subj, data.data(), static_cast<int>(data.size()));
  } else {
    const std::string r(reply);
    s = natsConnection_PublishRequest(nc_, subj, r.c_str(), data.data(), static_cast<int>(data.size()));
  }
  if (s != NATS_OK) throw_status(s, ErrorContext{.operation = std::string(op), .subject = std::string(subject)});
}

void BusCore::publish_core_msg(const BusMessage& msg, std::string_view reply, std::string_view op) {
  ensure_usable(op);
  const std::string r(reply);
  MsgPtr m = to_nats_msg(msg, r.empty() ? nullptr : r.c_str(), op);
  const natsStatus s = natsConnection_PublishMsg(nc_, m.get());
  if (s != NATS_OK) throw_status(s, ErrorContext{.operation = std::string(op), .subject = std::string(msg.subject())});
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
    publishes_.wake_all(*loop_);
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
       {"publishes_pending", std::to_string(publishes_.in_flight())}});
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
  while (publishes_.in_flight() > 0 && state_ == State::closing) {
    // GCC 12 miscompiles co_await directly in an if condition: bind the result first.
    const bool woken = co_await WaitUntil(publishes_.all_settled(), deadline);
    if (!woken) {
      log(LogLevel::warn, "bus_drain_timeout", {{"publishes_pending", std::to_string(publishes_.in_flight())}});
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

// =============================================================================================
// Public handles
// =============================================================================================

using detail::BusCore;
using detail::core_of;
using detail::Ref;

namespace {

// connect() and close() run to their own end (bounded by their timeouts): a with_timeout()
// around them waits, so that no half-open or half-closed bus is left behind.
Task<void> connect_impl(Ref<BusCore> bus) { co_await detail::shield(bus->connect()); }
Task<void> close_impl(Ref<BusCore> bus) { co_await detail::shield(bus->close()); }

Task<PubAck> publish_impl(Ref<BusCore> bus, BusMessage msg) {
  PublishFuture f = co_await bus->publish_async(std::move(msg));
  co_return co_await std::move(f);
}

Task<PublishFuture> publish_async_impl(Ref<BusCore> bus, BusMessage msg) { co_return co_await bus->publish_async(std::move(msg)); }

Task<void> publish_complete_impl(Ref<BusCore> bus, std::chrono::milliseconds timeout) { co_await bus->publish_async_complete(timeout); }

Task<void> reply_impl(Ref<BusCore> bus, BusMessage msg, bool jetstream) {
  if (jetstream) {
    PublishFuture f = co_await bus->publish_async(std::move(msg));
    co_await std::move(f);
  } else {
    bus->publish_core_msg(msg, {}, "reply");
  }
}

}  // namespace

NatsBus::NatsBus(NatsConfig config) : core_(new BusCore(std::move(config))) {}

NatsBus::~NatsBus() {
  if (core_ != nullptr) {
    core_->close_now();
    core_->release();
  }
}

NatsBus::NatsBus(NatsBus&& other) noexcept : core_(std::exchange(other.core_, nullptr)) {}

NatsBus& NatsBus::operator=(NatsBus&& other) noexcept {
  if (this != &other) {
    if (core_ != nullptr) {
      core_->close_now();
      core_->release();
    }
    core_ = std::exchange(other.core_, nullptr);
  }
  return *this;
}

Task<void> NatsBus::connect() { return connect_impl(Ref<BusCore>(&core_of(core_, "connect"))); }

Task<void> NatsBus::close() {
  if (core_ == nullptr) return []() -> Task<void> { co_return; }();
  return close_impl(Ref<BusCore>(core_));
}

bool NatsBus::connected() const noexcept { return core_ != nullptr && core_->is_open(); }

namespace {
ConnectionStatus to_status(BusCore::State s) noexcept {
  switch (s) {
    case BusCore::State::idle:
      return ConnectionStatus::idle;
    case BusCore::State::connecting:
      return ConnectionStatus::connecting;
    case BusCore::State::open:
      return ConnectionStatus::connected;
    case BusCore::State::reconnecting:
      return ConnectionStatus::reconnecting;
    case BusCore::State::closing:
      return ConnectionStatus::closing;
    case BusCore::State::closed:
      break;
  }
  return ConnectionStatus::closed;
}

Task<ConnectionStatus> status_changed_impl(Ref<BusCore> bus, ConnectionStatus seen, detail::Clock::time_point deadline) {
  // States that look the same from outside (none today) would wake without a change: loop.
  while (to_status(bus->state()) == seen && detail::Clock::now() < deadline) {
    const BusCore::State now = bus->state();
    (void)co_await bus->state_changed(now, deadline);
  }
  co_return to_status(bus->state());
}
}  // namespace

ConnectionStatus NatsBus::status() const noexcept { return core_ == nullptr ? ConnectionStatus::closed : to_status(core_->state()); }

Task<ConnectionStatus> NatsBus::status_changed(ConnectionStatus seen, std::chrono::milliseconds timeout) {
  if (timeout.count() < 0) {
    throw InvalidArgument(fmt::format("timeout must not be negative, got {} ms", timeout.count()),
                          ErrorContext{.operation = "status_changed"});
  }
  BusCore& core = core_of(core_, "status_changed");
  return status_changed_impl(Ref<BusCore>(&core), seen, detail::saturating_deadline(timeout));
}

std::string_view NatsBus::closed_reason() const noexcept {
  return core_ != nullptr ? std::string_view(core_->closed_reason()) : std::string_view{};
}

std::uint64_t NatsBus::reconnects() const noexcept { return core_ != nullptr ? core_->reconnects() : 0; }

const NatsConfig& NatsBus::config() const noexcept {
  static const NatsConfig empty{};
  return core_ != nullptr ? core_->config() : empty;
}

Task<PubAck> NatsBus::publish(BusMessage msg) { return publish_impl(Ref<BusCore>(&core_of(core_, "publish")), std::move(msg)); }

Task<PubAck> NatsBus::publish_bytes(std::string_view subject, std::span<const std::byte> data, const MessageOptions& options) {
  return publish(BusMessage::from_bytes(subject, data, options));
}

Task<PubAck> NatsBus::publish_bytes(std::string_view subject, std::string_view data, const MessageOptions& options) {
  return publish(BusMessage::from_bytes(subject, data, options));
}

Task<PublishFuture> NatsBus::publish_async(BusMessage msg) {
  return publish_async_impl(Ref<BusCore>(&core_of(core_, "publish_async")), std::move(msg));
}

Task<void> NatsBus::publish_async_complete(std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) {
    throw InvalidArgument(fmt::format("timeout must be positive, got {} ms", timeout.count()),
                          ErrorContext{.operation = "publish_async_complete"});
  }
  return publish_complete_impl(Ref<BusCore>(&core_of(core_, "publish_async_complete")), timeout);
}

std::size_t NatsBus::pending_publishes() const noexcept { return core_ != nullptr ? core_->pending_publishes() : 0; }

// ---- replies ----

namespace {

BusMessage build_reply(const ReceivedMessage& request, const ReplyOptions& o, std::string_view op,
                       const std::function<BusMessage(std::string_view, const MessageOptions&)>& make) {
  if (!request.valid()) throw InvalidArgument("empty ReceivedMessage (moved from?)", ErrorContext{.operation = std::string(op)});
  std::string_view target = o.subject;
  if (target.empty()) target = o.final ? request.final_to() : request.reply_on();
  if (target.empty()) {
    throw InvalidArgument(fmt::format("the request has no {} header and no subject was given", o.final ? "x-final-to" : "x-reply-on"),
                          ErrorContext{.operation = std::string(op), .subject = std::string(request.subject())});
  }
  MessageOptions mo;
  mo.sender = o.sender;
  mo.correlation_id = request.correlation_id();
  mo.headers = o.headers;
  mo.compress = o.compress;
  mo.message_type = o.message_type.empty() ? request.message_type() : o.message_type;
  mo.trace_id = request.trace_id();
  mo.parent = request.trace_context();
  return make(target, mo);
}

}  // namespace

Task<void> NatsBus::reply_json_text(const ReceivedMessage& request, std::string json_text, const ReplyOptions& options) {
  BusCore& core = core_of(core_, "reply_json");
  BusMessage m = build_reply(request, options, "reply_json", [&](std::string_view s, const MessageOptions& mo) {
    return detail::json_text_message("reply_json", s, json_text, mo);
  });
  return reply_impl(Ref<BusCore>(&core), std::move(m), options.jetstream);
}

Task<void> NatsBus::reply_text(const ReceivedMessage& request, std::string_view text, const ReplyOptions& options) {
  BusCore& core = core_of(core_, "reply_text");
  BusMessage m = build_reply(request, options, "reply_text",
                             [&](std::string_view s, const MessageOptions& mo) { return BusMessage::from_text(s, text, mo); });
  return reply_impl(Ref<BusCore>(&core), std::move(m), options.jetstream);
}

Task<void> NatsBus::reply_bytes(const ReceivedMessage& request, std::span<const std::byte> data, const ReplyOptions& options) {
  BusCore& core = core_of(core_, "reply_bytes");
  BusMessage m = build_reply(request, options, "reply_bytes",
                             [&](std::string_view s, const MessageOptions& mo) { return BusMessage::from_bytes(s, data, mo); });
  return reply_impl(Ref<BusCore>(&core), std::move(m), options.jetstream);
}

// ---- management ----

namespace {
Task<StreamInfo> create_stream_impl(Ref<BusCore> bus, std::string name, std::vector<std::string> subjects, StreamOptions options,
                                    bool add_missing) {
  co_return co_await bus->ensure_stream(std::move(name), std::move(subjects), options, true, add_missing);
}
Task<void> flush_impl(Ref<BusCore> bus, std::chrono::milliseconds timeout) { co_await bus->flush(timeout); }
Task<StreamInfo> stream_info_impl(Ref<BusCore> bus, std::string name) { co_return co_await bus->stream_info(std::move(name)); }
Task<void> delete_stream_impl(Ref<BusCore> bus, std::string name) { co_await bus->delete_stream(std::move(name)); }
Task<void> purge_stream_impl(Ref<BusCore> bus, std::string name) { co_await bus->purge_stream(std::move(name)); }
Task<ConsumerInfo> consumer_info_impl(Ref<BusCore> bus, std::string stream, std::string name) {
  co_return co_await bus->consumer_info(std::move(stream), std::move(name));
}
Task<void> delete_consumer_impl(Ref<BusCore> bus, std::string stream, std::string name) {
  co_await bus->delete_consumer(std::move(stream), std::move(name));
}
}  // namespace

Task<StreamInfo> NatsBus::create_stream(std::string_view name, std::span<const std::string> subjects, const StreamOptions& options,
                                        bool add_missing_subjects) {
  const std::string_view op = "create_stream";
  detail::check(op, "stream", name, detail::name_problem(name));
  if (subjects.empty()) throw InvalidArgument("a stream needs at least one subject", ErrorContext{.operation = std::string(op)});
  for (const auto& s : subjects) detail::check(op, "subject", s, detail::subject_problem(s, true));
  NatsConfig probe;
  probe.stream = options;
  validate(probe);  // the same checks as NatsConfig.stream
  return create_stream_impl(Ref<BusCore>(&core_of(core_, op)), std::string(name),
                            std::vector<std::string>(subjects.begin(), subjects.end()), options, add_missing_subjects);
}

Task<void> NatsBus::flush(std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) {
    throw InvalidArgument(fmt::format("timeout must be positive, got {} ms", timeout.count()), ErrorContext{.operation = "flush"});
  }
  return flush_impl(Ref<BusCore>(&core_of(core_, "flush")), timeout);
}

Task<StreamInfo> NatsBus::stream_info(std::string_view stream) {
  detail::check("stream_info", "stream", stream, detail::name_problem(stream));
  return stream_info_impl(Ref<BusCore>(&core_of(core_, "stream_info")), std::string(stream));
}

Task<void> NatsBus::delete_stream(std::string_view stream) {
  detail::check("delete_stream", "stream", stream, detail::name_problem(stream));
  return delete_stream_impl(Ref<BusCore>(&core_of(core_, "delete_stream")), std::string(stream));
}

Task<void> NatsBus::purge_stream(std::string_view stream) {
  detail::check("purge_stream", "stream", stream, detail::name_problem(stream));
  return purge_stream_impl(Ref<BusCore>(&core_of(core_, "purge_stream")), std::string(stream));
}

Task<ConsumerInfo> NatsBus::consumer_info(std::string_view stream, std::string_view consumer) {
  detail::check("consumer_info", "stream", stream, detail::name_problem(stream));
  detail::check("consumer_info", "consumer", consumer, detail::name_problem(consumer));
  return consumer_info_impl(Ref<BusCore>(&core_of(core_, "consumer_info")), std::string(stream), std::string(consumer));
}

Task<void> NatsBus::delete_consumer(std::string_view stream, std::string_view consumer) {
  detail::check("delete_consumer", "stream", stream, detail::name_problem(stream));
  detail::check("delete_consumer", "consumer", consumer, detail::name_problem(consumer));
  return delete_consumer_impl(Ref<BusCore>(&core_of(core_, "delete_consumer")), std::string(stream), std::string(consumer));
}

// ---- subscriptions ----

namespace {

struct Resolved {
  detail::ConsumerSpec spec;
  bool manual_ack = true;
  int max_concurrency = 1;
  std::string dead_letter_subject;
  RetryBackoff retry_backoff{};
  std::vector<std::chrono::milliseconds> retry_backoff_steps;
};

/// The redelivery backoff of a subscription: its own, else NatsConfig's; validated, copied.
template <class O>
void resolve_backoff(const NatsConfig& cfg, std::string_view op, const O& o, Resolved& r) {
  if constexpr (requires { o.retry_backoff; }) {
    r.retry_backoff = o.retry_backoff.value_or(cfg.retry_backoff);
    if (!o.retry_backoff_steps.empty()) {
      r.retry_backoff_steps.assign(o.retry_backoff_steps.begin(), o.retry_backoff_steps.end());
    } else if (!o.retry_backoff.has_value()) {
      r.retry_backoff_steps = cfg.retry_backoff_steps;
    }
  } else {
    r.retry_backoff = cfg.retry_backoff;
    r.retry_backoff_steps = cfg.retry_backoff_steps;
  }
  if (auto p = detail::backoff_problem(r.retry_backoff, r.retry_backoff_steps); !p.empty()) {
    throw InvalidArgument(fmt::format("retry_backoff: {}", p), ErrorContext{.operation = std::string(op)});
  }
}

template <class O>
void resolve_dead_letter(const NatsConfig& cfg, std::string_view op, const O& o, Resolved& r) {
  const std::string_view dlq = o.dead_letter_subject.empty() ? std::string_view(cfg.dead_letter_subject) : o.dead_letter_subject;
  if (!dlq.empty()) detail::check(op, "dead_letter_subject", dlq, detail::subject_problem(dlq, false));
  r.dead_letter_subject = std::string(dlq);
}

/// Durations the server and natbus' timers compute with (pull expiry, heartbeats).
void require_at_most_a_day(std::string_view op, std::string_view field, std::chrono::milliseconds d) {
  if (d > std::chrono::hours(24)) {
    throw InvalidArgument(fmt::format("{} must be at most 24 h, got {} ms", field, d.count()), ErrorContext{.operation = std::string(op)});
  }
}

template <class Rep, class Period>
void require_positive(std::string_view op, std::string_view field, std::chrono::duration<Rep, Period> d) {
  if (d.count() <= 0) {
    throw InvalidArgument(
        fmt::format("{} must be positive, got {} ms", field, std::chrono::duration_cast<std::chrono::milliseconds>(d).count()),
        ErrorContext{.operation = std::string(op)});
  }
}

void require_concurrency(std::string_view op, int n) {
  if (n < 1) throw InvalidArgument(fmt::format("max_concurrency must be >= 1, got {}", n), ErrorContext{.operation = std::string(op)});
}

/// The options every consumer kind shares, resolved against NatsConfig and validated.
template <class O>
void common_spec(const NatsConfig& cfg, std::string_view op, std::string_view subject, const O& o, Resolved& r) {
  auto& s = r.spec;
  s.op = std::string(op);
  detail::check(op, "subject", subject, detail::subject_problem(subject, true));
  s.filter_subject = std::string(subject);
  if (!o.stream.empty()) detail::check(op, "stream", o.stream, detail::name_problem(o.stream));
  s.stream = std::string(o.stream);
  r.manual_ack = o.manual_ack.value_or(cfg.manual_ack);
  s.ack_wait = o.ack_wait.value_or(cfg.ack_wait);
  require_positive(op, "ack_wait", s.ack_wait);
  require_concurrency(op, o.max_concurrency);
  r.max_concurrency = o.max_concurrency;
  resolve_backoff(cfg, op, o, r);
}

void resolve_durable_fields(const NatsConfig& cfg, std::string_view op, std::string_view durable, const auto& o, Resolved& r) {
  auto& s = r.spec;
  if (durable.empty()) {
    throw InvalidArgument("durable is required (name the consumer, e.g. {.durable = \"orders\"})",
                          ErrorContext{.operation = std::string(op)});
  }
  detail::check(op, "durable", durable, detail::name_problem(durable));
  s.durable = std::string(durable);
  s.reconcile = o.bind.value_or(cfg.bind);
  s.deliver_policy = o.deliver_policy.value_or(cfg.deliver_policy);
  s.max_ack_pending = o.max_ack_pending.value_or(cfg.max_ack_pending);
  if (s.max_ack_pending == 0 || s.max_ack_pending < -1) {
    throw InvalidArgument(fmt::format("max_ack_pending must be positive or -1, got {}", s.max_ack_pending),
                          ErrorContext{.operation = std::string(op)});
  }
  s.max_deliver = o.max_deliver.value_or(-1);
  if (s.max_deliver == 0 || s.max_deliver < -1) {
    throw InvalidArgument(fmt::format("max_deliver must be >= 1 or -1 (unlimited), got {}", s.max_deliver),
                          ErrorContext{.operation = std::string(op)});
  }
  s.start_sequence = o.start_sequence;
  s.start_time = o.start_time;
  if (s.deliver_policy == DeliverPolicy::by_start_sequence && s.start_sequence == 0) {
    throw InvalidArgument("deliver_policy by_start_sequence needs start_sequence >= 1", ErrorContext{.operation = std::string(op)});
  }
  if (s.deliver_policy == DeliverPolicy::by_start_time && s.start_time.time_since_epoch().count() == 0) {
    throw InvalidArgument("deliver_policy by_start_time needs start_time", ErrorContext{.operation = std::string(op)});
  }
}

detail::DeliverySettings delivery_of(Resolved& r) {
  detail::DeliverySettings s;
  s.manual_ack = r.manual_ack;
  s.max_concurrency = r.max_concurrency;
  s.dead_letter_subject = std::move(r.dead_letter_subject);
  s.retry_backoff = r.retry_backoff;
  s.retry_backoff_steps = std::move(r.retry_backoff_steps);
  return s;
}

Task<Subscription> push_impl(Ref<BusCore> bus, std::unique_ptr<detail::HandlerBase> handler, Resolved r) {
  bus->ensure_open(r.spec.op);
  r.spec.stream = co_await bus->resolve_stream(r.spec.stream, r.spec.filter_subject, r.spec.op);
  if (!r.spec.durable.empty()) {
    if (detail::SubCore* existing = bus->find_durable(r.spec.stream, r.spec.durable)) {
      // A second handler on the same durable would never see a message (the server delivers
      // each once to the deliver subject): say so instead of keeping the first one silently.
      ErrorContext ctx;
      ctx.operation = r.spec.op;
      ctx.stream = r.spec.stream;
      ctx.durable = r.spec.durable;
      throw InvalidArgument(fmt::format("durable \"{}\" on stream \"{}\" is already subscribed in this process{}: keep the first "
                                        "Subscription (raise its max_concurrency for more parallel handlers) or close it first",
                                        r.spec.durable, r.spec.stream,
                                        existing->queue().empty() ? std::string() : fmt::format(" (queue \"{}\")", existing->queue())),
                            std::move(ctx));
    }
  }
  detail::DeliverySettings settings = delivery_of(r);
  auto core = Ref<detail::PushCore>::adopt(new detail::PushCore(bus.get(), std::move(handler), std::move(settings)));
  co_await core->start(std::move(r.spec));
  co_return Subscription(detail::kLibrary, core.get());
}

Task<Subscription> pull_impl(Ref<BusCore> bus, std::unique_ptr<detail::HandlerBase> handler, Resolved r, int batch,
                             std::chrono::milliseconds expires, std::chrono::milliseconds heartbeat) {
  bus->ensure_open(r.spec.op);
  r.spec.stream = co_await bus->resolve_stream(r.spec.stream, r.spec.filter_subject, r.spec.op);
  detail::DeliverySettings settings = delivery_of(r);
  auto core = Ref<detail::PullCore>::adopt(new detail::PullCore(bus.get(), std::move(handler), std::move(settings)));
  co_await core->start(std::move(r.spec), batch, expires, heartbeat);
  co_return Subscription(detail::kLibrary, core.get());
}

Task<PullSubscription> pull_fetch_impl(Ref<BusCore> bus, Resolved r, int batch, std::chrono::milliseconds expires,
                                       std::chrono::milliseconds heartbeat) {
  bus->ensure_open(r.spec.op);
  r.spec.stream = co_await bus->resolve_stream(r.spec.stream, r.spec.filter_subject, r.spec.op);
  auto core = Ref<detail::PullCore>::adopt(new detail::PullCore(bus.get(), nullptr));  // fetch: the caller acks
  co_await core->start(std::move(r.spec), batch, expires, heartbeat);
  co_return PullSubscription(detail::kLibrary, core.get());
}

Resolved resolve_pull(const NatsConfig& cfg, std::string_view op, std::string_view subject, const PullOptions& o,
                      std::chrono::milliseconds& heartbeat) {
  Resolved r;
  common_spec(cfg, op, subject, o, r);
  resolve_durable_fields(cfg, op, o.durable, o, r);
  resolve_dead_letter(cfg, op, o, r);
  r.spec.push = false;
  if (o.batch < 1) throw InvalidArgument(fmt::format("batch must be >= 1, got {}", o.batch), ErrorContext{.operation = std::string(op)});
  require_positive(op, "expires", o.expires);
  require_at_most_a_day(op, "expires", o.expires);
  require_at_most_a_day(op, "idle_heartbeat", o.idle_heartbeat);
  if (o.idle_heartbeat.count() < 0) {
    throw InvalidArgument(fmt::format("idle_heartbeat must not be negative, got {} ms", o.idle_heartbeat.count()),
                          ErrorContext{.operation = std::string(op)});
  }
  heartbeat = o.idle_heartbeat;
  if (heartbeat.count() == 0 && o.expires >= std::chrono::milliseconds(200)) {
    heartbeat = std::min<std::chrono::milliseconds>(std::chrono::seconds(5), o.expires * 2 / 5);
  }
  if (heartbeat.count() > 0 && heartbeat * 2 > o.expires) {
    throw InvalidArgument(
        fmt::format("idle_heartbeat ({} ms) must be at most half of expires ({} ms)", heartbeat.count(), o.expires.count()),
        ErrorContext{.operation = std::string(op)});
  }
  return r;
}

}  // namespace

Task<Subscription> NatsBus::push_subscribe_erased(std::string_view subject, detail::HandlerPtr owned, const PushOptions& o) {
  std::unique_ptr<detail::HandlerBase> handler(owned.release());
  const std::string_view op = "push_subscribe";
  BusCore& core = core_of(core_, op);
  const NatsConfig& cfg = core.config();
  Resolved r;
  common_spec(cfg, op, subject, o, r);
  resolve_durable_fields(cfg, op, o.durable, o, r);
  resolve_dead_letter(cfg, op, o, r);
  r.spec.push = true;
  r.spec.queue = std::string(o.queue.value_or(std::string_view(cfg.queue_group)));
  if (!r.spec.queue.empty()) detail::check(op, "queue", r.spec.queue, detail::queue_problem(r.spec.queue));
  if (o.idle_heartbeat.count() < 0) {
    throw InvalidArgument(fmt::format("idle_heartbeat must not be negative, got {} ms", o.idle_heartbeat.count()),
                          ErrorContext{.operation = std::string(op)});
  }
  require_at_most_a_day(op, "idle_heartbeat", o.idle_heartbeat);
  if (o.flow_control && o.idle_heartbeat.count() == 0) {
    throw InvalidArgument("flow_control needs idle_heartbeat", ErrorContext{.operation = std::string(op)});
  }
  if (!r.spec.queue.empty() && (o.flow_control || o.idle_heartbeat.count() > 0)) {
    throw InvalidArgument("a queue group cannot use idle_heartbeat or flow_control", ErrorContext{.operation = std::string(op)});
  }
  r.spec.idle_heartbeat = o.idle_heartbeat;
  r.spec.flow_control = o.flow_control;
  r.spec.bind_timeout = o.bind_timeout.value_or(cfg.bind_timeout);
  if (r.spec.bind_timeout.count() < 0) {
    throw InvalidArgument(fmt::format("bind_timeout must not be negative, got {} ms", r.spec.bind_timeout.count()),
                          ErrorContext{.operation = std::string(op)});
  }
  return push_impl(Ref<BusCore>(&core), std::move(handler), std::move(r));
}

Task<Subscription> NatsBus::pull_subscribe_erased(std::string_view subject, detail::HandlerPtr owned, const PullOptions& o) {
  std::unique_ptr<detail::HandlerBase> handler(owned.release());
  const std::string_view op = "pull_subscribe";
  BusCore& core = core_of(core_, op);
  std::chrono::milliseconds heartbeat{0};
  Resolved r = resolve_pull(core.config(), op, subject, o, heartbeat);
  return pull_impl(Ref<BusCore>(&core), std::move(handler), std::move(r), o.batch, o.expires, heartbeat);
}

Task<PullSubscription> NatsBus::pull_subscribe(std::string_view subject, const PullOptions& o) {
  const std::string_view op = "pull_subscribe";
  BusCore& core = core_of(core_, op);
  std::chrono::milliseconds heartbeat{0};
  Resolved r = resolve_pull(core.config(), op, subject, o, heartbeat);
  return pull_fetch_impl(Ref<BusCore>(&core), std::move(r), o.batch, o.expires, heartbeat);
}

Task<Subscription> NatsBus::ephemeral_subscribe_erased(std::string_view subject, detail::HandlerPtr owned, const EphemeralOptions& o) {
  std::unique_ptr<detail::HandlerBase> handler(owned.release());
  const std::string_view op = "ephemeral_push_subscribe";
  BusCore& core = core_of(core_, op);
  const NatsConfig& cfg = core.config();
  Resolved r;
  common_spec(cfg, op, subject, o, r);
  r.spec.push = true;
  r.spec.reconcile = false;
  r.spec.deliver_policy = o.deliver_policy;
  r.spec.max_ack_pending = cfg.max_ack_pending;
  require_positive(op, "inactive_threshold", o.inactive_threshold);
  r.spec.inactive_threshold = o.inactive_threshold;
  if (!o.queue.empty()) detail::check(op, "queue", o.queue, detail::queue_problem(o.queue));
  r.spec.queue = std::string(o.queue);
  if (r.spec.deliver_policy == DeliverPolicy::by_start_sequence || r.spec.deliver_policy == DeliverPolicy::by_start_time) {
    throw InvalidArgument("ephemeral consumers support deliver policies all, last, new and last_per_subject",
                          ErrorContext{.operation = std::string(op)});
  }
  return push_impl(Ref<BusCore>(&core), std::move(handler), std::move(r));
}

// ---- Subscription ----

Subscription::Subscription(detail::LibraryKey /*key*/, detail::SubCore* core) noexcept : core_(core) {
  if (core_ != nullptr) {
    core_->add_ref();
    core_->add_handle();
  }
}

Subscription& Subscription::operator=(Subscription&& other) noexcept {
  if (this != &other) {
    Subscription old(std::move(*this));
    core_ = std::exchange(other.core_, nullptr);
  }
  return *this;
}

Subscription::~Subscription() {
  if (core_ != nullptr) {
    core_->drop_handle();
    core_->release();
  }
}

void Subscription::unsubscribe() noexcept {
  if (core_ != nullptr) core_->stop();
}

namespace {
Task<void> close_sub_impl(Ref<detail::SubCore> core) {
  core->stop();
  const auto deadline = detail::saturating_deadline(core->bus().config().drain_timeout);
  co_await core->wait_idle(deadline);
}
}  // namespace

Task<void> Subscription::close() {
  if (core_ == nullptr) return []() -> Task<void> { co_return; }();
  return close_sub_impl(Ref<detail::SubCore>(core_));
}

bool Subscription::active() const noexcept { return core_ != nullptr && core_->active(); }
std::string_view Subscription::subject() const noexcept {
  return core_ != nullptr ? std::string_view(core_->subject()) : std::string_view{};
}
std::string_view Subscription::stream() const noexcept { return core_ != nullptr ? std::string_view(core_->stream()) : std::string_view{}; }
std::string_view Subscription::durable() const noexcept {
  return core_ != nullptr ? std::string_view(core_->durable()) : std::string_view{};
}
std::string_view Subscription::queue() const noexcept { return core_ != nullptr ? std::string_view(core_->queue()) : std::string_view{}; }
std::uint64_t Subscription::delivered() const noexcept { return core_ != nullptr ? core_->delivered() : 0; }

// ---- PullSubscription ----

PullSubscription::PullSubscription(detail::LibraryKey /*key*/, detail::PullCore* core) noexcept : core_(core) {
  if (core_ != nullptr) {
    core_->add_ref();
    core_->add_handle();
  }
}

PullSubscription& PullSubscription::operator=(PullSubscription&& other) noexcept {
  if (this != &other) {
    PullSubscription old(std::move(*this));
    core_ = std::exchange(other.core_, nullptr);
  }
  return *this;
}

PullSubscription::~PullSubscription() {
  if (core_ != nullptr) {
    core_->drop_handle();
    core_->release();
  }
}

namespace {
Task<std::vector<ReceivedMessage>> fetch_impl(Ref<detail::PullCore> core, int batch, std::chrono::milliseconds timeout, bool no_wait) {
  co_return co_await core->fetch(batch, timeout, no_wait);
}
}  // namespace

Task<std::vector<ReceivedMessage>> PullSubscription::fetch(int batch, std::chrono::milliseconds timeout) {
  if (core_ == nullptr) throw ClosedError("empty PullSubscription (moved from?)", ErrorContext{.operation = "fetch"});
  if (batch < 1) throw InvalidArgument(fmt::format("batch must be >= 1, got {}", batch), ErrorContext{.operation = "fetch"});
  if (timeout.count() <= 0) {
    throw InvalidArgument(fmt::format("timeout must be positive, got {} ms", timeout.count()), ErrorContext{.operation = "fetch"});
  }
  return fetch_impl(Ref<detail::PullCore>(core_), batch, timeout, false);
}

Task<std::vector<ReceivedMessage>> PullSubscription::fetch_no_wait(int batch) {
  if (core_ == nullptr) throw ClosedError("empty PullSubscription (moved from?)", ErrorContext{.operation = "fetch_no_wait"});
  if (batch < 1) throw InvalidArgument(fmt::format("batch must be >= 1, got {}", batch), ErrorContext{.operation = "fetch_no_wait"});
  return fetch_impl(Ref<detail::PullCore>(core_), batch, std::chrono::milliseconds(1000), true);
}

void PullSubscription::unsubscribe() noexcept {
  if (core_ != nullptr) core_->stop();
}

Task<void> PullSubscription::close() {
  if (core_ == nullptr) return []() -> Task<void> { co_return; }();
  return close_sub_impl(Ref<detail::SubCore>(core_));
}

bool PullSubscription::active() const noexcept { return core_ != nullptr && core_->active(); }
std::string_view PullSubscription::stream() const noexcept {
  return core_ != nullptr ? std::string_view(core_->stream()) : std::string_view{};
}
std::string_view PullSubscription::durable() const noexcept {
  return core_ != nullptr ? std::string_view(core_->durable()) : std::string_view{};
}

}  // namespace natbus
