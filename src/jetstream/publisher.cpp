// JetStream publishing (publisher.hpp) and the PublishFuture that awaits a PubAck.
#include "jetstream/publisher.hpp"

#include <array>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "base/key.hpp"
#include "base/validate.hpp"
#include "jetstream/puback.hpp"
#include "jetstream/server_errors.hpp"
#include "message/nats_msg.hpp"
#include "natbus/log.hpp"
#include "transport/request.hpp"

namespace natbus::detail {

/// One publish waiting for its PubAck. Referenced by the Mux entry (until the reply or the
/// timeout) and by its PublishFuture (until awaited or dropped).
struct PubSlot final : Mux::Waiter {
  static void* operator new(std::size_t size) { return frame_alloc(size); }
  static void operator delete(void* ptr, std::size_t size) noexcept { frame_free(ptr, size); }

  explicit PubSlot(Publisher* p) noexcept : pub(p) { pub->host().pub_retain(); }
  PubSlot(const PubSlot&) = delete;
  PubSlot& operator=(const PubSlot&) = delete;
  ~PubSlot() { pub->host().pub_release(); }

  void add_ref() noexcept { ++refs; }
  void release() noexcept {
    if (--refs == 0) delete this;
  }

  void on_reply(MsgPtr reply, natsStatus status) noexcept override;
  void settle() noexcept {
    done = true;
    if (!error && !dedupe_id.empty()) {
      try {
        pub->tracker().remember_published(std::move(dedupe_id));
      } catch (...) {  // out of memory: the window forgets this one
      }
    }
    auto& c = pub->host().pub_metrics();
    if (error) {
      ++c.failed;
    } else {
      ++c.acked;
      if (ack.duplicate) ++c.duplicates;
    }
    c.ack_seconds.observe(std::chrono::duration<double>(Clock::now() - sent_at).count());
    Loop* loop = pub->host().pub_loop();
    pub->tracker().settled(loop);
    if (waiter) {
      if (loop != nullptr) loop->schedule(std::exchange(waiter, {}));
    }
    release();  // the Mux's reference
  }

  int refs = 1;
  bool done = false;
  Publisher* pub;
  /// The subject, for error messages: inline when short (no allocation per publish).
  void set_subject(std::string_view s) {
    if (s.size() <= subject_inline.size()) {
      std::memcpy(subject_inline.data(), s.data(), s.size());
      subject_len = s.size();
    } else {
      subject_long.assign(s);
      subject_len = kLong;
    }
  }
  [[nodiscard]] std::string_view subject_view() const noexcept {
    return subject_len == kLong ? std::string_view(subject_long) : std::string_view(subject_inline.data(), subject_len);
  }
  [[nodiscard]] std::string subject() const { return std::string(subject_view()); }

