// Folder bus/: the top. The state behind a NatsBus (BusCore, bus_core.cpp: the connection's
// life, the supervisor, events, close), the cnats options of a connection (cnats_options.*),
// the public handles' forwarding (bus.cpp), subscribing and message streams (subscribe.cpp:
// options resolved and validated), the core NATS calls (core_calls.cpp), configuration
// (config.cpp), metrics, and BlockingBus. It may call every folder below; nothing includes it.
// The folders below reach the bus through the interfaces BusCore implements: Mux::Host
// (transport/), AckTarget (message/), SubHost (subscription/), JsApi::Host and Publisher::Host
// (jetstream/). scripts/lint.sh checks that includes only go down.
//
// BusCore: the state behind a NatsBus handle. Lives on one loop; referenced (intrusively) by
// the NatsBus, its subscriptions and every ReceivedMessage, so it outlives all of them. It owns
// the connection, the Mux, the JetStream API (JsApi) and the Publisher.
#pragma once

#include <algorithm>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/ref.hpp"
#include "base/util.hpp"
#include "jetstream/js_api.hpp"
#include "jetstream/publisher.hpp"
#include "message/msg_impl.hpp"
#include "natbus/bus.hpp"
#include "natbus/config.hpp"
#include "natbus/json.hpp"
#include "natbus/log.hpp"
#include "natbus/metrics.hpp"
#include "natbus/stream_info.hpp"
#include "runtime/loop.hpp"
#include "runtime/wait.hpp"
#include "subscription/sub_host.hpp"
#include "transport/cnats.hpp"
#include "transport/connection.hpp"
#include "transport/mux.hpp"
#include "transport/sink.hpp"

