#include "base/util.hpp"

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <mutex>

#include <pthread.h>
#include <sys/random.h>
#include <unordered_set>

#include <fmt/format.h>

namespace natbus::detail {

namespace {

// Ids, inbox names and span ids come from the kernel's CSPRNG (getrandom), read 4 KiB at a time
// per thread: unpredictable (a client on the same account must not guess an inbox and inject a
// reply, which a Mersenne Twister's outputs in x-trace-id would let it do), at the cost of one
// system call per 128 messages. A forked child refills before it hands out anything.
std::atomic<std::uint64_t> g_fork_generation{0};

void on_fork_child() noexcept { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }

struct RandomPool {
  std::array<std::uint64_t, 512> words{};
  std::size_t next = words.size();
  std::uint64_t generation = ~std::uint64_t{0};

  void refill() noexcept {
    auto* p = reinterpret_cast<unsigned char*>(words.data());
    std::size_t left = sizeof words;
    while (left > 0) {
      const ssize_t n = ::getrandom(p, left, 0);
      if (n > 0) {
        p += n;
        left -= static_cast<std::size_t>(n);
      } else if (n < 0 && errno != EINTR) {
        // No getrandom (a kernel older than 3.17): /dev/urandom is the same source.
        std::FILE* f = std::fopen("/dev/urandom", "rb");
        const std::size_t got = f != nullptr ? std::fread(p, 1, left, f) : 0;
        if (f != nullptr) std::fclose(f);
        if (got != left) std::abort();  // no secure randomness at all: never hand out guessable ids
        left = 0;
      }
    }
    next = 0;
    generation = g_fork_generation.load(std::memory_order_relaxed);
  }
  std::uint64_t take() noexcept {
    if (next == words.size() || generation != g_fork_generation.load(std::memory_order_relaxed)) refill();
    return words[next++];
  }
};

RandomPool& pool() {
  static const int registered = ::pthread_atfork(nullptr, nullptr, &on_fork_child);
  (void)registered;
  thread_local RandomPool p;
  return p;
}

}  // namespace

void uuid4_into(char* out) noexcept {
  RandomPool& rp = pool();
  const std::uint64_t hi = rp.take();
  const std::uint64_t lo = rp.take();
  std::array<unsigned char, 16> b{};
  for (std::size_t i = 0; i < 8; ++i) {
    b[i] = static_cast<unsigned char>(hi >> (8 * i));
    b[i + 8] = static_cast<unsigned char>(lo >> (8 * i));
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0fU) | 0x40U);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3fU) | 0x80U);  // RFC 4122 variant
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *out++ = '-';
    *out++ = kHex[b[i] >> 4U];
    *out++ = kHex[b[i] & 0x0fU];
  }
}

std::uint64_t random_u64() noexcept { return pool().take(); }

std::string uuid4() {
  std::string out(kUuidLen, '0');
  uuid4_into(out.data());
  return out;
}

std::string random_token(std::size_t n) {
  static constexpr char kAlphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  static constexpr unsigned kLetters = sizeof(kAlphabet) - 1;  // 62
  RandomPool& rp = pool();
  std::string out(n, '0');
  std::size_t i = 0;
  while (i < n) {
    std::uint64_t w = rp.take();
    for (int b = 0; b < 8 && i < n; ++b, w >>= 8U) {
      const unsigned byte = static_cast<unsigned>(w & 0xffU);
      if (byte < 4 * kLetters) out[i++] = kAlphabet[byte % kLetters];  // no modulo bias: 248 = 4 x 62
    }
  }
  return out;
}

