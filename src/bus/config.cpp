#include "natbus/config.hpp"

#include <unistd.h>

#include <cstdlib>
#include <ostream>

#include <fmt/format.h>

#include "base/validate.hpp"
#include "natbus/error.hpp"

namespace natbus {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

[[noreturn]] void config_error(std::string_view field, std::string message) {
  throw ConfigError(fmt::format("NatsConfig.{}: {}", field, message), ErrorContext{.operation = "config"});
}

// One server entry -> "scheme://[user@]host:port". `scheme_out` receives the scheme.
std::string normalize_server(std::string_view entry, std::string& scheme_out) {
  const std::string shown = redact_url(entry);
  std::string_view rest = entry;
  std::string scheme = "nats";
  if (const auto pos = rest.find("://"); pos != std::string_view::npos) {
    scheme.assign(rest.substr(0, pos));
    for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    rest.remove_prefix(pos + 3);
    if (scheme == "ws" || scheme == "wss") {
      config_error("server", fmt::format("{}: scheme \"{}\" is not supported: cnats (the NATS C client natbus uses) has no "
                                         "WebSocket transport; use nats:// or tls:// to the server's client port",
                                         detail::quote(shown), scheme));
    }
    if (scheme != "nats" && scheme != "tls") {
      // "user:password@host://..." puts credentials where the scheme goes: never show them.
      if (const auto at = scheme.rfind('@'); at != std::string::npos) scheme.replace(0, at, "***");
      config_error("server", fmt::format("{}: unknown scheme \"{}\" (use nats:// or tls://)", detail::quote(shown), scheme));
    }
  } else if (rest.find(':') != std::string_view::npos && rest.find('/') != std::string_view::npos) {
    config_error("server", fmt::format("{}: not a URL and not host:port", detail::quote(shown)));
  }
  // Strip a trailing '/' (as in "nats://host:4222/"); anything else after the authority is an error.
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos || rest.find('?') != std::string_view::npos) {
    config_error("server", fmt::format("{}: a server URL has no path or query", detail::quote(shown)));
  }
  std::string userinfo;
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    userinfo.assign(rest.substr(0, at));
    rest.remove_prefix(at + 1);
    if (userinfo.empty()) config_error("server", fmt::format("{}: empty user info before '@'", detail::quote(shown)));
  }
  std::string host;
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {  // [IPv6]:port
    const auto close = rest.find(']');
    if (close == std::string_view::npos) config_error("server", fmt::format("{}: unterminated IPv6 address", detail::quote(shown)));
    host.assign(rest.substr(0, close + 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') config_error("server", fmt::format("{}: expected ':' after the IPv6 address", detail::quote(shown)));
      port_text = rest.substr(1);
    }
  } else {
    const auto colon = rest.find(':');
    host.assign(rest.substr(0, colon));
    if (colon != std::string_view::npos) port_text = rest.substr(colon + 1);
    if (port_text.find(':') != std::string_view::npos) {
      config_error("server", fmt::format("{}: too many ':' (IPv6 addresses go in brackets)", detail::quote(shown)));
    }
  }
  if (host.empty()) config_error("server", fmt::format("{}: host is empty", detail::quote(shown)));
  for (char c : host) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) config_error("server", fmt::format("{}: host contains whitespace or non-ASCII", detail::quote(shown)));
  }
  long port = 4222;
  if (!port_text.empty() || (!rest.empty() && rest.back() == ':')) {
    if (port_text.empty() || port_text.size() > 5) {
      config_error("server", fmt::format("{}: port {} is not a number in 1..65535", detail::quote(shown), detail::quote(port_text)));
    }
    port = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9') {
        config_error("server", fmt::format("{}: port {} is not a number in 1..65535", detail::quote(shown), detail::quote(port_text)));
      }
      port = port * 10 + (c - '0');
    }
    if (port < 1 || port > 65535) {
      config_error("server", fmt::format("{}: port {} is out of range 1..65535", detail::quote(shown), port));
    }
  }
  scheme_out = scheme;
  return fmt::format("{}://{}{}{}:{}", scheme, userinfo, userinfo.empty() ? "" : "@", host, port);
}

template <class Rep, class Period>
void positive(std::string_view field, std::chrono::duration<Rep, Period> d) {
  if (d.count() <= 0)
    config_error(field, fmt::format("must be positive, got {} ms", std::chrono::duration_cast<std::chrono::milliseconds>(d).count()));
}

template <class Rep, class Period>
void non_negative(std::string_view field, std::chrono::duration<Rep, Period> d) {
  if (d.count() < 0)
    config_error(field, fmt::format("must not be negative, got {} ms", std::chrono::duration_cast<std::chrono::milliseconds>(d).count()));
}

void readable_file(std::string_view field, const std::string& path) {
  if (path.empty()) return;
  if (::access(path.c_str(), R_OK) != 0) config_error(field, fmt::format("file {} cannot be read", detail::quote(path)));
}

}  // namespace

