// natbus logging: structured events (a name plus key=value fields), as the Python library
// logs them (`js_consumer_created`, `sub_handler_error`, ...), to a sink you can replace.
//
//   natbus::set_log_level(natbus::LogLevel::debug);
//   natbus::set_log_sink([](const natbus::LogRecord& r) { my_logger(natbus::format_log_line(r)); });
//
// The default sink writes one line per event to stderr:
//   2026-11-26T18:21:33.123Z INFO js_stream_ready stream=TEST_STREAM msgs=3 bytes=301
// natbus never logs passwords, tokens or credentials.
#pragma once

#include <chrono>
#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

namespace natbus {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

/// One key=value pair of a log event.
struct LogField {
  std::string_view key{};  ///< field name
  std::string value{};     ///< field value
};

/// One log event, valid only during the sink call.
struct LogRecord {
  LogLevel level = LogLevel::info;               ///< severity
  std::string_view event{};                      ///< what happened, a stable snake_case name
  std::span<const LogField> fields{};            ///< key/value details
  std::chrono::system_clock::time_point time{};  ///< when
};

using LogSink = std::function<void(const LogRecord&)>;

/// Replaces the sink (thread-safe). An empty function restores the default stderr sink.
/// The sink may be called from natbus' loop thread and, rarely, from cnats' threads; it must
/// not throw (exceptions are swallowed).
void set_log_sink(LogSink sink);
/// Events below this level are dropped before formatting (default: info).
void set_log_level(LogLevel level) noexcept;
[[nodiscard]] LogLevel log_level() noexcept;

/// "2026-11-26T18:21:33.123Z INFO event k=v k2=\"v with spaces\""
[[nodiscard]] std::string format_log_line(const LogRecord& record);
[[nodiscard]] std::string_view to_string(LogLevel level) noexcept;

/// Emits an event through the current sink (used by natbus; available to applications).
void log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});

}  // namespace natbus
