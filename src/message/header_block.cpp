// Reading a received message's header block in place (header_block.hpp).
#include "message/header_block.hpp"

#include <cstdint>
#include <cstring>

namespace natbus::detail {

#ifdef NATBUS_HAVE_NATSMSG_CREATE
namespace {

// cnats' natsMsg_create (every message the parser makes goes through it) lays a message out in
// one allocation: [subject\0][reply\0, when there is one][header block\0][data\0]. The block is
// then found from the public accessors alone.
std::optional<std::string_view> block_by_layout(natsMsg* m) noexcept {
  const char* subject = natsMsg_GetSubject(m);
  const char* data = natsMsg_GetData(m);
  if (subject == nullptr || data == nullptr) return std::nullopt;
  const char* reply = natsMsg_GetReply(m);
  const char* start = reply != nullptr ? reply + std::strlen(reply) + 1 : subject + std::strlen(subject) + 1;
  const auto s = reinterpret_cast<std::uintptr_t>(start);
  const auto d = reinterpret_cast<std::uintptr_t>(data);
  if (d == s) return std::string_view{};
  if (d < s + 1) return std::nullopt;
  return std::string_view(start, static_cast<std::size_t>(d - s - 1));
}

// Checked once per process on a message built with a known block: the layout holds for this
// libnats, or natbus never relies on it.
bool layout_known() noexcept {
  static const bool known = [] {
    constexpr std::string_view block = "NATS/1.0\r\nk: v\r\n\r\n";
    constexpr std::string_view body = "NATS/1.0\r\nk: v\r\n\r\nxy";
    natsMsg* m = nullptr;
    if (natsMsg_create(&m, "s", 1, "r", 1, body.data(), static_cast<int>(body.size()), static_cast<int>(block.size())) != NATS_OK) {
      return false;
    }
    const auto got = block_by_layout(m);
    const bool ok = got && *got == block && natsMsg_GetDataLength(m) == 2;
    natsMsg_Destroy(m);
    return ok;
  }();
  return known;
}

}  // namespace
#endif

std::optional<std::string_view> received_header_block(natsMsg* m) noexcept {
#ifdef NATBUS_HAVE_NATSMSG_CREATE
  if (m == nullptr || !layout_known()) return std::nullopt;
  const auto block = block_by_layout(m);
  // No block: no headers, or headers cnats holds only in its map (natsMsgHeader_Add on a message
  // built with natsMsg_Create): cnats answers both without allocating.
  if (!block || block->empty()) return std::nullopt;
  if (!block->starts_with("NATS/1.0") || !block->ends_with("\r\n\r\n")) return std::nullopt;
  if (block->find('\0') != std::string_view::npos) return std::nullopt;  // lifted: cnats cut it up in place
  // Every header line must be a plain "name: value" (no folded continuation lines).
  std::size_t pos = block->find("\r\n") + 2;
  while (pos < block->size()) {
    const std::size_t end = block->find("\r\n", pos);
    if (end == pos) break;  // the blank line that ends the block
    const std::string_view line = block->substr(pos, end - pos);
    if (line.front() == ' ' || line.front() == '\t' || line.find(':') == std::string_view::npos) return std::nullopt;
    pos = end + 2;
  }
  return block;
#else
  (void)m;
  return std::nullopt;
#endif
}

}  // namespace natbus::detail
