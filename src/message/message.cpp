// BusMessage: building the Python library's header set.
#include <algorithm>
#include <array>
#include <cstring>

#include <fmt/format.h>

#include "base/util.hpp"
#include "base/validate.hpp"
#include "message/gzip.hpp"
#include "message/header_block.hpp"
#include "message/trace.hpp"
#include "natbus/error.hpp"
#include "natbus/message.hpp"

namespace natbus {

namespace {

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kText = "text/plain; charset=utf-8";
constexpr std::string_view kBytes = "application/octet-stream";

void check_header(std::string_view op, std::string_view name, std::string_view value) {
  detail::check(op, "header name", name, detail::header_name_problem(name));
  if (auto p = detail::header_value_problem(value); !p.empty()) {
    throw InvalidArgument(fmt::format("header {}: value {}: {}", detail::quote(name), detail::quote(value), p),
                          ErrorContext{.operation = std::string(op)});
  }
}

}  // namespace

namespace {

/// The buffer of a message: pooled like coroutine frames (a publish allocates nothing once warm).
char* buffer_alloc(std::size_t n) { return n == 0 ? nullptr : static_cast<char*>(detail::frame_alloc(n)); }
void buffer_free(char* p, std::size_t n) noexcept {
  if (p != nullptr) detail::frame_free(p, n);
}

class Writer {
 public:
  explicit Writer(char* p) noexcept : p_(p) {}
  void put(std::string_view s) noexcept {
    if (!s.empty()) std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  void header(std::string_view name, std::string_view value) noexcept {
    put(name);
    put(": ");
    put(value);
    put("\r\n");
  }

 private:
  char* p_;
};

std::size_t encoded_size(std::span<const Header> headers) noexcept {
  if (headers.empty()) return 0;
  std::size_t n = detail::kHeaderStatusLine.size() + 2;
  for (const Header& h : headers) n += h.name.size() + h.value.size() + 4;
  return n;
}

}  // namespace

BusMessage::BusMessage(const BusMessage& other)
    : buf_(buffer_alloc(other.size_)), size_(other.size_), subject_len_(other.subject_len_), header_len_(other.header_len_) {
  if (size_ > 0) std::memcpy(buf_, other.buf_, size_);
}

BusMessage& BusMessage::operator=(const BusMessage& other) {
  if (this != &other) *this = BusMessage(other);
  return *this;
}

BusMessage& BusMessage::operator=(BusMessage&& other) noexcept {
  if (this != &other) {
    buffer_free(buf_, size_);
    buf_ = std::exchange(other.buf_, nullptr);
    size_ = std::exchange(other.size_, 0);
    subject_len_ = std::exchange(other.subject_len_, 0);
    header_len_ = std::exchange(other.header_len_, 0);
  }
  return *this;
}

BusMessage::~BusMessage() { buffer_free(buf_, size_); }

std::optional<std::string_view> BusMessage::header(std::string_view name) const noexcept {
  std::optional<std::string_view> out;
  detail::for_each_header(wire_headers(), [&](std::string_view k, std::string_view v) {
    if (!detail::iequals(k, name)) return true;
    out = v;
    return false;
  });
  return out;
}

std::vector<std::string_view> BusMessage::header_values(std::string_view name) const {
  std::vector<std::string_view> out;
  detail::for_each_header(wire_headers(), [&](std::string_view k, std::string_view v) {
    if (detail::iequals(k, name)) out.push_back(v);
    return true;
  });
  return out;
}

std::vector<std::pair<std::string_view, std::string_view>> BusMessage::headers() const {
  std::vector<std::pair<std::string_view, std::string_view>> out;
  detail::for_each_header(wire_headers(), [&](std::string_view k, std::string_view v) {
    out.emplace_back(k, v);
    return true;
  });
  return out;
}

void BusMessage::rebuild(const std::vector<std::pair<std::string, std::string>>& headers) {
  std::vector<Header> hs;
  hs.reserve(headers.size());
  for (const auto& [k, v] : headers) hs.push_back(Header{k, v});
  const std::size_t hlen = encoded_size(hs);
  const std::string_view subj = subject();
  const std::string_view body = payload();
  const std::size_t size = subj.size() + hlen + body.size();
  char* buf = buffer_alloc(size);
  Writer w(buf);
  w.put(subj);
  if (hlen > 0) {
    w.put(detail::kHeaderStatusLine);
    for (const Header& h : hs) w.header(h.name, h.value);
    w.put("\r\n");
  }
  w.put(body);
  buffer_free(buf_, size_);
  buf_ = buf;
  size_ = size;
  header_len_ = hlen;
}

namespace {

std::vector<std::pair<std::string, std::string>> owned_headers(const BusMessage& m) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [k, v] : m.headers()) out.emplace_back(std::string(k), std::string(v));
  return out;
}

}  // namespace

