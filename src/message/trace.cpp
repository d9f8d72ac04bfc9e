// W3C trace context: TraceContext, the traceparent natbus writes, and the tracing hooks.
#include <array>
#include <cstring>
#include <random>
#include <string>
#include <string_view>

#include "base/util.hpp"
#include "message/trace.hpp"
#include "natbus/message.hpp"

namespace natbus {

namespace {

constexpr char kHex[] = "0123456789abcdef";

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// `n` lowercase hex digits from `in` into `out`; false unless all hex and not all zero.
bool lower_hex(std::string_view in, char* out, std::size_t n) noexcept {
  if (in.size() != n) return false;
  bool nonzero = false;
  for (std::size_t i = 0; i < n; ++i) {
    const int v = hex_value(in[i]);
    if (v < 0) return false;
    nonzero = nonzero || v != 0;
    out[i] = kHex[v];
  }
  return nonzero;
}

TraceHooks& hooks_storage() noexcept {
  static TraceHooks hooks;
  return hooks;
}

}  // namespace

std::string TraceContext::trace_uuid() const {
  if (!valid()) return {};
  std::string out(detail::kUuidLen, '-');
  detail::trace_uuid_into(out.data(), *this);
  return out;
}

std::string TraceContext::traceparent() const {
  if (!valid()) return {};
  std::array<char, detail::kTraceparentLen> buf{};
  detail::traceparent_into(buf.data(), *this);
  return {buf.data(), buf.size()};
}

std::optional<TraceContext> TraceContext::from_traceparent(std::string_view v) noexcept {
  // version "-" trace-id "-" parent-id "-" flags; a future version may append "-..." fields.
  if (v.size() < detail::kTraceparentLen || v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
  if (v.size() > detail::kTraceparentLen && v[detail::kTraceparentLen] != '-') return std::nullopt;
  const int v0 = hex_value(v[0]);
  const int v1 = hex_value(v[1]);
  if (v0 < 0 || v1 < 0 || (v0 == 0xf && v1 == 0xf)) return std::nullopt;               // ff is invalid
  if (v0 == 0 && v1 == 0 && v.size() != detail::kTraceparentLen) return std::nullopt;  // 00 has 4 fields
  TraceContext c;
  if (!lower_hex(v.substr(3, 32), c.trace_id.data(), 32)) return std::nullopt;
  if (!lower_hex(v.substr(36, 16), c.span_id.data(), 16)) return std::nullopt;
  const int f0 = hex_value(v[53]);
  const int f1 = hex_value(v[54]);
  if (f0 < 0 || f1 < 0) return std::nullopt;
  c.flags = static_cast<std::uint8_t>(f0 * 16 + f1);
  return c;
}

std::optional<TraceContext> TraceContext::from_trace_id(std::string_view id) noexcept {
  std::array<char, 32> hex{};
  std::size_t n = 0;
  for (char ch : id) {
    if (ch == '-') continue;
    if (n == 32) return std::nullopt;
    hex[n++] = ch;
  }
  const bool uuid_shape = id.size() == 36 && id[8] == '-' && id[13] == '-' && id[18] == '-' && id[23] == '-';
  if (n != 32 || (id.size() != 32 && !uuid_shape)) return std::nullopt;
  TraceContext c;
  if (!lower_hex(std::string_view(hex.data(), 32), c.trace_id.data(), 32)) return std::nullopt;
  c.span_id.fill('0');
  return c;
}

void set_trace_hooks(const TraceHooks& hooks) noexcept { hooks_storage() = hooks; }

namespace detail {

const TraceHooks& trace_hooks() noexcept { return hooks_storage(); }

bool tracing_in_use() noexcept {
  const TraceHooks& h = hooks_storage();
  return h.on_inject != nullptr || h.on_handler_start != nullptr || h.on_handler_end != nullptr;
}

void trace_uuid_into(char* out, const TraceContext& c) noexcept {
  for (std::size_t i = 0, o = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) out[o++] = '-';
    out[o++] = c.trace_id[i];
  }
}

void span_id_into(char* out) noexcept {
  std::uint64_t r = 0;
  while (r == 0) r = random_u64();  // an all-zero span id is invalid
  for (int i = 15; i >= 0; --i) {
    out[i] = kHex[r & 0xfU];
    r >>= 4U;
  }
}

void traceparent_into(char* out, const TraceContext& c) noexcept {
  out[0] = '0';
  out[1] = '0';
  out[2] = '-';
  std::memcpy(out + 3, c.trace_id.data(), 32);
  out[35] = '-';
  std::memcpy(out + 36, c.span_id.data(), 16);
  out[52] = '-';
  out[53] = kHex[(c.flags >> 4U) & 0xfU];
  out[54] = kHex[c.flags & 0xfU];
}

}  // namespace detail
}  // namespace natbus
