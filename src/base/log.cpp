#include "natbus/log.hpp"

#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>

#include <fmt/format.h>

#include "base/util.hpp"

namespace natbus {

namespace {

std::mutex g_sink_mu;  // guards g_sink; the only process-wide mutable state natbus has
LogSink g_sink;        // empty: default stderr sink
std::atomic<LogLevel> g_level{LogLevel::info};

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return true;
  }
  return false;
}

void append_value(std::string& out, std::string_view v) {
  if (!needs_quotes(v)) {
    out += v;
    return;
  }
  out += '"';
  for (char c : v) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\x{:02x}", static_cast<unsigned>(static_cast<unsigned char>(c)));
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

}  // namespace

std::string_view to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::debug:
      return "DEBUG";
    case LogLevel::info:
      return "INFO";
    case LogLevel::warn:
      return "WARN";
    case LogLevel::error:
      return "ERROR";
    case LogLevel::off:
      return "OFF";
  }
  return "?";
}

std::string format_log_line(const LogRecord& r) {
  std::string out = detail::format_time(r.time, detail::TimeText::log);
  out += ' ';
  out += to_string(r.level);
  out += ' ';
  out += r.event;
  for (const auto& f : r.fields) {
    out += ' ';
    out += f.key;
    out += '=';
    append_value(out, f.value);
  }
  return out;
}

void set_log_sink(LogSink sink) {
  std::lock_guard lock(g_sink_mu);
  g_sink = std::move(sink);
}

void set_log_level(LogLevel level) noexcept { g_level.store(level, std::memory_order_relaxed); }

LogLevel log_level() noexcept { return g_level.load(std::memory_order_relaxed); }

void log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  if (level < g_level.load(std::memory_order_relaxed) || level == LogLevel::off) return;
  const LogRecord record{level, event, std::span<const LogField>(fields.begin(), fields.size()), std::chrono::system_clock::now()};
  try {
    std::lock_guard lock(g_sink_mu);
    if (g_sink) {
      g_sink(record);
    } else {
      const std::string line = format_log_line(record) + "\n";
      std::fwrite(line.data(), 1, line.size(), stderr);
    }
  } catch (...) {
    // A logging failure must never take the caller down.
  }
}

}  // namespace natbus