BusMessage& BusMessage::set_header(std::string_view name, std::string_view value) {
  check_header("set_header", name, value);
  auto hs = owned_headers(*this);
  bool replaced = false;
  for (auto it = hs.begin(); it != hs.end();) {
    if (detail::iequals(it->first, name)) {
      if (!replaced) {
        it->first.assign(name);
        it->second.assign(value);
        replaced = true;
        ++it;
      } else {
        it = hs.erase(it);
      }
    } else {
      ++it;
    }
  }
  if (!replaced) hs.emplace_back(std::string(name), std::string(value));
  rebuild(hs);
  return *this;
}

BusMessage& BusMessage::add_header(std::string_view name, std::string_view value) {
  check_header("add_header", name, value);
  auto hs = owned_headers(*this);
  hs.emplace_back(std::string(name), std::string(value));
  rebuild(hs);
  return *this;
}

std::size_t BusMessage::remove_header(std::string_view name) {
  auto hs = owned_headers(*this);
  const std::size_t n = std::erase_if(hs, [&](const auto& h) { return detail::iequals(h.first, name); });
  if (n > 0) rebuild(hs);
  return n;
}

namespace {

/// A few headers without heap allocation in the common case.
class HeaderList {
 public:
  explicit HeaderList(std::size_t capacity) {
    if (capacity > inline_.size()) {
      heap_.resize(capacity);
      data_ = heap_.data();
    } else {
      data_ = inline_.data();
    }
  }
  void push(std::string_view name, std::string_view value) noexcept { data_[n_++] = Header{name, value}; }
  /// set_header semantics: the first header of that name (any case) takes the new name and
  /// value, later ones are dropped; a new name goes at the end.
  void set(std::string_view name, std::string_view value) noexcept {
    bool replaced = false;
    std::size_t out = 0;
    for (std::size_t i = 0; i < n_; ++i) {
      if (detail::iequals(data_[i].name, name)) {
        if (replaced) continue;
        data_[i] = Header{name, value};
        replaced = true;
      }
      data_[out++] = data_[i];
    }
    n_ = out;
    if (!replaced) push(name, value);
  }
  [[nodiscard]] std::span<const Header> view() const noexcept { return {data_, n_}; }

