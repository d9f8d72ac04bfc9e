// Validation of names, subjects and headers shared by every entry point.
#pragma once

#include <chrono>
#include <span>
#include <string>
#include <string_view>

#include "natbus/config.hpp"

namespace natbus::detail {

/// Subject usable for publishing: non-empty, tokens separated by '.', no empty token, no
/// whitespace or control characters, no '*' or '>' token. Returns an empty string when valid,
/// otherwise the reason.
[[nodiscard]] std::string subject_problem(std::string_view subject, bool allow_wildcards);
/// Stream, durable or consumer name: no '.', '*', '>', '/', '\\', whitespace or control chars.
[[nodiscard]] std::string name_problem(std::string_view name);
/// Queue group: no whitespace or control characters.
[[nodiscard]] std::string queue_problem(std::string_view queue);
/// Header name: printable ASCII without ':'; value: ASCII without CR/LF/other control chars
/// (tab allowed).
[[nodiscard]] std::string header_name_problem(std::string_view name);
[[nodiscard]] std::string header_value_problem(std::string_view value);

/// A redelivery backoff: initial and max not negative, max >= initial, multiplier >= 1 (and
/// finite), steps positive and at most 1000. Returns the reason, empty when valid.
[[nodiscard]] std::string backoff_problem(const RetryBackoff& b, std::span<const std::chrono::milliseconds> steps);
/// The delay for the `delivery`-th delivery (1-based) that failed; 0: a plain nak.
[[nodiscard]] std::chrono::milliseconds backoff_delay(const RetryBackoff& b, std::span<const std::chrono::milliseconds> steps,
                                                      std::uint64_t delivery) noexcept;

/// `value` quoted and shortened for an error message, non-printable bytes escaped.
[[nodiscard]] std::string quote(std::string_view value, std::size_t max = 80);

/// Throws InvalidArgument "<op>: <what> <quoted value>: <reason>" when the reason is non-empty.
void check(std::string_view op, std::string_view what, std::string_view value, const std::string& problem);

}  // namespace natbus::detail
