// ReceivedMessage: views into cnats' message, transparent gunzip, acks.
#include <charconv>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "base/util.hpp"
#include "base/validate.hpp"
#include "message/gzip.hpp"
#include "message/header_block.hpp"
#include "message/msg_impl.hpp"
#include "transport/request.hpp"

namespace natbus {

namespace detail {

MsgImpl::MsgImpl(MsgPtr m, AckTarget* b) noexcept : msg(std::move(m)), bus(b), received_at(std::chrono::system_clock::now()) {
  if (bus != nullptr) bus->ack_retain();
}

MsgImpl::~MsgImpl() {
  msg.reset();
  if (bus != nullptr) bus->ack_release();
}

std::optional<std::string_view> MsgImpl::headers_in_place() noexcept {
  if (header_state == 0) {
    const auto block = received_header_block(msg.get());
    header_state = block ? 1 : 2;
    if (block) header_block = *block;
  }
  if (header_state == 1) return header_block;
  return std::nullopt;
}

namespace {

constexpr std::size_t kDefaultMaxDecompressed = std::size_t{64} * 1024 * 1024;

std::string_view state_name(AckState s) {
  switch (s) {
    case AckState::acked:
      return "acked";
    case AckState::naked:
      return "nak'ed";
    case AckState::termed:
      return "terminated";
    case AckState::none:
      break;
  }
  return "unanswered";
}

MsgImpl& require(MsgImpl* m, std::string_view op) {
  if (m == nullptr) throw InvalidArgument("empty ReceivedMessage (moved from?)", ErrorContext{.operation = std::string(op)});
  return *m;
}

void check_ackable(MsgImpl& m, std::string_view op, bool allow_answered) {
  const char* reply = natsMsg_GetReply(m.msg.get());
  if (reply == nullptr || std::strncmp(reply, "$JS.ACK.", 8) != 0) {
    throw InvalidArgument("not a JetStream delivery (its reply subject is not $JS.ACK...): nothing to acknowledge",
                          ErrorContext{.operation = std::string(op), .subject = natsMsg_GetSubject(m.msg.get())});
  }
  if (m.no_ack) {
    throw InvalidArgument("an ordered consumer's message is not acknowledged (its consumer has ack policy none)",
                          ErrorContext{.operation = std::string(op), .subject = natsMsg_GetSubject(m.msg.get())});
  }
  if (!allow_answered && m.state != AckState::none) {
    throw AlreadyAcknowledgedError(fmt::format("message was already {}", state_name(m.state)),
                                   ErrorContext{.operation = std::string(op), .subject = natsMsg_GetSubject(m.msg.get())});
  }
  if (m.bus == nullptr) {
    throw ClosedError("no bus to acknowledge through", ErrorContext{.operation = std::string(op)});
  }
  m.bus->ensure_ack_usable(op);
}

}  // namespace

void send_ack(MsgImpl& m, std::string_view op, std::string_view body, AckState new_state) {
  check_ackable(m, op, new_state == AckState::none);
  // cnats would buffer the ack while reconnecting and send it later, maybe after the message
  // was redelivered elsewhere. Refusing it makes the outcome known: not acked, redelivered.
  if (!m.bus->ack_connected()) {
    throw ConnectionError(fmt::format("not connected to NATS (reconnecting): the {} was not sent; the message will be "
                                      "redelivered after its ack_wait",
                                      op),
                          ErrorContext{.operation = std::string(op), .subject = natsMsg_GetSubject(m.msg.get())});
  }
  m.bus->send_ack_body(natsMsg_GetReply(m.msg.get()), body, op);
  if (new_state != AckState::none) m.state = new_state;
  m.bus->count_ack(new_state);
}

MsgImpl* impl_of(const ReceivedMessage& m) noexcept { return m.impl_; }

std::string nak_body(std::optional<std::chrono::nanoseconds> delay) {
  if (!delay) return "-NAK";
  return fmt::format("-NAK {{\"delay\": {}}}", delay->count());
}

void send_nak(MsgImpl& m, std::string_view op, std::optional<std::chrono::nanoseconds> delay) {
  send_ack(m, op, nak_body(delay), AckState::naked);
}

}  // namespace detail

using detail::MsgImpl;

ReceivedMessage& ReceivedMessage::operator=(ReceivedMessage&& other) noexcept {
  if (this != &other) {
    if (impl_ != nullptr) impl_->release();
    impl_ = std::exchange(other.impl_, nullptr);
  }
  return *this;
}

ReceivedMessage::~ReceivedMessage() {
  if (impl_ != nullptr) impl_->release();
}

TraceContext ReceivedMessage::trace_context() const noexcept {
  if (auto c = TraceContext::from_traceparent(header_or_empty("traceparent"))) return *c;
  if (auto c = TraceContext::from_trace_id(header_or_empty("x-trace-id"))) return *c;
  return {};
}

std::string_view ReceivedMessage::subject() const noexcept {
  if (impl_ == nullptr) return {};
  const char* s = natsMsg_GetSubject(impl_->msg.get());
  return s == nullptr ? std::string_view{} : std::string_view(s);
}

std::string_view ReceivedMessage::reply() const noexcept {
  if (impl_ == nullptr) return {};
  const char* s = natsMsg_GetReply(impl_->msg.get());
  return s == nullptr ? std::string_view{} : std::string_view(s);
}

std::string_view ReceivedMessage::raw_payload() const noexcept {
  if (impl_ == nullptr) return {};
  const char* d = natsMsg_GetData(impl_->msg.get());
  const int n = natsMsg_GetDataLength(impl_->msg.get());
  return d == nullptr ? std::string_view{} : std::string_view(d, static_cast<std::size_t>(n));
}

std::string_view ReceivedMessage::payload() const {
  MsgImpl& m = detail::require(impl_, "payload");
  if (m.decode_state == 2) return m.decoded;
  if (m.decode_state == 1) return raw_payload();
  const std::string_view enc = content_encoding();
  if (enc.empty() || detail::iequals(enc, "identity")) {
    m.decode_state = 1;
    return raw_payload();
  }
  if (!detail::iequals(enc, "gzip")) {
    throw DecodeError(
        fmt::format("content-encoding {} is not supported (natbus decodes gzip); raw_payload() has the bytes", detail::quote(enc)),
        ErrorContext{.operation = "payload", .subject = std::string(subject())});
  }
  const std::size_t cap = m.bus != nullptr ? m.bus->max_decompressed_size() : detail::kDefaultMaxDecompressed;
  try {
    detail::gzip_decompress(raw_payload(), cap, m.decoded);
  } catch (const DecodeError& e) {
    throw DecodeError(e.message(), ErrorContext{.operation = "payload", .subject = std::string(subject())});
  }
  m.decode_state = 2;
  return m.decoded;
}

std::span<const std::byte> ReceivedMessage::data() const {
  const std::string_view p = payload();
  return std::as_bytes(std::span<const char>(p.data(), p.size()));
}

std::optional<std::string_view> ReceivedMessage::header(std::string_view name) const noexcept {
  if (impl_ == nullptr || name.empty()) return std::nullopt;
  if (const auto block = impl_->headers_in_place()) {
    // An exact match first (as cnats' lookup), else the first case-insensitive one.
    std::optional<std::string_view> exact;
    std::optional<std::string_view> loose;
    detail::for_each_header(*block, [&](std::string_view k, std::string_view v) {
      if (k == name) {
        exact = v;
        return false;
      }
      if (!loose && detail::iequals(k, name)) loose = v;
      return true;
    });
    return exact ? exact : loose;
  }
  natsMsg* msg = impl_->msg.get();
  const char* value = nullptr;
  char key[128];
  if (name.size() < sizeof key) {
    std::memcpy(key, name.data(), name.size());
    key[name.size()] = '\0';
    if (natsMsgHeader_Get(msg, key, &value) == NATS_OK && value != nullptr) return std::string_view(value);
  }
  // Names are case-insensitive for natbus (cnats' are not): scan the keys.
  const char** keys = nullptr;
  int count = 0;
  if (natsMsgHeader_Keys(msg, &keys, &count) != NATS_OK || keys == nullptr) return std::nullopt;
  std::optional<std::string_view> out;
  for (int i = 0; i < count && !out; ++i) {
    if (detail::iequals(keys[i], name) && natsMsgHeader_Get(msg, keys[i], &value) == NATS_OK && value != nullptr) {
      out = std::string_view(value);
    }
  }
  std::free(static_cast<void*>(keys));
  return out;
}

std::vector<std::string_view> ReceivedMessage::header_values(std::string_view name) const {
  std::vector<std::string_view> out;
  if (impl_ == nullptr) return out;
  if (const auto block = impl_->headers_in_place()) {
    detail::for_each_header(*block, [&](std::string_view k, std::string_view v) {
      if (detail::iequals(k, name)) out.push_back(v);
      return true;
    });
    return out;
  }
  natsMsg* msg = impl_->msg.get();
  const char** keys = nullptr;
  int count = 0;
  if (natsMsgHeader_Keys(msg, &keys, &count) != NATS_OK || keys == nullptr) return out;
  for (int i = 0; i < count; ++i) {
    if (!detail::iequals(keys[i], name)) continue;
    const char** values = nullptr;
    int n = 0;
    if (natsMsgHeader_Values(msg, keys[i], &values, &n) == NATS_OK && values != nullptr) {
      for (int k = 0; k < n; ++k) out.emplace_back(values[k]);
      std::free(static_cast<void*>(values));
    }
  }
  std::free(static_cast<void*>(keys));
  return out;
}

std::vector<std::pair<std::string_view, std::string_view>> ReceivedMessage::headers() const {
  std::vector<std::pair<std::string_view, std::string_view>> out;
  if (impl_ == nullptr) return out;
  if (const auto block = impl_->headers_in_place()) {
    detail::for_each_header(*block, [&](std::string_view k, std::string_view v) {
      out.emplace_back(k, v);
      return true;
    });
    return out;
  }
  natsMsg* msg = impl_->msg.get();
  const char** keys = nullptr;
  int count = 0;
  if (natsMsgHeader_Keys(msg, &keys, &count) != NATS_OK || keys == nullptr) return out;
  for (int i = 0; i < count; ++i) {
    const char** values = nullptr;
    int n = 0;
    if (natsMsgHeader_Values(msg, keys[i], &values, &n) == NATS_OK && values != nullptr) {
      for (int k = 0; k < n; ++k) out.emplace_back(keys[i], values[k]);
      std::free(static_cast<void*>(values));
    }
  }
  std::free(static_cast<void*>(keys));
  return out;
}

std::chrono::system_clock::time_point ReceivedMessage::received_at() const noexcept {
  return impl_ != nullptr ? impl_->received_at : std::chrono::system_clock::time_point{};
}

std::optional<MsgMetadata> ReceivedMessage::metadata() const {
  if (auto md = detail::parse_metadata(reply())) return md;
  // A stored message (get_message, get_last_message): its Nats-Stream / Nats-Sequence /
  // Nats-Time-Stamp headers, as a direct get answers.
  const auto stream = header("Nats-Stream");
  const auto seq = header("Nats-Sequence");
  if (!stream || !seq) return std::nullopt;
  MsgMetadata md;
  md.stream = std::string(*stream);
  const auto [p, ec] = std::from_chars(seq->data(), seq->data() + seq->size(), md.stream_sequence);
  if (ec != std::errc() || p != seq->data() + seq->size()) return std::nullopt;
  if (const auto ts = header("Nats-Time-Stamp")) {
    if (const auto t = detail::parse_rfc3339(*ts)) md.timestamp = *t;
  }
  return md;
}

std::optional<MsgMetadata> detail::parse_metadata(std::string_view r) {
  if (r.substr(0, 8) != "$JS.ACK.") return std::nullopt;
  std::string_view tokens[16];
  std::size_t n = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= r.size(); ++i) {
    if (i == r.size() || r[i] == '.') {
      if (n == 16) return std::nullopt;
      tokens[n++] = r.substr(start, i - start);
      start = i + 1;
    }
  }
  // v1: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
  // v2: $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>[.<token>]
  std::size_t base = 0;
  MsgMetadata md;
  if (n == 9) {
    base = 2;
  } else if (n >= 11) {
    if (tokens[2] != "_") md.domain = tokens[2];
    base = 4;
  } else {
    return std::nullopt;
  }
  auto num = [](std::string_view t, std::uint64_t& out) {
    auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), out);
    return ec == std::errc() && p == t.data() + t.size();
  };
  std::uint64_t ts = 0;
  md.stream = tokens[base];
  md.consumer = tokens[base + 1];
  if (!num(tokens[base + 2], md.num_delivered) || !num(tokens[base + 3], md.stream_sequence) ||
      !num(tokens[base + 4], md.consumer_sequence) || !num(tokens[base + 5], ts) || !num(tokens[base + 6], md.num_pending)) {
    return std::nullopt;
  }
  md.timestamp = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(static_cast<std::int64_t>(ts))));
  return md;
}

