// SHA-256 (FIPS 180-4), incremental: what the Object Store (ADR-20) digests its objects with.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace natbus::detail {

class Sha256 {
 public:
  Sha256() noexcept;
  /// Adds bytes to the message.
  void update(std::string_view data) noexcept;
  /// The digest of everything added (the object is spent afterwards).
  [[nodiscard]] std::array<std::uint8_t, 32> finish() noexcept;

 private:
  void block(const std::uint8_t* p) noexcept;
  std::array<std::uint32_t, 8> h_{};
  std::array<std::uint8_t, 64> buf_{};
  std::size_t used_ = 0;
  std::uint64_t length_ = 0;  // bytes added
};

}  // namespace natbus::detail
