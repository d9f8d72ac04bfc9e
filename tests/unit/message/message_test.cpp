// BusMessage header contract and validation (no server).
#include <gtest/gtest.h>

#include <array>
#include <regex>

#include "message/gzip.hpp"
#include "natbus/error.hpp"
#include "natbus/json.hpp"
#include "natbus/message.hpp"

using natbus::BusMessage;
using natbus::MessageOptions;

namespace {
const std::regex kUuid4("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
const std::regex kSentAt(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+00:00$)");

std::vector<std::string> names(const BusMessage& m) {
  std::vector<std::string> out;
  for (const auto& [k, v] : m.headers()) out.emplace_back(k);
  return out;
}
}  // namespace

TEST(BusMessage, FromJsonWritesThePythonHeaders) {
  auto m = BusMessage::from_json("orders.created", {{"hello", "world"}}, {.sender = "orders-svc"});
  EXPECT_EQ(m.subject(), "orders.created");
  EXPECT_EQ(m.payload(), R"({"hello":"world"})");
  EXPECT_EQ(m.content_type(), "application/json");
  EXPECT_TRUE(std::regex_match(std::string(m.trace_id()), kUuid4)) << m.trace_id();
  EXPECT_TRUE(std::regex_match(std::string(m.correlation_id()), kUuid4)) << m.correlation_id();
  EXPECT_NE(m.trace_id(), m.correlation_id());
  EXPECT_EQ(m.sender(), "orders-svc");
  EXPECT_TRUE(std::regex_match(std::string(m.sent_at()), kSentAt)) << m.sent_at();
  EXPECT_EQ(names(m), (std::vector<std::string>{"content-type", "x-trace-id", "x-correlation-id", "x-sender", "x-sent-at"}));
}

TEST(BusMessage, FromTextAndBytesContentTypes) {
  EXPECT_EQ(BusMessage::from_text("s", "hi").content_type(), "text/plain; charset=utf-8");
  EXPECT_EQ(BusMessage::from_bytes("s", std::string_view("\x01\x02", 2)).content_type(), "application/octet-stream");
  EXPECT_EQ(BusMessage::from_bytes("s", std::string_view("x"), {.content_type = "image/png"}).content_type(), "image/png");
  const std::vector<std::uint8_t> jpeg = {0xFF, 0xD8, 0xFF, 0xE0};
  auto m = BusMessage::from_bytes("images", jpeg, {.headers = {{"content-type", "image/jpeg"}}});
  EXPECT_EQ(m.content_type(), "image/jpeg");
  EXPECT_EQ(m.payload(), std::string("\xFF\xD8\xFF\xE0", 4));
  // the user header replaced the default instead of adding a second one
  int n = 0;
  for (const auto& [k, v] : m.headers()) n += (k == "content-type");
  EXPECT_EQ(n, 1);
  const std::array<std::byte, 2> arr{std::byte{1}, std::byte{2}};
  EXPECT_EQ(BusMessage::from_bytes("s", arr).payload().size(), 2U);
}

TEST(BusMessage, OptionalHeaders) {
  auto m = BusMessage::from_json("s", nlohmann::json::object(),
                                 {.correlation_id = "corr-1",
                                  .reply_on = "progress.1",
                                  .final_to = "final.1",
                                  .message_type = "order.v1",
                                  .trace_id = "trace-1",
                                  .msg_id = "id-1"});
  EXPECT_EQ(m.correlation_id(), "corr-1");
  EXPECT_EQ(m.reply_on(), "progress.1");
  EXPECT_EQ(m.final_to(), "final.1");
  EXPECT_EQ(m.message_type(), "order.v1");
  EXPECT_EQ(m.trace_id(), "trace-1");
  EXPECT_EQ(m.msg_id(), "id-1");
  EXPECT_EQ(m.header("X-REPLY-ON").value_or(""), "progress.1");  // case-insensitive
  EXPECT_FALSE(BusMessage::from_text("s", "x", {.ensure_trace = false}).header("x-trace-id").has_value());
}

TEST(BusMessage, CompressWritesGzipAndTheEncodingHeader) {
  const std::string text(10000, 'a');
  auto m = BusMessage::from_text("s", text, {.compress = true});
  EXPECT_EQ(m.content_encoding(), "gzip");
  EXPECT_LT(m.payload().size(), 200U);
  EXPECT_EQ(static_cast<unsigned char>(m.payload()[0]), 0x1f);  // gzip magic
  EXPECT_EQ(static_cast<unsigned char>(m.payload()[1]), 0x8b);
  std::string back;
  natbus::detail::gzip_decompress(m.payload(), 1 << 20, back);
  EXPECT_EQ(back, text);
}

TEST(BusMessage, AnyJsonSerializableType) {
  std::map<std::string, int> counts{{"a", 1}, {"b", 2}};
  EXPECT_EQ(BusMessage::from_json("s", counts).payload(), R"({"a":1,"b":2})");
  EXPECT_EQ(BusMessage::from_json("s", std::vector<int>{1, 2}).payload(), "[1,2]");
}

TEST(BusMessage, SetAddRemoveHeaders) {
  auto m = BusMessage::from_text("s", "x");
  m.set_header("X-Custom", "1").add_header("x-custom", "2");
  EXPECT_EQ(m.header("x-custom").value_or(""), "1");
  m.set_header("x-custom", "3");  // replaces both values
  int n = 0;
  for (const auto& [k, v] : m.headers()) n += (k == "x-custom" || k == "X-Custom");
  EXPECT_EQ(n, 1);
  EXPECT_EQ(m.remove_header("X-CUSTOM"), 1U);
  EXPECT_FALSE(m.header("x-custom").has_value());
  m.set_msg_id("abc");
  EXPECT_EQ(m.msg_id(), "abc");
}

namespace {
template <class F>
std::string invalid(F&& f) {
  try {
    f();
  } catch (const natbus::InvalidArgument& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST(BusMessage, BadInputIsAClearInvalidArgument) {
  EXPECT_NE(invalid([] { (void)BusMessage::from_text("", "x"); }).find("subject \"\""), std::string::npos);
  EXPECT_NE(invalid([] { (void)BusMessage::from_text("a b", "x"); }).find("whitespace"), std::string::npos);
  EXPECT_NE(invalid([] { (void)BusMessage::from_text("a.*", "x"); }).find("wildcard"), std::string::npos);
  EXPECT_NE(invalid([] { (void)BusMessage::from_text("a.>", "x"); }).find("wildcard"), std::string::npos);
  EXPECT_NE(invalid([] { (void)BusMessage::from_text("a..b", "x"); }).find("empty token"), std::string::npos);
  EXPECT_NE(invalid([] { (void)BusMessage::from_text("s", std::string_view("\xff\xfe", 2)); }).find("UTF-8"), std::string::npos);
  EXPECT_NE(invalid([] { (void)BusMessage::from_text("s", "x", {.headers = {{"bad\r\nkey", "v"}}}); }).find("CR or LF"), std::string::npos);
  EXPECT_NE(invalid([] {
              (void)BusMessage::from_text("s", "x", {.headers = {{"k", "v\r\nInjected: 1"}}});
            }).find("CR or LF"),
            std::string::npos);
  EXPECT_NE(invalid([] {
              (void)BusMessage::from_text("s", "x", {.headers = {{"k", "caf\xc3\xa9"}}});
            }).find("non-ASCII"),
            std::string::npos);
  EXPECT_NE(invalid([] { (void)BusMessage::from_text("s", "x", {.sender = "a\nb"}); }).find("sender"), std::string::npos);
  EXPECT_NE(invalid([] { (void)BusMessage::from_text("s", "x", {.reply_on = "r.*"}); }).find("reply_on"), std::string::npos);
  // nlohmann refuses to serialize a string that is not UTF-8
  EXPECT_NE(invalid([] { (void)BusMessage::from_json("s", nlohmann::json{{"k", std::string("\xff")}}); }).find("JSON"), std::string::npos);
  auto m = BusMessage::from_text("s", "x");
  EXPECT_NE(invalid([&] { m.set_header("k", "a\rb"); }).find("CR or LF"), std::string::npos);
  EXPECT_NE(invalid([&] { m.set_header("a:b", "v"); }).find("':'"), std::string::npos);
}

TEST(BusMessage, OneBufferLaidOutAsOnTheWire) {
  auto m = BusMessage::from_text("orders.created", "hello",
                                 {.correlation_id = "c-1", .headers = {{"x-tag", "a"}}, .trace_id = "t-1", .msg_id = "m-1"});
  const std::string sent_at(m.sent_at());
  EXPECT_EQ(m.wire_headers(),
            "NATS/1.0\r\ncontent-type: text/plain; charset=utf-8\r\nx-trace-id: t-1\r\nx-correlation-id: c-1\r\n"
            "x-sent-at: " +
                sent_at + "\r\nNats-Msg-Id: m-1\r\nx-tag: a\r\n\r\n");
  EXPECT_EQ(m.wire_size(), m.wire_headers().size() + 5);
  EXPECT_EQ(m.payload(), "hello");
  EXPECT_EQ(m.subject(), "orders.created");

  // A copy is deep; changing headers keeps subject and payload.
  BusMessage copy = m;
  copy.add_header("x-tag", "b");
  EXPECT_EQ(copy.header_values("X-TAG"), (std::vector<std::string_view>{"a", "b"}));
  EXPECT_EQ(m.header_values("x-tag"), (std::vector<std::string_view>{"a"}));
  EXPECT_EQ(copy.remove_header("x-tag"), 2U);
  EXPECT_FALSE(copy.header("x-tag"));
  EXPECT_EQ(copy.subject(), "orders.created");
  EXPECT_EQ(copy.payload(), "hello");

  // Removing every header leaves a message without a header block (sent as a plain PUB).
  for (const auto& name : names(copy)) copy.remove_header(name);
  EXPECT_TRUE(copy.wire_headers().empty());
  EXPECT_EQ(copy.wire_size(), 5U);
  EXPECT_EQ(copy.payload(), "hello");

  // Moved-from messages are empty, not dangling.
  BusMessage moved = std::move(m);
  EXPECT_EQ(moved.payload(), "hello");
  EXPECT_TRUE(m.subject().empty());  // NOLINT(bugprone-use-after-move): documented state
  EXPECT_TRUE(m.headers().empty());  // NOLINT(bugprone-use-after-move)
}

TEST(BusMessage, ManyUserHeadersOverrideInPlace) {
  // More user headers than the inline list holds; the last value of a repeated name wins, in the
  // position of the first.
  auto m = BusMessage::from_text("s", "x",
                                 {.headers = {{"x-h0", "0"},
                                              {"x-h1", "1"},
                                              {"x-h2", "2"},
                                              {"x-h3", "3"},
                                              {"x-h4", "4"},
                                              {"x-h5", "5"},
                                              {"x-h6", "6"},
                                              {"x-h7", "7"},
                                              {"x-h8", "8"},
                                              {"x-h9", "9"},
                                              {"x-h10", "10"},
                                              {"x-h11", "11"},
                                              {"x-h12", "12"},
                                              {"x-h13", "13"},
                                              {"x-h14", "14"},
                                              {"X-H0", "last"},
                                              {"Content-Type", "application/x"}}});
  auto hs = m.headers();
  ASSERT_EQ(hs.size(), 4U + 15U);
  EXPECT_EQ(hs[0].first, "Content-Type");
  EXPECT_EQ(hs[0].second, "application/x");
  EXPECT_EQ(hs[4].first, "X-H0");
  EXPECT_EQ(hs[4].second, "last");
  EXPECT_EQ(hs.back().first, "x-h14");
}

TEST(BusMessage, BareMessagesCarryOnlyWhatIsAsked) {
  auto bare = BusMessage::from_bytes("s", std::string_view("x"), {.natbus_headers = false});
  EXPECT_TRUE(bare.wire_headers().empty());
  EXPECT_EQ(bare.wire_size(), 1U);
  auto with_id = BusMessage::from_bytes("s", std::string_view("x"), {.headers = {{"x-a", "1"}}, .msg_id = "m", .natbus_headers = false});
  EXPECT_EQ(with_id.wire_headers(), "NATS/1.0\r\nNats-Msg-Id: m\r\nx-a: 1\r\n\r\n");
  auto gz = BusMessage::from_text("s", "hello hello hello", {.compress = true, .natbus_headers = false});
  EXPECT_EQ(gz.content_encoding(), "gzip");
  EXPECT_EQ(gz.headers().size(), 1U);
}
