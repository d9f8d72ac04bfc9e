// libFuzzer: gunzip of arbitrary bytes either decodes within the cap or throws DecodeError;
// compress then decompress gives the input back.
#include <cstddef>
#include <cstdint>
#include <string>

#include "message/gzip.hpp"
#include "natbus/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  std::string out;
  try {
    natbus::detail::gzip_decompress(in, 1 << 20, out);
    if (out.size() > (1U << 20)) __builtin_trap();
  } catch (const natbus::DecodeError&) {
  }
  const std::string z = natbus::detail::gzip_compress(in);
  natbus::detail::gzip_decompress(z, in.size() + 1, out);
  if (out != in) __builtin_trap();
  return 0;
}
