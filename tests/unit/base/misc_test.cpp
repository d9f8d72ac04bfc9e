// Errors, logging, gzip, UTF-8, ids, timestamps, SHA-256 and base64url.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <regex>
#include <set>

#include "base/sha256.hpp"
#include "base/util.hpp"
#include "base/validate.hpp"
#include "message/gzip.hpp"
#include "natbus/bus.hpp"
#include "natbus/error.hpp"
#include "natbus/log.hpp"
#include "natbus/version.hpp"

TEST(Error, WhatNamesOperationContextAndServerText) {
  natbus::ErrorContext ctx;
  ctx.operation = "publish";
  ctx.subject = "orders.created";
  ctx.stream = "ORDERS";
  ctx.durable = "d1";
  ctx.server_text = "stream not found";
  ctx.js_code = 10059;
  const natbus::NotFoundError e("no such stream", ctx);
  const std::string w = e.what();
  EXPECT_EQ(w,
            "natbus: publish: no such stream (subject=orders.created stream=ORDERS durable=d1) [server: stream not found, err_code 10059]");
  EXPECT_EQ(e.code(), natbus::errc::not_found);
  EXPECT_EQ(e.js_code(), 10059);
  const std::runtime_error& base = e;  // contract: natbus::Error derives from std::runtime_error
  EXPECT_STREQ(base.what(), e.what());
}

TEST(Error, RetryableKinds) {
  EXPECT_TRUE(natbus::TimeoutError("t").retryable());
  EXPECT_TRUE(natbus::NoStreamError("n").retryable());
  EXPECT_FALSE(natbus::AuthError("a").retryable());
  natbus::ErrorContext ctx;
  ctx.api_code = 503;
  EXPECT_TRUE(natbus::JetStreamError("x", ctx).retryable());
  EXPECT_EQ(natbus::make_error_code(natbus::errc::timeout).message(), "timed out");
}

TEST(Log, FormatsEventsWithFieldsAndQuoting) {
  std::vector<std::string> lines;
  natbus::set_log_sink([&](const natbus::LogRecord& r) { lines.push_back(natbus::format_log_line(r)); });
  natbus::log(natbus::LogLevel::warn, "sub_handler_error", {{"subject", "a.b"}, {"error", "bad thing \"x\""}, {"empty", ""}});
  natbus::log(natbus::LogLevel::debug, "dropped_below_level", {});
  natbus::set_log_sink({});
  ASSERT_EQ(lines.size(), 1U);
  EXPECT_TRUE(std::regex_search(lines[0], std::regex(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARN sub_handler_error )"))) << lines[0];
  EXPECT_NE(lines[0].find("subject=a.b error=\"bad thing \\\"x\\\"\" empty=\"\""), std::string::npos) << lines[0];
}

TEST(Log, LevelFilter) {
  int n = 0;
  natbus::set_log_sink([&](const natbus::LogRecord&) { ++n; });
  natbus::set_log_level(natbus::LogLevel::error);
  natbus::log(natbus::LogLevel::warn, "x");
  natbus::log(natbus::LogLevel::error, "y");
  natbus::set_log_level(natbus::LogLevel::warn);
  natbus::set_log_sink({});
  EXPECT_EQ(n, 1);
}

TEST(Log, ThrowingSinkDoesNotEscape) {
  natbus::set_log_sink([](const natbus::LogRecord&) { throw std::runtime_error("sink"); });
  EXPECT_NO_THROW(natbus::log(natbus::LogLevel::error, "x"));
  natbus::set_log_sink({});
}

TEST(Gzip, RoundTripAndCorruption) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data += "line " + std::to_string(i) + "\n";
  const std::string z = natbus::detail::gzip_compress(data);
  std::string out;
  natbus::detail::gzip_decompress(z, 1 << 20, out);
  EXPECT_EQ(out, data);
  // empty payload round trip
  natbus::detail::gzip_decompress(natbus::detail::gzip_compress(""), 10, out);
  EXPECT_EQ(out, "");
  // truncated
  EXPECT_THROW(natbus::detail::gzip_decompress(z.substr(0, z.size() / 2), 1 << 20, out), natbus::DecodeError);
  // corrupt
  std::string bad = z;
  bad[bad.size() / 2] = static_cast<char>(bad[bad.size() / 2] ^ 0x55);
  EXPECT_THROW(natbus::detail::gzip_decompress(bad, 1 << 20, out), natbus::DecodeError);
  // not gzip at all
  EXPECT_THROW(natbus::detail::gzip_decompress("hello world, certainly not gzip", 1 << 20, out), natbus::DecodeError);
  // trailing garbage
  EXPECT_THROW(natbus::detail::gzip_decompress(z + "junk", 1 << 20, out), natbus::DecodeError);
}

TEST(Gzip, BombIsCappedNotExpanded) {
  const std::string zeros(8 * 1024 * 1024, '\0');
  const std::string bomb = natbus::detail::gzip_compress(zeros);  // ~8 KiB
  std::string out;
  try {
    natbus::detail::gzip_decompress(bomb, 1024 * 1024, out);
    FAIL() << "expected a DecodeError";
  } catch (const natbus::DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("1048576 byte limit"), std::string::npos) << e.what();
  }
  EXPECT_LE(out.size(), 1024U * 1024U);
}