namespace {

// "2026-11-26T18:21:33" of the second `t` falls in, and the sub-second rest in nanoseconds.
// Everything but the fraction changes once a second, so the text is cached per thread (gmtime
// and formatting cost ~5000 instructions): the one place natbus turns a time into text.
constexpr std::size_t kSecondLen = 19;
const char* second_text(std::chrono::system_clock::time_point t, std::uint32_t& nanos) noexcept {
  struct Cache {
    std::int64_t second = std::numeric_limits<std::int64_t>::min();
    std::array<char, kSecondLen + 1> text{};
  };
  thread_local Cache cache;
  const auto since = t.time_since_epoch();
  const auto secs = std::chrono::floor<std::chrono::seconds>(since);
  nanos = static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(since - secs).count());
  if (secs.count() != cache.second) {
    const std::time_t tt = static_cast<std::time_t>(secs.count());
    std::tm tm{};
    gmtime_r(&tt, &tm);
    fmt::format_to_n(cache.text.data(), cache.text.size(), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    cache.second = secs.count();
  }
  return cache.text.data();
}

void put_digits(char* out, std::uint32_t v, int n) noexcept {
  for (int i = n - 1; i >= 0; --i) {
    out[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
}

}  // namespace

void iso8601_ms_into(char* out, std::chrono::system_clock::time_point t) noexcept {
  std::uint32_t nanos = 0;
  std::memcpy(out, second_text(t, nanos), kSecondLen);
  out[kSecondLen] = '.';
  put_digits(out + kSecondLen + 1, nanos / 1000000, 3);
  constexpr std::array<char, 6> kUtcOffset{'+', '0', '0', ':', '0', '0'};
  std::memcpy(out + kSecondLen + 4, kUtcOffset.data(), kUtcOffset.size());
}

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view s) noexcept {
  const auto digits = [&s](std::size_t at, std::size_t n, int& out) {
    if (at + n > s.size()) return false;
    out = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!digits(0, 4, year) || s.size() < 20 || s[4] != '-' || !digits(5, 2, month) || s[7] != '-' || !digits(8, 2, day) ||
      (s[10] != 'T' && s[10] != 't') || !digits(11, 2, hour) || s[13] != ':' || !digits(14, 2, minute) || s[16] != ':' ||
      !digits(17, 2, second) || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  std::size_t i = 19;
  std::int64_t nanos = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    int n = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (n < 9) nanos = nanos * 10 + (s[i] - '0');
      ++n;
      ++i;
    }
    if (n == 0) return std::nullopt;
    for (; n < 9; ++n) nanos *= 10;
  }
  int offset_minutes = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int oh = 0, om = 0;
    if (!digits(i + 1, 2, oh) || i + 3 >= s.size() || s[i + 3] != ':' || !digits(i + 4, 2, om)) return std::nullopt;
    offset_minutes = (s[i] == '-' ? -1 : 1) * (oh * 60 + om);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const std::time_t secs = timegm(&tm);
  const auto t = std::chrono::seconds(secs) - std::chrono::minutes(offset_minutes) + std::chrono::nanoseconds(nanos);
  return std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(t));
}

std::optional<std::string> base64_decode(std::string_view s) {
  while (!s.empty() && s.back() == '=') s.remove_suffix(1);
  std::string out;
  out.reserve(s.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : s) {
    int v = -1;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    if (c >= '0' && c <= '9') v = c - '0' + 52;
    if (c == '+') v = 62;
    if (c == '/') v = 63;
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFFU));
    }
  }
  if (bits >= 6) return std::nullopt;  // a lone trailing character holds no whole byte
  return out;
}

std::string base64url_encode(std::string_view s) {
  static constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((s.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= s.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t{static_cast<unsigned char>(s[i])} << 16) |
                            (std::uint32_t{static_cast<unsigned char>(s[i + 1])} << 8) | static_cast<unsigned char>(s[i + 2]);
    for (int shift = 18; shift >= 0; shift -= 6) out.push_back(kAlphabet[(v >> shift) & 63U]);
  }
  const std::size_t left = s.size() - i;
  if (left > 0) {
    std::uint32_t v = std::uint32_t{static_cast<unsigned char>(s[i])} << 16;
    if (left == 2) v |= std::uint32_t{static_cast<unsigned char>(s[i + 1])} << 8;
    out.push_back(kAlphabet[(v >> 18) & 63U]);
    out.push_back(kAlphabet[(v >> 12) & 63U]);
    out.push_back(left == 2 ? kAlphabet[(v >> 6) & 63U] : '=');
    out.push_back('=');
  }
  return out;
}

std::string format_time(std::chrono::system_clock::time_point t, TimeText form) {
  std::uint32_t nanos = 0;
  std::string out(second_text(t, nanos), kSecondLen);
  out += '.';
  const bool ns = form == TimeText::rfc3339_nanos;
  const std::size_t at = out.size();
  out.resize(at + (ns ? 9 : 3));
  put_digits(out.data() + at, ns ? nanos : nanos / 1000000, ns ? 9 : 3);
  out += form == TimeText::sent_at ? "+00:00" : "Z";
  return out;
}

std::string iso8601_ms(std::chrono::system_clock::time_point t) {
  std::string out(kIsoLen, '0');
  iso8601_ms_into(out.data(), t);
  return out;
}

bool valid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int n = 0;
    std::uint32_t cp = 0;
    if ((c & 0xE0U) == 0xC0U) {
      n = 1;
      cp = c & 0x1FU;
      if (cp < 2) return false;  // overlong
    } else if ((c & 0xF0U) == 0xE0U) {
      n = 2;
      cp = c & 0x0FU;
    } else if ((c & 0xF8U) == 0xF0U) {
      n = 3;
      cp = c & 0x07U;
    } else {
      return false;
    }
    if (end - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xC0U) != 0x80U) return false;
      cp = (cp << 6U) | (p[i] & 0x3FU);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) return false;  // overlong
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    p += n + 1;
  }
  return true;
}

std::string_view intern(std::string_view s) {
  if (s.empty()) return {};
  thread_local std::string_view last;
  if (s == last) return last;
  struct Table {
    std::mutex mu;
    std::unordered_set<std::string, StringHash, std::equal_to<>> names;
  };
  static auto* table = new Table;  // immortal: views handed out must outlive every static
  const std::lock_guard lock(table->mu);
  auto it = table->names.find(s);
  if (it == table->names.end()) it = table->names.emplace(s).first;
  last = *it;
  return last;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

}  // namespace natbus::detail
