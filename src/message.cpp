// BusMessage: building the Python library's header set.
#include <algorithm>

#include <fmt/format.h>

#include "gzip.hpp"
#include "natbus/error.hpp"
#include "natbus/message.hpp"
#include "util.hpp"
#include "validate.hpp"

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

std::optional<std::string_view> BusMessage::header(std::string_view name) const noexcept {
  for (const auto& [k, v] : headers_) {
    if (detail::iequals(k, name)) return std::string_view(v);
  }
  return std::nullopt;
}

BusMessage& BusMessage::set_header(std::string_view name, std::string_view value) {
  check_header("set_header", name, value);
  bool replaced = false;
  for (auto it = headers_.begin(); it != headers_.end();) {
    if (detail::iequals(it->first, name)) {
      if (!replaced) {
        it->first.assign(name);
        it->second.assign(value);
        replaced = true;
        ++it;
      } else {
        it = headers_.erase(it);
      }
    } else {
      ++it;
    }
  }
  if (!replaced) headers_.emplace_back(std::string(name), std::string(value));
  return *this;
}

BusMessage& BusMessage::add_header(std::string_view name, std::string_view value) {
  check_header("add_header", name, value);
  headers_.emplace_back(std::string(name), std::string(value));
  return *this;
}

std::size_t BusMessage::remove_header(std::string_view name) noexcept {
  return std::erase_if(headers_, [&](const auto& h) { return detail::iequals(h.first, name); });
}

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

  BusMessage m;
  m.subject_.assign(subject);
  if (o.compress) {
    m.payload_ = detail::gzip_compress(payload);
  } else {
    m.payload_.assign(payload);
  }
  // The Python library's header order: content-type, content-encoding, x-trace-id,
  // x-correlation-id, x-sender, x-sent-at, x-message-type, x-reply-on, x-final-to.
  m.headers_.reserve(8 + o.headers.size());
  m.headers_.emplace_back("content-type", std::string(o.content_type.empty() ? default_content_type : o.content_type));
  if (o.compress) m.headers_.emplace_back("content-encoding", "gzip");
  if (!o.trace_id.empty()) {
    m.headers_.emplace_back("x-trace-id", std::string(o.trace_id));
  } else if (o.ensure_trace) {
    m.headers_.emplace_back("x-trace-id", detail::uuid4());
  }
  m.headers_.emplace_back("x-correlation-id", o.correlation_id.empty() ? detail::uuid4() : std::string(o.correlation_id));
  if (!o.sender.empty()) m.headers_.emplace_back("x-sender", std::string(o.sender));
  m.headers_.emplace_back("x-sent-at", detail::iso8601_ms(std::chrono::system_clock::now()));
  if (!o.message_type.empty()) m.headers_.emplace_back("x-message-type", std::string(o.message_type));
  if (!o.reply_on.empty()) m.headers_.emplace_back("x-reply-on", std::string(o.reply_on));
  if (!o.final_to.empty()) m.headers_.emplace_back("x-final-to", std::string(o.final_to));
  if (!o.msg_id.empty()) m.headers_.emplace_back("Nats-Msg-Id", std::string(o.msg_id));
  // User headers override the defaults (the seed sends content-type: image/jpeg).
  for (const Header& h : o.headers) m.set_header(h.name, h.value);
  return m;
}

BusMessage BusMessage::from_json(std::string_view subject, const nlohmann::json& body, const MessageOptions& options) {
  std::string text;
  try {
    text = body.dump();
  } catch (const nlohmann::json::exception& e) {
    // nlohmann refuses strings that are not UTF-8 (type_error 316).
    throw InvalidArgument(fmt::format("body cannot be serialized as JSON: {}", e.what()),
                          ErrorContext{.operation = "from_json", .subject = std::string(subject)});
  }
  return make("from_json", subject, text, kJson, options);
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