TEST(Util, Utf8Validation) {
  using natbus::detail::valid_utf8;
  EXPECT_TRUE(valid_utf8("plain"));
  EXPECT_TRUE(valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(valid_utf8("\xc3"));              // truncated
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(valid_utf8("\xff"));
  EXPECT_FALSE(valid_utf8("\xe2\x28\xa1"));  // bad continuation
}

TEST(Util, UuidsAreV4AndUnique) {
  std::set<std::string> seen;
  const std::regex re("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  for (int i = 0; i < 1000; ++i) {
    auto u = natbus::detail::uuid4();
    EXPECT_TRUE(std::regex_match(u, re)) << u;
    seen.insert(u);
  }
  EXPECT_EQ(seen.size(), 1000U);
}

TEST(Util, Iso8601Milliseconds) {
  const auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(1795717293123LL));
  EXPECT_EQ(natbus::detail::iso8601_ms(t), "2026-11-26T18:21:33.123+00:00");
  // The date part is cached per second: crossing a second, a day and going back in time must
  // all re-format it.
  using std::chrono::milliseconds;
  using TP = std::chrono::system_clock::time_point;
  EXPECT_EQ(natbus::detail::iso8601_ms(TP(milliseconds(1795717293999LL))), "2026-11-26T18:21:33.999+00:00");
  EXPECT_EQ(natbus::detail::iso8601_ms(TP(milliseconds(1795717294000LL))), "2026-11-26T18:21:34.000+00:00");
  EXPECT_EQ(natbus::detail::iso8601_ms(TP(milliseconds(1795737599007LL))), "2026-11-26T23:59:59.007+00:00");
  EXPECT_EQ(natbus::detail::iso8601_ms(TP(milliseconds(1795737600050LL))), "2026-11-27T00:00:00.050+00:00");
  EXPECT_EQ(natbus::detail::iso8601_ms(TP(milliseconds(0))), "1970-01-01T00:00:00.000+00:00");
  EXPECT_EQ(natbus::detail::iso8601_ms(t), "2026-11-26T18:21:33.123+00:00");
}

TEST(Util, OneFormatterForEveryTimeTextNatbusWrites) {
  using std::chrono::nanoseconds;
  using TP = std::chrono::system_clock::time_point;
  const TP t(std::chrono::duration_cast<std::chrono::system_clock::duration>(nanoseconds(1795717293123456789LL)));
  using natbus::detail::TimeText;
  EXPECT_EQ(natbus::detail::format_time(t, TimeText::sent_at), "2026-11-26T18:21:33.123+00:00");
  EXPECT_EQ(natbus::detail::format_time(t, TimeText::log), "2026-11-26T18:21:33.123Z");
  EXPECT_EQ(natbus::detail::format_time(t, TimeText::rfc3339_nanos), "2026-11-26T18:21:33.123456789Z");
  EXPECT_EQ(natbus::detail::format_time(TP{}, TimeText::rfc3339_nanos), "1970-01-01T00:00:00.000000000Z");
  // Log lines use it.
  const natbus::LogRecord r{.level = natbus::LogLevel::info, .event = "x", .fields = {}, .time = t};
  EXPECT_EQ(natbus::format_log_line(r), "2026-11-26T18:21:33.123Z INFO x");
}

TEST(Version, Strings) {
  EXPECT_STREQ(natbus::version(), natbus::kVersion);
  EXPECT_TRUE(std::regex_match(std::string(natbus::cnats_version()), std::regex(R"(^\d+\.\d+\.\d+.*$)"))) << natbus::cnats_version();
}

