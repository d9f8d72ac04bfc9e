// The PubAck fast path: most JetStream acks are {"stream":"S","seq":N} (optionally with
// "duplicate" and "domain"); parsing those by hand avoids a JSON DOM per publish.
#include "jetstream/puback.hpp"

#include <charconv>

#include "base/util.hpp"

namespace natbus::detail {

bool parse_puback_fast(std::string_view s, PubAck& out) {
  if (s.size() < 2 || s.front() != '{' || s.back() != '}' || s.find("\"error\"") != std::string_view::npos) return false;
  bool have_stream = false;
  bool have_seq = false;
  std::size_t i = 1;
  auto skip_ws = [&] {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) ++i;
  };
  auto read_string = [&](std::string_view& v) -> bool {
    if (i >= s.size() || s[i] != '"') return false;
    const std::size_t start = ++i;
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\') return false;  // escapes: leave it to the full parser
      ++i;
    }
    if (i >= s.size()) return false;
    v = s.substr(start, i - start);
    ++i;
    return true;
  };
  for (;;) {
    skip_ws();
    std::string_view key;
    if (!read_string(key)) return false;
    skip_ws();
    if (i >= s.size() || s[i] != ':') return false;
    ++i;
    skip_ws();
    if (key == "stream" || key == "domain") {
      std::string_view v;
      if (!read_string(v)) return false;
      if (key == "stream") {
        out.stream = intern(v);
        have_stream = true;
      } else {
        out.domain = intern(v);
      }
    } else if (key == "seq") {
      auto [p, ec] = std::from_chars(s.data() + i, s.data() + s.size(), out.sequence);
      if (ec != std::errc()) return false;
      i = static_cast<std::size_t>(p - s.data());
      have_seq = true;
    } else if (key == "duplicate") {
      if (s.substr(i, 4) == "true") {
        out.duplicate = true;
        i += 4;
      } else if (s.substr(i, 5) == "false") {
        i += 5;
      } else {
        return false;
      }
    } else {
      return false;
    }
    skip_ws();
    if (i < s.size() && s[i] == ',') {
      ++i;
      continue;
    }
    return i + 1 == s.size() && s[i] == '}' && have_stream && have_seq;
  }
}

}  // namespace natbus::detail
