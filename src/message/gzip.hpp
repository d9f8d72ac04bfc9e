// gzip for content-encoding: gzip (what Python's gzip.compress writes and reads).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace natbus::detail {

/// gzip-compresses `data` (RFC 1952).
[[nodiscard]] std::string gzip_compress(std::string_view data);
/// Decompresses a gzip stream into `out`. Throws DecodeError when the data is corrupt or
/// truncated, has trailing garbage, or would exceed `max_size` bytes (gzip bombs).
void gzip_decompress(std::string_view data, std::size_t max_size, std::string& out);

}  // namespace natbus::detail