TEST(Metrics, PrometheusTextEscapesLabelValuesAndCountsBuckets) {
  natbus::MetricsSnapshot s;
  s.name = "svc";
  natbus::SubscriptionMetrics m;
  m.subject = "a\"b\\c\nd";
  m.handler_seconds.observe(0.0002);
  m.handler_seconds.observe(0.003);
  m.handler_seconds.observe(10);
  s.subscriptions.push_back(m);
  const std::string text = natbus::to_prometheus(s);
  EXPECT_NE(text.find(R"(subject="a\"b\\c\nd")"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(le="0.00025"} 1)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(le="0.005"} 2)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(le="5"} 2)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(le="+Inf"} 3)"), std::string::npos) << text;
  EXPECT_EQ(m.handler_seconds.quantile_bound(0.5), 0.005);
}

TEST(Config, NameThatWouldBreakTheConnectProtocolIsAConfigError) {
  natbus::NatsConfig c;
  c.name = "svc \"quoted\"";
  try {
    natbus::NatsBus bus{c};
    ADD_FAILURE() << "accepted";
  } catch (const natbus::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("name"), std::string::npos) << e.what();
  }
}

TEST(RetryBackoff, DelaysGrowWithTheDeliveryCountUpToTheCap) {
  using natbus::detail::backoff_delay;
  using std::chrono::milliseconds;
  const natbus::RetryBackoff def{};
  EXPECT_EQ(backoff_delay(def, {}, 1), milliseconds(250));
  EXPECT_EQ(backoff_delay(def, {}, 2), milliseconds(500));
  EXPECT_EQ(backoff_delay(def, {}, 5), milliseconds(4000));
  EXPECT_EQ(backoff_delay(def, {}, 1000), milliseconds(30000));
  EXPECT_EQ(backoff_delay(def, {}, 0), milliseconds(250));                                             // no delivery count known
  EXPECT_EQ(backoff_delay(natbus::RetryBackoff{.initial = milliseconds(0)}, {}, 7), milliseconds(0));  // off: plain nak
  EXPECT_EQ(backoff_delay(natbus::RetryBackoff{.initial = milliseconds(700), .multiplier = 1.0}, {}, 9), milliseconds(700));
  const std::vector<milliseconds> steps{milliseconds(10), milliseconds(20), milliseconds(90)};
  EXPECT_EQ(backoff_delay(def, steps, 1), milliseconds(10));
  EXPECT_EQ(backoff_delay(def, steps, 3), milliseconds(90));
  EXPECT_EQ(backoff_delay(def, steps, 50), milliseconds(90));  // the last step repeats
  EXPECT_NE(natbus::detail::backoff_problem(natbus::RetryBackoff{.multiplier = 0.5}, {}).find("multiplier"), std::string::npos);
  EXPECT_NE(natbus::detail::backoff_problem(natbus::RetryBackoff{.initial = milliseconds(5), .max = milliseconds(1)}, {}).find("max"),
            std::string::npos);
  const std::vector<milliseconds> bad{milliseconds(10), milliseconds(0)};
  EXPECT_NE(natbus::detail::backoff_problem(def, bad).find("step 1"), std::string::npos);
  EXPECT_EQ(natbus::detail::backoff_problem(def, steps), "");
}

TEST(Random, IdsComeFromTheKernelAndAForkedChildDoesNotRepeatTheParent) {
  // Buffered randomness must not be replayed by a child process: both sides draw new ids.
  (void)natbus::detail::uuid4();  // the parent's pool is filled before the fork
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string child = natbus::detail::uuid4() + natbus::detail::random_token(22);
    (void)!::write(fds[1], child.data(), child.size());
    ::_exit(0);
  }
  const std::string parent = natbus::detail::uuid4() + natbus::detail::random_token(22);
  std::string child(parent.size(), '\0');
  std::size_t got = 0;
  while (got < child.size()) {
    const ssize_t n = ::read(fds[0], child.data() + got, child.size() - got);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(fds[0]);
  ::close(fds[1]);
  ASSERT_EQ(got, parent.size());
  EXPECT_NE(child, parent);
  const std::string token = natbus::detail::random_token(1000);
  EXPECT_EQ(token.find_first_not_of("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"), std::string::npos);
  std::set<char> letters(token.begin(), token.end());
  EXPECT_EQ(letters.size(), 62U);  // 1000 draws cover all 62 letters (missing one: p < 1e-5)
}