  static constexpr std::size_t kLong = ~std::size_t{0};
  std::array<char, 120> subject_inline{};
  std::size_t subject_len = 0;
  std::string subject_long;
  bool fast = false;      // sent on the Mux's fast lane
  std::string dedupe_id;  // the correlation id, when dedupe_window is on: remembered once acked
  PubAck ack;
  std::exception_ptr error;
  std::coroutine_handle<> waiter{};
  Clock::time_point sent_at{};
};

void PubSlot::on_reply(MsgPtr reply, natsStatus status) noexcept {
  // Hot path first: a PubAck the fast parser understands builds no error context.
  if (status == NATS_OK) {
    const char* data = natsMsg_GetData(reply.get());
    const std::string_view body(data == nullptr ? "" : data, static_cast<std::size_t>(natsMsg_GetDataLength(reply.get())));
    if (parse_puback_fast(body, ack)) {
      if (!fast) pub->tracker().learn_stream_subject(subject_view());
      settle();
      return;
    }
  }
  ErrorContext ctx;
  ctx.operation = "publish";
  ctx.subject = subject();
  try {
    switch (status) {
      case NATS_OK: {
        const char* data = natsMsg_GetData(reply.get());
        const std::string_view body(data == nullptr ? "" : data, static_cast<std::size_t>(natsMsg_GetDataLength(reply.get())));
        const auto j = nlohmann::json::parse(body, nullptr, false);
        if (j.is_discarded() || !j.is_object()) {
          ctx.server_text = std::string(body.substr(0, 200));
          throw Error(errc::protocol, "unreadable PubAck", ctx);
        }
        if (auto it = j.find("error"); it != j.end() && it->is_object()) throw_server_error(*it, ctx, ServerErrorSource::puback);
        ack.stream = intern(j.value("stream", std::string()));
        ack.sequence = j.value("seq", std::uint64_t{0});
        ack.duplicate = j.value("duplicate", false);
        ack.domain = intern(j.value("domain", std::string()));
        if (!fast) pub->tracker().learn_stream_subject(subject_view());
        break;
      }
      case NATS_NO_RESPONDERS:
        // cnats 3.4 reports this with the misleading jerr 10076 ("JetStream not enabled").
        throw NoStreamError(
            "no stream took the message: no stream captures this subject, or its leader is being elected "
            "(retry with the same msg_id)",
            ctx);
      case NATS_TIMEOUT:
        throw TimeoutError(fmt::format("no PubAck within {} ms (publish_timeout); the message may or may not be stored: "
                                       "retry with the same msg_id",
                                       pub->settings().publish_timeout.count()),
                           ctx);
      case NATS_CONNECTION_DISCONNECTED:
        throw ConnectionError(
            "the connection was lost before the PubAck arrived; the message may or may not be stored: retry with the same msg_id", ctx);
      default:
        throw ClosedError("the connection closed before the PubAck arrived; the message may or may not be stored", ctx);
    }
  } catch (...) {
    error = std::current_exception();
  }
  settle();
}

void Publisher::on_fast_lane_no_responders() noexcept {
  log(LogLevel::warn, "publish_no_responders_fast_lane",
      {{"known_subjects", std::to_string(tracker_.forget_stream_subjects())},
       {"effect", "a publish in flight gets no PubAck and times out after publish_timeout; later publishes re-learn their streams"}});
}

namespace {

/// Waits for room in the publish window.
class WindowAwaiter {
 public:
  WindowAwaiter(PublishTracker& tracker, std::size_t max_pending) noexcept
      : tracker_(tracker), max_(max_pending), wait_(tracker.window()) {}
  [[nodiscard]] bool await_ready() const noexcept { return tracker_.in_flight() < max_; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return wait_.await_suspend(h);
  }
  void await_resume() { wait_.await_resume(); }

