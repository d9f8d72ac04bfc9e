#include "base/validate.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "natbus/error.hpp"

namespace natbus::detail {

std::string subject_problem(std::string_view s, bool allow_wildcards) {
  if (s.empty()) return "subject is empty";
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i < s.size()) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c <= 0x20 || c == 0x7f) return "subject contains whitespace or a control character";
      if (c != '.') continue;
    }
    const std::string_view token = s.substr(start, i - start);
    if (token.empty()) return "subject has an empty token (leading, trailing or double '.')";
    if (token == "*" || token == ">") {
      if (!allow_wildcards) return "subject contains a wildcard ('*' or '>'), which cannot be published to";
      if (token == ">" && i != s.size()) return "'>' must be the last token";
    }
    start = i + 1;
  }
  return {};
}

std::string name_problem(std::string_view n) {
  if (n.empty()) return "name is empty";
  for (char ch : n) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f) return "name contains whitespace or a control character";
    if (c == '.' || c == '*' || c == '>' || c == '/' || c == '\\') {
      return fmt::format("name contains '{}' (not allowed in stream/consumer names)", ch);
    }
  }
  return {};
}

std::string queue_problem(std::string_view q) {
  if (q.empty()) return "queue group is empty";
  for (char ch : q) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f) return "queue group contains whitespace or a control character";
  }
  return {};
}

std::string header_name_problem(std::string_view n) {
  if (n.empty()) return "header name is empty";
  for (char ch : n) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\r' || c == '\n') return "header name contains CR or LF";
    if (c <= 0x20 || c >= 0x7f) return "header name must be printable ASCII without spaces";
    if (c == ':') return "header name contains ':'";
  }
  return {};
}

std::string header_value_problem(std::string_view v) {
  for (char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\r' || c == '\n') return "header value contains CR or LF";
    if ((c < 0x20 && c != '\t') || c == 0x7f) return "header value contains a control character";
    if (c >= 0x80) return "header value contains non-ASCII bytes";
  }
  return {};
}

std::string quote(std::string_view v, std::size_t max) {
  std::string out = "\"";
  std::size_t n = 0;
  for (char ch : v) {
    if (n++ == max) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c >= 0x7f) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned>(c));
    } else {
      out += ch;
    }
  }
  out += '"';
  return out;
}

void check(std::string_view op, std::string_view what, std::string_view value, const std::string& problem) {
  if (problem.empty()) return;
  throw InvalidArgument(fmt::format("{} {}: {}", what, quote(value), problem), ErrorContext{.operation = std::string(op)});
}

std::string backoff_problem(const RetryBackoff& b, std::span<const std::chrono::milliseconds> steps) {
  if (b.initial.count() < 0) return fmt::format("initial must not be negative, got {} ms", b.initial.count());
  if (b.max < b.initial) return fmt::format("max ({} ms) must not be below initial ({} ms)", b.max.count(), b.initial.count());
  if (!(b.multiplier >= 1.0) || !std::isfinite(b.multiplier)) return fmt::format("multiplier must be 1 or more, got {}", b.multiplier);
  if (steps.size() > 1000) return fmt::format("at most 1000 steps, got {}", steps.size());
  for (std::size_t i = 0; i < steps.size(); ++i) {
    if (steps[i].count() <= 0) return fmt::format("step {} must be positive, got {} ms", i, steps[i].count());
  }
  return {};
}

std::chrono::milliseconds backoff_delay(const RetryBackoff& b, std::span<const std::chrono::milliseconds> steps,
                                        std::uint64_t delivery) noexcept {
  const std::uint64_t n = delivery == 0 ? 1 : delivery;
  if (!steps.empty()) return steps[static_cast<std::size_t>(std::min<std::uint64_t>(n, steps.size()) - 1)];
  if (b.initial.count() <= 0) return std::chrono::milliseconds(0);
  double d = static_cast<double>(b.initial.count());
  for (std::uint64_t i = 1; i < n && d < static_cast<double>(b.max.count()); ++i) d *= b.multiplier;
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::min(d, static_cast<double>(b.max.count()))));
}

}  // namespace natbus::detail