std::string_view ReceivedMessage::as_text() const {
  const std::string_view p = payload();
  if (!detail::valid_utf8(p)) {
    throw DecodeError(fmt::format("payload of {} bytes is not valid UTF-8 text (content-type {})", p.size(), detail::quote(content_type())),
                      ErrorContext{.operation = "as_text", .subject = std::string(subject())});
  }
  return p;
}

void ReceivedMessage::throw_decode_error(const char* what) const {
  throw DecodeError(fmt::format("JSON does not match the requested type: {}", what),
                    ErrorContext{.operation = "as_json", .subject = std::string(subject())});
}

detail::Sent ReceivedMessage::ack() {
  detail::send_ack(detail::require(impl_, "ack"), "ack", "+ACK", detail::AckState::acked);
  return {};
}

detail::Sent ReceivedMessage::nak() {
  detail::send_nak(detail::require(impl_, "nak"), "nak", std::nullopt);
  return {};
}

detail::Sent ReceivedMessage::nak(std::chrono::milliseconds delay) {
  if (delay.count() < 0) {
    throw InvalidArgument(fmt::format("delay must not be negative, got {} ms", delay.count()), ErrorContext{.operation = "nak"});
  }
  detail::send_nak(detail::require(impl_, "nak"), "nak", detail::saturating_ns(delay));
  return {};
}

