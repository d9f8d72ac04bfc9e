#pragma once

#include <string_view>

#include "natbus/bus.hpp"

namespace natbus::detail {

/// Parses {"stream":"S","seq":N[,"duplicate":true][,"domain":"D"]} in any key order into `out`.
/// Returns false for anything else (errors, escapes, unknown keys): the caller then uses a
/// full JSON parser.
bool parse_puback_fast(std::string_view body, PubAck& out);

}  // namespace natbus::detail