 private:
  PublishTracker& tracker_;
  std::size_t max_;
  WaitOn wait_;
};

}  // namespace

Task<PublishFuture> Publisher::publish_async(BusMessage msg) {
  const std::string_view op = "publish";
  // While the supervisor reconnects, a publish waits for the new connection (bounded).
  if (host_.pub_reconnecting()) (void)co_await host_.pub_wait_connected(saturating_deadline(s_.publish_timeout));
  host_.pub_ensure_open(op);
  const bool dedupe = s_.dedupe_window.count() > 0 && !msg.correlation_id().empty();
  if (dedupe && tracker_.published_recently(msg.correlation_id(), saturating_ns(s_.dedupe_window))) {
    // Python's dedupe_window: a publish whose correlation id was published within the window
    // is dropped; report it as a duplicate without touching the server.
    log(LogLevel::debug, "publish_deduplicated",
        {{"subject", std::string(msg.subject())}, {"correlation_id", std::string(msg.correlation_id())}});
    auto* slot = new PubSlot(this);
    slot->done = true;
    slot->ack.duplicate = true;
    auto& c = host_.pub_metrics();
    ++c.acked;
    ++c.duplicates;
    co_return PublishFuture(kLibrary, slot);
  }
  const auto size = msg.wire_size();
  if (natsConnection* nc = host_.pub_connection(); nc != nullptr) {
    if (const auto max = natsConnection_GetMaxPayload(nc); max > 0 && size > static_cast<std::size_t>(max)) {
      throw PayloadTooLargeError(
          fmt::format("message of {} bytes (payload and headers) exceeds the server's max_payload of {} bytes", size, max),
          ErrorContext{.operation = std::string(op), .subject = std::string(msg.subject())});
    }
  }
  co_await WindowAwaiter(tracker_, s_.max_pending);
  if (host_.pub_reconnecting()) (void)co_await host_.pub_wait_connected(saturating_deadline(s_.publish_timeout));
  host_.pub_ensure_open(op);  // the bus may have closed (or lost its connection) while we waited

  auto* slot = new PubSlot(this);  // reference for the Mux
  slot->set_subject(msg.subject());
  if (dedupe) slot->dedupe_id.assign(msg.correlation_id());
  try {
    char reply[256];
    slot->fast = tracker_.stream_known(msg.subject());
    Mux& mux = host_.pub_mux();
    const char* r = mux.next_reply(reply, sizeof reply, slot->fast ? Mux::Lane::fast : Mux::Lane::exact);
    send_message(host_.pub_connection(), msg, r, op);
    mux.commit(saturating_ns(s_.publish_timeout), slot);
  } catch (...) {
    host_.pub_mux().abandon_reply();
    slot->release();
    throw;
  }
  tracker_.sent();
  ++host_.pub_metrics().published;
  slot->sent_at = Clock::now();
  slot->add_ref();  // reference for the future
  PublishFuture future(kLibrary, slot);
  if (host_.pub_write_backlogged()) co_await host_.pub_relieve_write_backlog();
  co_return future;
}

Task<void> Publisher::complete(std::chrono::milliseconds timeout) {
  const auto deadline = saturating_deadline(timeout);
  while (tracker_.in_flight() > 0) {
    // GCC 12 miscompiles co_await directly in an if condition: bind the result first.
    const bool woken = co_await WaitUntil(tracker_.all_settled(), deadline);
    if (!woken) {
      throw TimeoutError(fmt::format("{} publishes still wait for their PubAck after {} ms", tracker_.in_flight(), timeout.count()),
                         ErrorContext{.operation = "publish_async_complete"});
    }
  }
}

}  // namespace natbus::detail

namespace natbus {

PublishFuture& PublishFuture::operator=(PublishFuture&& other) noexcept {
  if (this != &other) {
    if (slot_ != nullptr) slot_->release();
    slot_ = std::exchange(other.slot_, nullptr);
  }
  return *this;
}

PublishFuture::~PublishFuture() {
  if (slot_ != nullptr) slot_->release();
}

bool PublishFuture::ready() const noexcept { return slot_ != nullptr && slot_->done; }

PublishFuture::Awaiter::~Awaiter() {
  if (slot_ != nullptr) {
    if (suspended_ && slot_->waiter) slot_->waiter = {};
    slot_->release();
  }
}

bool PublishFuture::Awaiter::await_ready() const noexcept { return slot_ == nullptr || slot_->done; }

bool PublishFuture::Awaiter::suspend(std::coroutine_handle<> h, detail::CancelScope* scope) noexcept {
  if (scope != nullptr && scope->cancelled()) {
    cancelled_ = true;
    return false;
  }
  suspended_ = true;
  slot_->waiter = h;
  link(scope);
  return true;
}

// A with_timeout() around the await expired: stop waiting; the PubAck, when it comes, settles
// the slot with nobody to resume.
void PublishFuture::Awaiter::on_cancel(detail::CancelNode* node) noexcept {
  auto* self = static_cast<Awaiter*>(node);
  if (!self->suspended_ || self->slot_ == nullptr || !self->slot_->waiter) return;
  auto h = std::exchange(self->slot_->waiter, {});
  self->cancelled_ = true;
  if (detail::Loop* loop = detail::Loop::current(); loop != nullptr) loop->schedule(h);
}

PubAck PublishFuture::Awaiter::await_resume() {
  unlink();
  suspended_ = false;
  if (cancelled_) {
    throw TimeoutError("interrupted by natbus::with_timeout before the PubAck came: the outcome is unknown, retry with the same msg_id",
                       ErrorContext{.operation = "publish", .subject = slot_ != nullptr ? slot_->subject() : std::string()});
  }
  if (slot_ == nullptr) throw std::logic_error("natbus::PublishFuture: awaited twice or empty");
  if (slot_->error) std::rethrow_exception(slot_->error);
  return slot_->ack;
}

}  // namespace natbus
