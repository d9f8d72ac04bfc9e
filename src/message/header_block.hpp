// Encoded header blocks ("NATS/1.0[ status]\r\nName: value\r\n...\r\n"), read in place: what
// BusMessage builds, and what a received message carries without asking cnats to lift it into
// a hash map (an allocation per header, on the first natsMsgHeader_Get).
#pragma once

#include <optional>
#include <string_view>

#include "transport/cnats.hpp"

namespace natbus::detail {

inline constexpr std::string_view kHeaderStatusLine = "NATS/1.0\r\n";

/// Calls fn(name, value) for each "name: value" line of an encoded header block (the value
/// without the spaces around it); stops early when fn returns false.
template <class Fn>
void for_each_header(std::string_view block, Fn&& fn) {
  if (block.size() < kHeaderStatusLine.size()) return;
  std::size_t pos = block.find("\r\n");
  if (pos == std::string_view::npos) return;
  pos += 2;
  while (pos < block.size()) {
    const std::size_t end = block.find("\r\n", pos);
    if (end == std::string_view::npos || end == pos) return;
    const std::string_view line = block.substr(pos, end - pos);
    pos = end + 2;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (!fn(line.substr(0, colon), value)) return;
  }
}

/// The header block of a received message as cnats holds it, or nullopt when natbus must ask
/// cnats instead: the library's message layout is not the known one, the block was already
/// lifted by cnats (which rewrites it in place), it uses folded lines, or there is no block.
[[nodiscard]] std::optional<std::string_view> received_header_block(natsMsg* m) noexcept;

}  // namespace natbus::detail
