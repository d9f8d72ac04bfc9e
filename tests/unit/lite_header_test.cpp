// <natbus/lite.hpp> alone is enough to publish and consume text and bytes, and it leaves out
// nlohmann's headers (json_fwd too), {fmt}, <functional> and <memory> (README, "Headers"). This file includes nothing
// else before the checks: it fails to compile when a light header starts to need them.
#include <natbus/lite.hpp>

#ifdef INCLUDE_NLOHMANN_JSON_HPP_
#error "<natbus/lite.hpp> includes <nlohmann/json.hpp>"
#endif
#ifdef FMT_FORMAT_H_
#error "<natbus/lite.hpp> includes <fmt/format.h>"
#endif
#if defined(__GLIBCXX__) && defined(_GLIBCXX_FUNCTIONAL)
#error "<natbus/lite.hpp> includes <functional>"
#endif
#if defined(__GLIBCXX__) && defined(_GLIBCXX_MEMORY)
#error "<natbus/lite.hpp> includes <memory>"
#endif

#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <string>
#include <vector>

namespace {

using natbus::BusMessage;
using natbus::NatsBus;
using natbus::ReceivedMessage;
using natbus::Task;

// Every kind of subscription, publish, request and reply, written against the light header
// only: the handler templates must instantiate without nlohmann's header.
[[maybe_unused]] Task<void> light_service(NatsBus& bus) {
  auto on_push = [](ReceivedMessage& m) -> Task<void> { co_await m.ack(); };
  auto on_pull = [](ReceivedMessage m) -> Task<void> { co_await m.ack(); };  // the older by-value form
  auto on_core = [](ReceivedMessage& m) -> Task<void> {
    (void)m.as_text();
    co_return;
  };
  auto push = co_await bus.push_subscribe("lite.push", on_push, {.durable = "lite_push"});
  auto pull = co_await bus.pull_subscribe("lite.pull", on_pull, {.durable = "lite_pull"});
  auto core = co_await bus.subscribe_core("lite.core", on_core);
  auto fetcher = co_await bus.pull_subscribe("lite.fetch", {.durable = "lite_fetch"});
  auto batch = co_await fetcher.fetch(10, std::chrono::seconds(1));
  for (auto& m : batch) co_await m.ack();
  auto ack = co_await bus.publish(BusMessage::from_text("lite.push", "hello"));
  (void)ack.sequence;
  auto future = co_await bus.publish_async(BusMessage::from_bytes("lite.pull", std::string_view("bytes")));
  (void)co_await std::move(future);
  auto reply = co_await bus.request(BusMessage::from_text("lite.core", "question"), std::chrono::seconds(1));
  co_await bus.reply_text(reply, "answer");
  co_await push.close();
  co_await pull.close();
  co_await core.close();
}

}  // namespace

TEST(LiteHeader, BuildsTextAndByteMessagesWithTheContractHeaders) {
  auto text = BusMessage::from_text("lite.text", "hello", {.sender = "lite-svc"});
  EXPECT_EQ(text.payload(), "hello");
  EXPECT_EQ(text.content_type(), "text/plain; charset=utf-8");
  EXPECT_EQ(text.header("x-sender"), "lite-svc");
  EXPECT_TRUE(text.header("x-correlation-id").has_value());

  const std::vector<std::uint8_t> raw{0x00, 0xff, 0x10};
  auto bytes = BusMessage::from_bytes("lite.bytes", raw);
  EXPECT_EQ(bytes.content_type(), "application/octet-stream");
  ASSERT_EQ(bytes.payload().size(), 3U);
  EXPECT_EQ(static_cast<unsigned char>(bytes.payload()[1]), 0xffU);

  const std::array<std::byte, 2> arr{std::byte{1}, std::byte{2}};
  EXPECT_EQ(BusMessage::from_bytes("lite.array", arr).payload().size(), 2U);
}

TEST(LiteHeader, BadInputStillGetsTheNamedError) {
  EXPECT_THROW((void)BusMessage::from_text("bad subject", "x"), natbus::InvalidArgument);
  EXPECT_THROW((void)BusMessage::from_text("ok.subject", std::string("\xff\xfe")), natbus::InvalidArgument);
}