namespace natbus::detail {

class SubCore;

class BusCore final : public RefCounted,
                      public ShutdownHook,
                      public ConnListener,
                      public Mux::Host,
                      public AckTarget,
                      public JsApi::Host,
                      public Publisher::Host,
                      public SubHost {
 public:
  explicit BusCore(NatsConfig config);
  ~BusCore() override;

  /// reconnecting: the connection was lost and the supervisor opens a fresh one.
  enum class State { idle, connecting, open, reconnecting, closing, closed };

  // ---- lifecycle ----
  Task<void> connect();
  Task<void> close();
  /// Synchronous, bounded close (NatsBus destructor, loop shutdown).
  void close_now() noexcept;
  void on_loop_shutdown() noexcept override {
    close_now();
    loop_ = nullptr;  // the loop is going away; a bus that outlives it must not touch it
  }

  [[nodiscard]] const NatsConfig& config() const noexcept override { return cfg_; }
  [[nodiscard]] State state() const noexcept { return state_; }
  [[nodiscard]] bool is_open() const noexcept override { return state_ == State::open; }
  [[nodiscard]] bool reconnecting() const noexcept override { return state_ == State::reconnecting; }
  /// A connection is there to write on (open, or closing with the connection still up).
  [[nodiscard]] bool has_connection() const noexcept override {
    return nc_ != nullptr && (state_ == State::open || state_ == State::closing);
  }
  /// While reconnecting: waits until the bus is open again, closed, or `deadline`. True when open.
  Task<bool> wait_connected(Clock::time_point deadline) override;
  /// Completes when the state differs from `seen`, or at `deadline`; returns the state then.
  Task<State> state_changed(State seen, Clock::time_point deadline);
  /// Why the bus ended by itself (reconnect attempts exhausted); empty otherwise.
  [[nodiscard]] const std::string& closed_reason() const noexcept override { return closed_reason_; }
  [[nodiscard]] std::uint64_t reconnects() const noexcept { return reconnects_; }
  [[nodiscard]] Loop* loop() const noexcept override { return loop_; }
  [[nodiscard]] natsConnection* nc() const noexcept override { return nc_; }
  [[nodiscard]] Mux& mux() noexcept { return mux_; }

  /// Counters of this bus (loop thread).
  struct Counters {
    PublishMetrics publish;
    std::uint64_t acks = 0, naks = 0, terms = 0, in_progress = 0;
  };
  [[nodiscard]] Counters& counters() noexcept { return counters_; }
  [[nodiscard]] const Counters& counters() const noexcept { return counters_; }
  [[nodiscard]] const std::vector<SubCore*>& subscriptions() const noexcept { return subs_; }
  /// Throws ClosedError naming `operation` unless the bus is open.
  void ensure_open(std::string_view operation) const override;
  /// Like ensure_open, but also allowed while closing (acks of running handlers).
  void ensure_usable(std::string_view operation) const;

  // ---- ConnListener ----
  void after_read() noexcept override;
  void on_conn_lost() noexcept override;
  void on_conn_event(ConnIo* from, int kind, int status) noexcept override;

  // ---- sinks and subscriptions ----
  void add_sink(MsgSink* s) override { sinks_.push_back(s); }
  void remove_sink(MsgSink* s) noexcept override;
  void register_sub(SubCore* s) override { subs_.push_back(s); }
  void unregister_sub(SubCore* s) noexcept override { std::erase(subs_, s); }
  /// Active push subscription on this stream/durable in this process, if any.
  SubCore* find_durable(std::string_view stream, std::string_view durable) const noexcept;
  /// A new unique subject under the configured inbox prefix.
  [[nodiscard]] std::string new_inbox() const { return cfg_.inbox_prefix + "." + random_token(22); }

  // ---- handlers in flight (close() waits for them) ----
  void handler_started() noexcept override { ++handlers_running_; }
  void handler_finished() noexcept override;
  [[nodiscard]] std::size_t handlers_running() const noexcept { return handlers_running_; }

  // ---- plain publishing (acks, replies, core messages) ----
  /// Core publish of a payload; throws on error.
  void publish_core(std::string_view subject, std::string_view data, std::string_view op);
  /// Core publish of a message, with `reply` (nullptr: none); a plain PUB when it has no headers.
  void publish_core_msg(const BusMessage& msg, const char* reply, std::string_view op);
  /// Bytes buffered for the socket beyond which a core publisher waits for the loop to write.
  static constexpr int kWriteHighWater = 1 << 20;
  /// More than kWriteHighWater bytes wait in cnats' write buffer (a publisher outruns the socket).
  [[nodiscard]] bool write_backlogged() const noexcept;
  /// Writes what the socket takes, then yields to the loop until the backlog is below the high
  /// water mark (bounded by publish_timeout). Without it a publisher that never suspends grows
  /// the buffer without bound, and every partial write moves all of it (cnats' natsBuf_Consume).
  Task<void> relieve_write_backlog();

  // ---- JetStream publishing (jetstream/publisher.*) ----
  [[nodiscard]] Publisher& publisher() noexcept { return publisher_; }
  [[nodiscard]] const Publisher& publisher() const noexcept { return publisher_; }

  // ---- JetStream API (jetstream/js_api.*) ----
  [[nodiscard]] JsApi& js() noexcept override { return js_; }
  /// PING/PONG round trip on a worker thread while the loop keeps reading.
  Task<void> flush(std::chrono::milliseconds timeout) override;

  // Mux::Host
  [[nodiscard]] Loop* mux_loop() const noexcept override { return loop_; }
  [[nodiscard]] natsConnection* mux_connection() const noexcept override { return nc_; }
  void mux_add_sink(MsgSink* s) override { add_sink(s); }
  void mux_remove_sink(MsgSink* s) noexcept override { remove_sink(s); }
  void mux_no_responders() noexcept override { publisher_.on_fast_lane_no_responders(); }
  // SubHost (the rest of it is above)
  void add_ref() noexcept override { RefCounted::add_ref(); }
  void release() noexcept override { RefCounted::release(); }
  [[nodiscard]] AckTarget* ack_target() noexcept override { return this; }
  Task<ConsumerInfo> consumer_info(std::string stream, std::string consumer) override {
    return js_.consumer_info(std::move(stream), std::move(consumer));
  }
  Task<PublishFuture> publish(BusMessage msg) override { return publisher_.publish_async(std::move(msg)); }
  // JsApi::Host
  Task<void> js_ready(std::string operation, std::chrono::milliseconds bound) override;
  [[nodiscard]] Mux& js_mux() noexcept override { return mux_; }
  // Publisher::Host
  void pub_retain() noexcept override { add_ref(); }
  void pub_release() noexcept override { release(); }
  [[nodiscard]] Loop* pub_loop() const noexcept override { return loop_; }
  [[nodiscard]] natsConnection* pub_connection() const noexcept override { return nc_; }
  [[nodiscard]] bool pub_reconnecting() const noexcept override { return state_ == State::reconnecting; }
  Task<bool> pub_wait_connected(Clock::time_point deadline) override { return wait_connected(deadline); }
  void pub_ensure_open(std::string_view operation) const override { ensure_open(operation); }
  [[nodiscard]] Mux& pub_mux() noexcept override { return mux_; }
  [[nodiscard]] PublishMetrics& pub_metrics() noexcept override { return counters_.publish; }
  [[nodiscard]] bool pub_write_backlogged() const noexcept override { return write_backlogged(); }
  Task<void> pub_relieve_write_backlog() override { return relieve_write_backlog(); }
  // AckTarget (received messages' acks and replies)
  void ack_retain() noexcept override { add_ref(); }
  void ack_release() noexcept override { release(); }
  void ensure_ack_usable(std::string_view op) const override { ensure_usable(op); }
  [[nodiscard]] bool ack_connected() const noexcept override {
    return has_connection() && natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED;
  }
  void send_ack_body(const char* reply, std::string_view body, std::string_view op) override { publish_core(reply, body, op); }
  void count_ack(AckState kind) noexcept override;
  void send_reply(const BusMessage& msg, std::string_view op) override { publish_core_msg(msg, nullptr, op); }
  [[nodiscard]] std::size_t max_decompressed_size() const noexcept override { return cfg_.max_decompressed_size; }
  [[nodiscard]] Mux& ack_mux() noexcept override { return mux_; }
  [[nodiscard]] std::chrono::milliseconds ack_sync_timeout() const noexcept override { return cfg_.js_api_timeout; }

  /// Max payload the server accepts (from its INFO).
  [[nodiscard]] std::int64_t max_payload() const noexcept { return nc_ != nullptr ? natsConnection_GetMaxPayload(nc_) : 0; }

 private:
  /// One fresh connection: a new ConnIo and natsConnection (a new cnats parser) to `urls`,
  /// opened on a worker. Throws the mapped connect error.
  struct Dialed {
    std::shared_ptr<ConnIo> io;
    std::shared_ptr<natsConnection> conn;
  };
  Task<Dialed> dial(std::vector<std::string> urls);
  /// Makes `d` the bus' connection (loop thread).
  void adopt(Dialed d);
  /// Lets go of a connection: stops its I/O and destroys it on a worker.
  void discard(Dialed d) noexcept;
  Task<void> open_connection();
  Task<void> bootstrap_stream();
  void teardown_connection() noexcept;
  void set_state(State s) noexcept;
  /// The connection is gone (or being left, `why`): drop everything tied to it and let the
  /// supervisor open a fresh one.
  void connection_lost(std::string_view why) noexcept;
  /// Drops what lives on the current connection; outstanding requests fail with `status`.
  void drop_connection(natsStatus status) noexcept;
  /// Re-establishes every subscription and the reply inbox on the (new) current connection.
  void reestablish() noexcept;
  static Task<void> supervise(Ref<BusCore> self);
  static Task<void> leave_lame_duck(Ref<BusCore> self, std::string from);
  /// Servers to try, in order: configured ones (shuffled once unless no_randomize), then
  /// discovered ones, the one just lost last.
  [[nodiscard]] std::vector<std::string> server_pool() const;
  void learn_discovered_servers() noexcept;
  /// The given server, with the configured URL's user info when it has none.
  [[nodiscard]] std::string with_user_info(const std::string& url) const;
  [[nodiscard]] std::chrono::milliseconds reconnect_delay();
  /// Gives up for good: every consumer ends with `reason`.
  void give_up(std::string reason) noexcept;
  /// `text` with the password and token replaced by "***".
  [[nodiscard]] std::string scrub(std::string text) const;

  NatsConfig cfg_;
  std::vector<std::string> servers_;     // configured, in the order tried
  std::vector<std::string> discovered_;  // announced by the cluster (connect_urls)
  std::string current_url_;              // the server of the current (or last) connection
  bool tls_ = false;                     // every connection uses TLS
  std::string closed_reason_;
  std::uint64_t reconnects_ = 0;
  std::uint64_t rng_state_ = 0;
  WaitList state_waiters_;  // state_changed(), wait_connected(), the supervisor's waits
  State state_ = State::idle;
  Loop* loop_ = nullptr;
  natsConnection* nc_ = nullptr;          // conn_.get(), cached
  std::shared_ptr<natsConnection> conn_;  // shared with worker jobs that use it
  std::shared_ptr<ConnIo> io_;
  std::shared_ptr<ConnIo> dialing_;  // the connection attempt in progress, if any
  std::vector<MsgSink*> sinks_;
  bool sinks_dirty_ = false;
  int pumping_sinks_ = 0;
  Mux mux_;  // after sinks_: its destructor removes its sink
  JsApi js_;
  std::vector<SubCore*> subs_;
  Counters counters_;
  std::size_t handlers_running_ = 0;
  WaitList handlers_idle_;
  Publisher publisher_;
  WaitList closed_waiters_;
  WaitList connect_done_;
  bool ever_connected_ = false;
};

/// Ref<BusCore> of a NatsBus, with the checks public entry points share.
BusCore& core_of(BusCore* core, std::string_view operation);

/// A core subscription (subscribe_core, serve, service endpoints) on arguments already checked;
/// completes once the server has the interest.
Task<Subscription> start_core_sub(Ref<BusCore> bus, std::unique_ptr<HandlerBase> handler, std::string subject, std::string queue,
                                  int max_concurrency, std::string op, bool answer_queued_on_stop = false);

}  // namespace natbus::detail
