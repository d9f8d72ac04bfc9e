#include "message/gzip.hpp"

#include <zlib.h>

#include <fmt/format.h>

#include "natbus/error.hpp"

namespace natbus::detail {

namespace {
constexpr int kGzipWindow = 15 + 16;  // zlib: windowBits 15, gzip wrapper

[[noreturn]] void decode_error(std::string msg) { throw DecodeError(std::move(msg), ErrorContext{.operation = "gunzip"}); }
}  // namespace

std::string gzip_compress(std::string_view data) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, kGzipWindow, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw Error(errc::invalid_argument, "gzip: deflateInit2 failed", ErrorContext{.operation = "gzip"});
  }
  std::string out;
  out.resize(deflateBound(&zs, static_cast<uLong>(data.size())) + 32);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  const auto produced = zs.total_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw Error(errc::invalid_argument, "gzip: deflate failed", ErrorContext{.operation = "gzip"});
  out.resize(produced);
  return out;
}

void gzip_decompress(std::string_view data, std::size_t max_size, std::string& out) {
  out.clear();
  if (data.size() < 18) decode_error(fmt::format("gzip payload of {} bytes is too short to be gzip", data.size()));
  z_stream zs{};
  if (inflateInit2(&zs, kGzipWindow) != Z_OK) decode_error("inflateInit2 failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  char buf[16384];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      const std::string why = zs.msg != nullptr ? zs.msg : (rc == Z_BUF_ERROR ? "truncated data" : "corrupt data");
      inflateEnd(&zs);
      decode_error(fmt::format("corrupt gzip payload: {}", why));
    }
    const std::size_t produced = sizeof buf - zs.avail_out;
    if (out.size() + produced > max_size) {
      inflateEnd(&zs);
      decode_error(fmt::format("gzip payload decompresses to more than the {} byte limit (max_decompressed_size)", max_size));
    }
    out.append(buf, produced);
    if (rc == Z_OK && zs.avail_in == 0 && produced == 0) {
      inflateEnd(&zs);
      decode_error("truncated gzip payload");
    }
  }
  const bool trailing = zs.avail_in != 0;
  inflateEnd(&zs);
  if (trailing) decode_error(fmt::format("gzip payload has {} bytes of trailing data", zs.avail_in));
}

}  // namespace natbus::detail
