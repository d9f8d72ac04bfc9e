// Internal helpers of the W3C trace context (src/trace.cpp).
#pragma once

#include <cstddef>

#include "base/util.hpp"
#include "natbus/message.hpp"

namespace natbus::detail {

inline constexpr std::size_t kTraceparentLen = 55;  // "00-" 32 "-" 16 "-" 2

/// The process-wide tracing hooks (set_trace_hooks).
const TraceHooks& trace_hooks() noexcept;
/// True when any hook is installed: a tracing system is connected.
bool tracing_in_use() noexcept;
/// Writes the trace id of `c` (valid) UUID-shaped, kUuidLen characters (what x-trace-id carries).
void trace_uuid_into(char* out, const TraceContext& c) noexcept;
/// 16 random lowercase hex digits, never all zero.
void span_id_into(char* out) noexcept;
/// Writes kTraceparentLen characters for `c` (valid).
void traceparent_into(char* out, const TraceContext& c) noexcept;

}  // namespace natbus::detail
