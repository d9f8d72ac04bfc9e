#include "natbus/error.hpp"

#include <string>

namespace natbus {

namespace {

class Category final : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "natbus"; }
  [[nodiscard]] std::string message(int code) const override {
    switch (static_cast<errc>(code)) {
      case errc::invalid_argument:
        return "invalid argument";
      case errc::config:
        return "invalid configuration";
      case errc::timeout:
        return "timed out";
      case errc::not_found:
        return "not found";
      case errc::auth:
        return "authentication failed";
      case errc::connection:
        return "connection failed";
      case errc::closed:
        return "closed";
      case errc::jetstream_not_enabled:
        return "JetStream not enabled";
      case errc::no_stream:
        return "no stream for subject";
      case errc::already_bound:
        return "consumer already bound";
      case errc::consumer_kind:
        return "wrong consumer kind";
      case errc::payload_too_large:
        return "payload too large";
      case errc::already_acknowledged:
        return "message already acknowledged";
      case errc::decode:
        return "decode error";
      case errc::jetstream:
        return "JetStream API error";
      case errc::nats:
        return "NATS error";
      case errc::protocol:
        return "protocol error";
      case errc::cancelled:
        return "cancelled";
      case errc::poison:
        return "poison message";
      case errc::no_responders:
        return "no responders";
      case errc::remote:
        return "remote handler failed";
      case errc::key_exists:
        return "key exists";
      case errc::wrong_last_revision:
        return "wrong last revision";
    }
    return "unknown natbus error";
  }
};

std::string build_what(const std::string& message, const ErrorContext& c) {
  std::string out = "natbus: ";
  if (!c.operation.empty()) {
    out += c.operation;
    out += ": ";
  }
  out += message;
  std::string ctx;
  auto add = [&ctx](const char* key, const std::string& v) {
    if (v.empty()) return;
    if (!ctx.empty()) ctx += ' ';
    ctx += key;
    ctx += '=';
    ctx += v;
  };
  add("subject", c.subject);
  add("stream", c.stream);
  add("durable", c.durable);
  if (!ctx.empty()) out += " (" + ctx + ")";
  if (!c.server_text.empty() && message.find(c.server_text) == std::string::npos) {
    out += " [server: " + c.server_text;
    if (c.js_code != 0) out += ", err_code " + std::to_string(c.js_code);
    out += "]";
  } else if (c.js_code != 0) {
    out += " [err_code " + std::to_string(c.js_code) + "]";
  }
  if (c.service_code != 0) out += " [service code " + std::to_string(c.service_code) + "]";
  return out;
}

}  // namespace

const std::error_category& natbus_category() noexcept {
  static const Category category;
  return category;
}

Error::Error(std::error_code code, std::string message, ErrorContext context)
    : std::system_error(code, message), message_(std::move(message)), context_(std::move(context)), what_(build_what(message_, context_)) {}

bool Error::retryable() const noexcept {
  if (code().category() != natbus_category()) return false;
  switch (static_cast<errc>(code().value())) {
    case errc::timeout:
    case errc::no_stream:
    case errc::already_bound:
      return true;
    case errc::jetstream:
      // 503 from the JetStream API: temporarily unavailable (leader election, catching up).
      return context_.api_code == 503;
    default:
      return false;
  }
}

}  // namespace natbus