std::vector<std::string> parse_server_list(std::string_view servers) {
  const std::string_view all = trim(servers);
  if (all.empty()) config_error("server", "empty server list (expected e.g. \"nats://127.0.0.1:4222\")");
  std::vector<std::string> out;
  std::string first_scheme;
  std::size_t start = 0;
  while (start <= all.size()) {
    const auto comma = all.find(',', start);
    const std::string_view entry = trim(all.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (entry.empty()) config_error("server", fmt::format("{}: empty entry in the comma-separated list", detail::quote(redact_url(all))));
    std::string scheme;
    out.push_back(normalize_server(entry, scheme));
    if (first_scheme.empty()) {
      first_scheme = scheme;
    } else if (scheme != first_scheme) {
      config_error("server", fmt::format("{}: mixed schemes \"{}\" and \"{}\" (all servers must use the same scheme)",
                                         detail::quote(redact_url(all)), first_scheme, scheme));
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string redact_url(std::string_view url) {
  std::string out;
  std::size_t start = 0;
  while (start <= url.size()) {
    auto comma = url.find(',', start);
    std::string_view entry = url.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    // Everything before the last '@' (after the scheme, when one comes before it) is user info.
    const auto at = entry.rfind('@');
    const auto scheme_end = entry.find("://");
    const std::size_t auth_start =
        (scheme_end != std::string_view::npos && at != std::string_view::npos && scheme_end < at) ? scheme_end + 3 : 0;
    if (at != std::string_view::npos) {
      out.append(entry.substr(0, auth_start));
      out += "***@";
      out.append(entry.substr(at + 1));
    } else {
      out.append(entry);
    }
    if (comma == std::string_view::npos) break;
    out += ',';
    start = comma + 1;
  }
  return out;
}

void validate(const NatsConfig& c) {
  const auto servers = parse_server_list(c.server);
  (void)servers;
  if (!c.password.empty() && c.username.empty()) config_error("password", "is set but username is empty");
  if (!c.token.empty() && !c.username.empty()) config_error("token", "cannot be combined with username/password");
  // cnats 3.4 writes the name into its CONNECT JSON without escaping: a quote or backslash
  // makes the server drop the connection ("Expected 'PONG'").
  for (const char ch : c.name) {
    if (ch == '"' || ch == '\\' || static_cast<unsigned char>(ch) < 0x20) {
      config_error("name", fmt::format("{}: quotes, backslashes and control characters are not allowed", detail::quote(c.name)));
    }
  }
  readable_file("credentials_file", c.credentials_file);
  readable_file("tls.ca_file", c.tls.ca_file);
  readable_file("tls.cert_file", c.tls.cert_file);
  readable_file("tls.key_file", c.tls.key_file);
  if (c.tls.cert_file.empty() != c.tls.key_file.empty()) config_error("tls", "cert_file and key_file go together");
  positive("reconnect_time_wait", c.reconnect_time_wait);
  if (c.reconnect_jitter.count() < -1 || c.reconnect_jitter > c.reconnect_time_wait) {
    config_error("reconnect_jitter", fmt::format("must be -1 (automatic) or between 0 and reconnect_time_wait ({} ms), got {} ms",
                                                 c.reconnect_time_wait.count(), c.reconnect_jitter.count()));
  }
  if (c.max_reconnect_attempts < -1)
    config_error("max_reconnect_attempts", fmt::format("must be -1 (forever) or >= 0, got {}", c.max_reconnect_attempts));
  if (c.stream_create || c.stream_update_subjects) {
    const char* why = c.stream_create ? "stream_create" : "stream_update_subjects";
    if (c.stream_name.empty()) config_error("stream_name", fmt::format("is required when {} is set", why));
    if (c.stream_subjects.empty()) config_error("stream_subjects", fmt::format("is required when {} is set", why));
  }
  if (!c.stream_name.empty()) {
    if (auto p = detail::name_problem(c.stream_name); !p.empty())
      config_error("stream_name", fmt::format("{}: {}", detail::quote(c.stream_name), p));
  }
  for (const auto& s : c.stream_subjects) {
    if (auto p = detail::subject_problem(s, true); !p.empty()) config_error("stream_subjects", fmt::format("{}: {}", detail::quote(s), p));
  }
  if (!c.queue_group.empty()) {
    if (auto p = detail::queue_problem(c.queue_group); !p.empty())
      config_error("queue_group", fmt::format("{}: {}", detail::quote(c.queue_group), p));
  }
  positive("ack_wait", c.ack_wait);
  if (c.max_ack_pending == 0 || c.max_ack_pending < -1)
    config_error("max_ack_pending", fmt::format("must be positive or -1 (unlimited), got {}", c.max_ack_pending));
  non_negative("dedupe_window", c.dedupe_window);
  if (auto p = detail::backoff_problem(c.retry_backoff, c.retry_backoff_steps); !p.empty()) config_error("retry_backoff", p);
  positive("js_api_timeout", c.js_api_timeout);
  positive("connect_timeout", c.connect_timeout);
  positive("ping_interval", c.ping_interval);
  if (c.max_pings_out < 1) config_error("max_pings_out", fmt::format("must be >= 1, got {}", c.max_pings_out));
  if (c.reconnect_buffer_size < 0)
    config_error("reconnect_buffer_size", fmt::format("must not be negative, got {}", c.reconnect_buffer_size));
  positive("publish_timeout", c.publish_timeout);
  if (c.max_pending_publishes < 1) config_error("max_pending_publishes", fmt::format("must be >= 1, got {}", c.max_pending_publishes));
  non_negative("drain_timeout", c.drain_timeout);
  non_negative("bind_timeout", c.bind_timeout);
  if (c.max_decompressed_size == 0) config_error("max_decompressed_size", "must be positive");
  if (auto p = detail::subject_problem(c.inbox_prefix, false); !p.empty())
    config_error("inbox_prefix", fmt::format("{}: {}", detail::quote(c.inbox_prefix), p));
  if (!c.js_domain.empty()) {
    if (auto p = detail::name_problem(c.js_domain); !p.empty())
      config_error("js_domain", fmt::format("{}: {}", detail::quote(c.js_domain), p));
  }
  if (!c.dead_letter_subject.empty()) {
    if (auto p = detail::subject_problem(c.dead_letter_subject, false); !p.empty()) {
      config_error("dead_letter_subject", fmt::format("{}: {}", detail::quote(c.dead_letter_subject), p));
    }
  }
  const auto& s = c.stream;
  if (s.replicas < 1 || s.replicas > 5) config_error("stream.replicas", fmt::format("must be 1..5, got {}", s.replicas));
  non_negative("stream.max_age", s.max_age);
  non_negative("stream.duplicate_window", s.duplicate_window);
  if (s.max_bytes == 0 || s.max_bytes < -1) config_error("stream.max_bytes", fmt::format("must be positive or -1, got {}", s.max_bytes));
  if (s.max_msgs == 0 || s.max_msgs < -1) config_error("stream.max_msgs", fmt::format("must be positive or -1, got {}", s.max_msgs));
  if (s.max_msgs_per_subject == 0 || s.max_msgs_per_subject < -1) {
    config_error("stream.max_msgs_per_subject", fmt::format("must be positive or -1, got {}", s.max_msgs_per_subject));
  }
  if (s.max_msg_size == 0 || s.max_msg_size < -1)
    config_error("stream.max_msg_size", fmt::format("must be positive or -1, got {}", s.max_msg_size));
}

NatsConfig NatsConfig::from_env(NatsConfig base, std::string_view prefix) {
  auto get = [&](std::string_view var, std::string& into) {
    const std::string key = std::string(prefix) + std::string(var);
    // Read once at start-up, before threads that could change the environment exist.
    if (const char* v = std::getenv(key.c_str()); v != nullptr && *v != '\0') into = v;  // NOLINT(concurrency-mt-unsafe)
  };
  get("SERVER", base.server);
  get("USERNAME", base.username);
  get("PASSWORD", base.password);
  get("TOKEN", base.token);
  get("CREDS", base.credentials_file);
  get("NAME", base.name);
  get("STREAM_NAME", base.stream_name);
  get("QUEUE_GROUP", base.queue_group);
  return base;
}

std::string_view to_string(DeliverPolicy p) noexcept {
  switch (p) {
    case DeliverPolicy::all:
      return "all";
    case DeliverPolicy::last:
      return "last";
    case DeliverPolicy::new_:
      return "new";
    case DeliverPolicy::by_start_sequence:
      return "by_start_sequence";
    case DeliverPolicy::by_start_time:
      return "by_start_time";
    case DeliverPolicy::last_per_subject:
      return "last_per_subject";
  }
  return "?";
}

std::string_view to_string(StorageType s) noexcept { return s == StorageType::file ? "file" : "memory"; }

std::string to_string(const NatsConfig& c) {
  auto secret = [](const std::string& v) { return v.empty() ? std::string("\"\"") : std::string("***"); };
  std::string subjects;
  for (const auto& s : c.stream_subjects) {
    if (!subjects.empty()) subjects += ',';
    subjects += s;
  }
  return fmt::format(
      "NatsConfig{{server={}, username={}, password={}, token={}, credentials_file={}, name={}, "
      "reconnect_time_wait={}ms, max_reconnect_attempts={}, stream_create={}, stream_name={}, stream_subjects=[{}], "
      "stream_update_subjects={}, queue_group={}, bind={}, manual_ack={}, deliver_policy={}, ack_wait={}ms, "
      "max_ack_pending={}, dedupe_window={}ms, js_api_timeout={}ms, tls={}}}",
      redact_url(c.server), c.username, secret(c.password), secret(c.token), c.credentials_file, c.name, c.reconnect_time_wait.count(),
      c.max_reconnect_attempts, c.stream_create, c.stream_name, subjects, c.stream_update_subjects, c.queue_group, c.bind, c.manual_ack,
      to_string(c.deliver_policy), c.ack_wait.count(), c.max_ack_pending, c.dedupe_window.count(), c.js_api_timeout.count(),
      (c.tls.ca_file.empty() && c.tls.cert_file.empty() && !c.tls.skip_verify) ? "default" : "custom");
}

std::ostream& operator<<(std::ostream& os, const NatsConfig& c) { return os << to_string(c); }

}  // namespace natbus
