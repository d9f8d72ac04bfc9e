// Small helpers: ids, timestamps, UTF-8, case-insensitive comparison.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

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
inline constexpr std::size_t kIsoLen = 29;
/// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
[[nodiscard]] bool valid_utf8(std::string_view s) noexcept;
/// A view of `s` that stays valid for the life of the process (a global table of names,
/// for stream and domain names). Thread-safe; the common repeat of the last name takes no lock.
[[nodiscard]] std::string_view intern(std::string_view s);
/// ASCII case-insensitive equality.
[[nodiscard]] bool iequals(std::string_view a, std::string_view b) noexcept;

/// steady_clock::now() + d, saturated at time_point::max() instead of overflowing (a timeout of
/// milliseconds::max() means "no deadline").
template <class Rep, class Period>
[[nodiscard]] std::chrono::steady_clock::time_point saturating_deadline(std::chrono::duration<Rep, Period> d) noexcept {
  using std::chrono::steady_clock;
  const auto now = steady_clock::now();
  const auto room = std::chrono::duration_cast<std::chrono::duration<double>>(steady_clock::time_point::max() - now);
  if (std::chrono::duration_cast<std::chrono::duration<double>>(d) >= room) return steady_clock::time_point::max();
  return now + std::chrono::duration_cast<steady_clock::duration>(d);
}

}  // namespace natbus::detail