 private:
  std::array<Header, 16> inline_{};
  std::vector<Header> heap_;
  Header* data_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace

BusMessage BusMessage::make(std::string_view op, std::string_view subject, std::string_view payload, std::string_view default_content_type,
                            const MessageOptions& o) {
  detail::check(op, "subject", subject, detail::subject_problem(subject, false));
  auto opt = [&](std::string_view field, std::string_view v) {
    if (auto p = detail::header_value_problem(v); !p.empty()) {
      throw InvalidArgument(fmt::format("{} {}: {}", field, detail::quote(v), p), ErrorContext{.operation = std::string(op)});
    }
  };
  opt("sender", o.sender);
  opt("correlation_id", o.correlation_id);
  opt("content_type", o.content_type);
  opt("reply_on", o.reply_on);
  opt("final_to", o.final_to);
  opt("message_type", o.message_type);
  opt("trace_id", o.trace_id);
  opt("msg_id", o.msg_id);
  if (!o.reply_on.empty()) detail::check(op, "reply_on", o.reply_on, detail::subject_problem(o.reply_on, false));
  if (!o.final_to.empty()) detail::check(op, "final_to", o.final_to, detail::subject_problem(o.final_to, false));
  for (const Header& h : o.headers) check_header(op, h.name, h.value);

  std::string compressed;
  std::string_view body = payload;
  if (o.compress) {
    compressed = detail::gzip_compress(payload);
    body = compressed;
  }
  std::array<char, detail::kUuidLen> trace{};
  std::array<char, detail::kTraceparentLen> traceparent{};
  std::array<char, detail::kUuidLen> correlation{};
  std::array<char, detail::kIsoLen> sent_at{};

  // The Python library's header order: content-type, content-encoding, x-trace-id,
  // x-correlation-id, x-sender, x-sent-at, x-message-type, x-reply-on, x-final-to.
  HeaderList hs(10 + o.headers.size());
  if (o.natbus_headers) {
    hs.push("content-type", o.content_type.empty() ? default_content_type : o.content_type);
    if (o.compress) hs.push("content-encoding", "gzip");
    std::string_view trace_id = o.trace_id;
    if (trace_id.empty() && o.parent.valid()) {
      detail::trace_uuid_into(trace.data(), o.parent);
      trace_id = std::string_view(trace.data(), trace.size());
    } else if (trace_id.empty() && o.ensure_trace) {
      detail::uuid4_into(trace.data());
      trace_id = std::string_view(trace.data(), trace.size());
    }
    if (!trace_id.empty()) {
      hs.push("x-trace-id", trace_id);
      // traceparent: the same trace id, a new span for this message (W3C form exists only for
      // a UUID-shaped or 32-hex trace id), the parent's flags when it continues a trace.
      const bool want = o.traceparent == TraceParent::always ||
                        (o.traceparent == TraceParent::automatic && (o.parent.has_span() || detail::tracing_in_use()));
      if (auto out = want ? TraceContext::from_trace_id(trace_id) : std::nullopt) {
        detail::span_id_into(out->span_id.data());
        const bool same_trace = o.parent.valid() && o.parent.trace_id == out->trace_id;
        if (same_trace) out->flags = o.parent.flags;
        const TraceHooks& hooks = detail::trace_hooks();
        if (hooks.on_inject != nullptr) hooks.on_inject(*out, same_trace ? o.parent : TraceContext{}, subject, hooks.user);
        detail::traceparent_into(traceparent.data(), *out);
        hs.push("traceparent", std::string_view(traceparent.data(), traceparent.size()));
      }
    }
    if (o.correlation_id.empty()) {
      detail::uuid4_into(correlation.data());
      hs.push("x-correlation-id", std::string_view(correlation.data(), correlation.size()));
    } else {
      hs.push("x-correlation-id", o.correlation_id);
    }
    if (!o.sender.empty()) hs.push("x-sender", o.sender);
    detail::iso8601_ms_into(sent_at.data(), std::chrono::system_clock::now());
    hs.push("x-sent-at", std::string_view(sent_at.data(), sent_at.size()));
    if (!o.message_type.empty()) hs.push("x-message-type", o.message_type);
    if (!o.reply_on.empty()) hs.push("x-reply-on", o.reply_on);
    if (!o.final_to.empty()) hs.push("x-final-to", o.final_to);
  } else if (o.compress) {
    hs.push("content-encoding", "gzip");  // receivers must still know to decompress
  }
  if (!o.msg_id.empty()) hs.push("Nats-Msg-Id", o.msg_id);
  // User headers override the defaults (the seed sends content-type: image/jpeg).
  for (const Header& h : o.headers) hs.set(h.name, h.value);

  const std::size_t hlen = encoded_size(hs.view());
  BusMessage m;
  m.size_ = subject.size() + hlen + body.size();
  m.buf_ = buffer_alloc(m.size_);
  m.subject_len_ = subject.size();
  m.header_len_ = hlen;
  Writer w(m.buf_);
  w.put(subject);
  if (hlen > 0) {
    w.put(detail::kHeaderStatusLine);
    for (const Header& h : hs.view()) w.header(h.name, h.value);
    w.put("\r\n");
  }
  w.put(body);
  return m;
}

BusMessage detail::json_text_message(std::string_view op, std::string_view subject, std::string_view json_text,
                                     const MessageOptions& options) {
  return BusMessage::make(op, subject, json_text, kJson, options);
}

BusMessage BusMessage::from_text(std::string_view subject, std::string_view text, const MessageOptions& options) {
  if (!detail::valid_utf8(text)) {
    throw InvalidArgument("text is not valid UTF-8", ErrorContext{.operation = "from_text", .subject = std::string(subject)});
  }
  return make("from_text", subject, text, kText, options);
}

BusMessage BusMessage::from_bytes(std::string_view subject, std::span<const std::byte> data, const MessageOptions& options) {
  const std::string_view view(reinterpret_cast<const char*>(data.data()), data.size());
  return make("from_bytes", subject, view, kBytes, options);
}

}  // namespace natbus
