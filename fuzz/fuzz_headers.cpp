// libFuzzer: header names and values from arbitrary bytes. Accepted ones must never carry
// CR/LF or control characters; lookups are case-insensitive; nothing crashes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "natbus/error.hpp"
#include "natbus/message.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto msg = natbus::BusMessage::from_text("fuzz.headers", "x");
  std::size_t start = 0;
  while (start < in.size()) {
    auto end = in.find('\n', start);
    if (end == std::string_view::npos) end = in.size();
    const std::string_view line = in.substr(start, end - start);
    start = end + 1;
    const auto sep = line.find('=');
    const std::string_view name = line.substr(0, sep);
    const std::string_view value = sep == std::string_view::npos ? std::string_view{} : line.substr(sep + 1);
    try {
      msg.add_header(name, value);
    } catch (const natbus::InvalidArgument&) {
      continue;
    }
    for (char c : std::string(name) + std::string(value)) {
      if (c == '\r' || c == '\n') __builtin_trap();
    }
    std::string upper(name);
    for (auto& c : upper) c = static_cast<char>((c >= 'a' && c <= 'z') ? c - 'a' + 'A' : c);
    if (!msg.header(upper).has_value()) __builtin_trap();
  }
  try {
    natbus::MessageOptions o;
    o.sender = in.substr(0, in.size() / 2);
    o.message_type = in.substr(in.size() / 2);
    (void)natbus::BusMessage::from_bytes("fuzz.options", in, o);
  } catch (const natbus::InvalidArgument&) {
  }
  return 0;
}
