// Folder base/: what every layer may use and that uses nothing of natbus' own: errors and their
// messages (error.cpp), the log sink (log.cpp), ids, clocks and time formats (util.*), name and
// subject validation (validate.*), intrusive reference counting (ref.hpp). It calls no other
// folder.
//
// Small helpers: ids, timestamps, UTF-8, case-insensitive comparison.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "natbus/task.hpp"  // saturating_deadline

namespace natbus::detail {

/// Transparent hash: look std::string keys up by string_view without a copy.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

/// A random UUIDv4, "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx" (lowercase), as Python's uuid4().
[[nodiscard]] std::string uuid4();
/// Writes a UUIDv4 into out[0..36) (no terminator).
void uuid4_into(char* out) noexcept;
/// 64 random bits from this thread's generator.
[[nodiscard]] std::uint64_t random_u64() noexcept;
inline constexpr std::size_t kUuidLen = 36;
/// `n` random characters from [0-9A-Za-z].
[[nodiscard]] std::string random_token(std::size_t n);
/// ISO-8601 UTC with milliseconds, "+00:00" suffix: Python's
/// datetime.now(timezone.utc).isoformat(timespec="milliseconds").
[[nodiscard]] std::string iso8601_ms(std::chrono::system_clock::time_point t);
/// Writes iso8601_ms(t) into out[0..29) (no terminator). The date part is cached per second.
void iso8601_ms_into(char* out, std::chrono::system_clock::time_point t) noexcept;
/// The forms of UTC time text natbus writes (one formatter behind all of them):
enum class TimeText {
  sent_at,       ///< 2026-11-26T18:21:33.123+00:00 (x-sent-at: Python's isoformat, milliseconds)
  log,           ///< 2026-11-26T18:21:33.123Z (log lines)
  rfc3339_nanos  ///< 2026-11-26T18:21:33.123456789Z (the JetStream API's times)
};
[[nodiscard]] std::string format_time(std::chrono::system_clock::time_point t, TimeText form);
/// Parses "2026-11-26T18:21:33[.fraction](Z|+hh:mm|-hh:mm)" (what the server and natbus write);
/// nullopt when `s` is not of that form.
[[nodiscard]] std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view s) noexcept;
/// Standard base64 (with or without padding) decoded; nullopt when `s` is not base64.
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view s);
/// URL-safe base64 ('-' and '_'), padded with '=' (Go's base64.URLEncoding).
[[nodiscard]] std::string base64url_encode(std::string_view s);
inline constexpr std::size_t kIsoLen = 29;
/// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
[[nodiscard]] bool valid_utf8(std::string_view s) noexcept;
/// A view of `s` that stays valid for the life of the process (a global table of names,
/// for stream and domain names). Thread-safe; the common repeat of the last name takes no lock.
[[nodiscard]] std::string_view intern(std::string_view s);
/// ASCII case-insensitive equality.
[[nodiscard]] bool iequals(std::string_view a, std::string_view b) noexcept;

/// A timeout for cnats, in milliseconds: cnats adds it to the time since the epoch, so it is
/// capped at ten years (no overflow for milliseconds::max()).
template <class Rep, class Period>
[[nodiscard]] constexpr std::int64_t cnats_ms(std::chrono::duration<Rep, Period> d) noexcept {
  constexpr double cap = 10.0 * 365 * 24 * 3600 * 1000;
  const double ms = std::chrono::duration_cast<std::chrono::duration<double, std::milli>>(d).count();
  return ms >= cap ? static_cast<std::int64_t>(cap) : ms <= 0 ? 0 : static_cast<std::int64_t>(ms);
}

/// `d` in nanoseconds, saturated at nanoseconds::max() instead of overflowing.
template <class Rep, class Period>
[[nodiscard]] constexpr std::chrono::nanoseconds saturating_ns(std::chrono::duration<Rep, Period> d) noexcept {
  using std::chrono::duration;
  using std::chrono::nanoseconds;
  const auto as_double = std::chrono::duration_cast<duration<double, std::nano>>(d).count();
  if (as_double >= static_cast<double>(nanoseconds::max().count())) return nanoseconds::max();
  if (as_double <= static_cast<double>(nanoseconds::min().count())) return nanoseconds::min();
  return std::chrono::duration_cast<nanoseconds>(d);
}

}  // namespace natbus::detail
