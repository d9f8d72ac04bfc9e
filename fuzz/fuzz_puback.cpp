// libFuzzer: the PubAck fast path never crashes, and whatever it accepts the full JSON parser
// reads the same way.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "jetstream/puback.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  natbus::PubAck ack;
  if (!natbus::detail::parse_puback_fast(in, ack)) return 0;
  const auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return 0;  // lenient on whitespace/duplicates: fine
  if (j.contains("stream") && j["stream"].is_string() && j["stream"].get<std::string>() != ack.stream) __builtin_trap();
  if (j.contains("seq") && j["seq"].is_number_unsigned() && j["seq"].get<std::uint64_t>() != ack.sequence) __builtin_trap();
  return 0;
}