TEST(Time, Rfc3339ParsesWhatTheServerAndNatbusWriteAndRefusesTheRest) {
  using namespace std::chrono;
  const auto t = system_clock::time_point(duration_cast<system_clock::duration>(nanoseconds(1'764'630'093'123'456'789)));
  const std::string written = natbus::detail::format_time(t, natbus::detail::TimeText::rfc3339_nanos);
  EXPECT_EQ(natbus::detail::parse_rfc3339(written), t) << written;
  EXPECT_EQ(natbus::detail::parse_rfc3339("2025-12-01T23:01:33.123456789Z"), t);
  EXPECT_EQ(natbus::detail::parse_rfc3339("2025-12-02T00:01:33.123456789+01:00"), t);
  EXPECT_EQ(natbus::detail::parse_rfc3339("2025-12-01T23:01:33Z"), t - nanoseconds(123'456'789));
  EXPECT_EQ(natbus::detail::parse_rfc3339("2025-12-01T23:01:33.1Z"), t - nanoseconds(23'456'789));
  for (const char* bad : {"", "2025-12-01", "2025-12-01T23:01:33", "2025-13-01T23:01:33Z", "2025-12-01T23:01:33.Z",
                          "2025-12-01T23:01:33Zjunk", "2025-12-01 23:01:33Z", "2025-12-01T23:01:33+0100"}) {
    EXPECT_FALSE(natbus::detail::parse_rfc3339(bad).has_value()) << bad;
  }
}

TEST(Base64, DecodesWithAndWithoutPaddingAndRefusesOtherCharacters) {
  EXPECT_EQ(natbus::detail::base64_decode(""), std::string());
  EXPECT_EQ(natbus::detail::base64_decode("aGVsbG8gd29ybGQ="), "hello world");
  EXPECT_EQ(natbus::detail::base64_decode("aGVsbG8gd29ybGQ"), "hello world");
  EXPECT_EQ(natbus::detail::base64_decode("TkFUUy8xLjANCmE6IGINCg0K"), "NATS/1.0\r\na: b\r\n\r\n");
  EXPECT_EQ(natbus::detail::base64_decode("//79"), std::string("\xff\xfe\xfd"));
  EXPECT_FALSE(natbus::detail::base64_decode("aGVs bG8=").has_value());
  EXPECT_FALSE(natbus::detail::base64_decode("aGVsbG8-").has_value());
  EXPECT_FALSE(natbus::detail::base64_decode("a").has_value());
}

namespace {
std::string sha256_hex(const std::vector<std::string_view>& parts) {
  natbus::detail::Sha256 sha;
  for (const auto p : parts) sha.update(p);
  const auto d = sha.finish();
  std::string hex;
  for (const auto b : d) hex += fmt::format("{:02x}", b);
  return hex;
}
}  // namespace

TEST(Util, Sha256MatchesTheFipsVectorsWholeAndInPieces) {
  EXPECT_EQ(sha256_hex({}), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex({"abc"}), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(sha256_hex({two_blocks}), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1'000'000, 'a');
  EXPECT_EQ(sha256_hex({million}), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // Split at every awkward boundary (inside the buffer, exactly at 64, past it): the same digest.
  const std::string_view m(million);
  EXPECT_EQ(sha256_hex({m.substr(0, 1), m.substr(1, 62), m.substr(63, 2), m.substr(65, 64), m.substr(129)}),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  const std::string_view t(two_blocks);
  EXPECT_EQ(sha256_hex({t.substr(0, 55), t.substr(55)}), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Util, Base64UrlIsGosURLEncodingWithPadding) {
  using natbus::detail::base64url_encode;
  EXPECT_EQ(base64url_encode(""), "");
  EXPECT_EQ(base64url_encode("f"), "Zg==");
  EXPECT_EQ(base64url_encode("fo"), "Zm8=");
  EXPECT_EQ(base64url_encode("foo"), "Zm9v");
  EXPECT_EQ(base64url_encode("report 2026/11.pdf"), "cmVwb3J0IDIwMjYvMTEucGRm");
  EXPECT_EQ(base64url_encode(std::string("\xfb\xff\xbf", 3)), "-_-_");  // '+' and '/' become '-' and '_'
}