detail::Sent ReceivedMessage::term() {
  detail::send_ack(detail::require(impl_, "term"), "term", "+TERM", detail::AckState::termed);
  return {};
}

detail::Sent ReceivedMessage::in_progress() {
  detail::send_ack(detail::require(impl_, "in_progress"), "in_progress", "+WPI", detail::AckState::none);
  return {};
}

bool ReceivedMessage::acknowledged() const noexcept { return impl_ != nullptr && impl_->state != detail::AckState::none; }

namespace {
/// Keeps the bus alive while ack_sync waits.
class TargetRef {
 public:
  explicit TargetRef(detail::AckTarget* t) noexcept : t_(t) { t_->ack_retain(); }
  TargetRef(TargetRef&& o) noexcept : t_(std::exchange(o.t_, nullptr)) {}
  TargetRef(const TargetRef&) = delete;
  TargetRef& operator=(const TargetRef&) = delete;
  TargetRef& operator=(TargetRef&&) = delete;
  ~TargetRef() {
    if (t_ != nullptr) t_->ack_release();
  }
  detail::AckTarget* operator->() const noexcept { return t_; }

 private:
  detail::AckTarget* t_;
};

Task<void> ack_sync_impl(TargetRef bus, std::string reply, std::string subject) {
  const auto wait = bus->ack_sync_timeout();
  auto [answer, status] = co_await detail::ReplyAwaiter(bus->ack_mux(), reply, "+ACK", detail::saturating_ns(wait));
  if (status == NATS_TIMEOUT) {
    throw TimeoutError(fmt::format("no ack confirmation within {} ms; the server may not have recorded the ack", wait.count()),
                       ErrorContext{.operation = "ack_sync", .subject = subject});
  }
  if (status == NATS_CONNECTION_DISCONNECTED) {
    throw ConnectionError("the connection was lost before the ack was confirmed; the message may be redelivered",
                          ErrorContext{.operation = "ack_sync", .subject = subject});
  }
  if (status != NATS_OK) {
    throw ClosedError("the connection closed before the ack was confirmed", ErrorContext{.operation = "ack_sync", .subject = subject});
  }
}
}  // namespace

Task<void> ReceivedMessage::ack_sync() {
  MsgImpl& m = detail::require(impl_, "ack_sync");
  detail::check_ackable(m, "ack_sync", false);
  m.state = detail::AckState::acked;
  m.bus->count_ack(detail::AckState::acked);
  return ack_sync_impl(TargetRef(m.bus), natsMsg_GetReply(m.msg.get()), std::string(subject()));
}

}  // namespace natbus
