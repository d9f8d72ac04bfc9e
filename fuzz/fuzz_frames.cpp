// libFuzzer: the frame guard's scanner over arbitrary bytes fed in arbitrary pieces. Whole
// frames found never exceed what was fed, and the boundaries do not depend on how the stream
// was split or on bytes being consumed on the way (what the relay does).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "frame_guard.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t step = 1 + data[0] % 97U;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  natbus::detail::FrameScanner whole;
  whole.scan(in.data(), in.size());
  if (whole.complete() > in.size()) __builtin_trap();

  natbus::detail::FrameScanner parts;
  std::string buf;
  std::size_t consumed = 0;
  std::size_t last = 0;
  for (std::size_t off = 0; off < in.size(); off += step) {
    buf.append(in.substr(off, step));
    parts.scan(buf.data(), buf.size());
    if (parts.complete() > buf.size() || parts.complete() < last) __builtin_trap();
    last = parts.complete();
    if ((off / step) % 2 == 0) {  // consume every other time, like a relay that forwards
      const std::size_t c = parts.complete();
      buf.erase(0, c);
      parts.consumed(c);
      consumed += c;
      last = 0;
    }
  }
  if (consumed + parts.complete() != whole.complete()) __builtin_trap();
  if (parts.passthrough() != whole.passthrough()) __builtin_trap();
  return 0;
}
