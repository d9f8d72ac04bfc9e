// ReceivedMessage for messages natbus did not write: another client's headers (any case,
// several values), gzip from elsewhere, and payloads that are not what they claim.
#include <gtest/gtest.h>

#include <algorithm>

#include "message/gzip.hpp"
#include "support/bus_test.hpp"

using namespace std::chrono_literals;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::ReceivedMessage;
using natbus::Task;
using namespace natbus::testing;

namespace {

/// Publishes with a plain cnats connection (not natbus): exactly these headers and bytes.
void raw_publish(const NatsServer& server, const std::string& subject, const std::string& data,
                 const std::vector<std::pair<std::string, std::string>>& headers) {
  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, server.url().c_str()), NATS_OK);
  natsMsg* m = nullptr;
  natsMsg_Create(&m, subject.c_str(), nullptr, data.data(), static_cast<int>(data.size()));
  for (const auto& [k, v] : headers) natsMsgHeader_Add(m, k.c_str(), v.c_str());
  EXPECT_EQ(natsConnection_PublishMsg(nc, m), NATS_OK);
  natsConnection_Flush(nc);
  natsMsg_Destroy(m);
  natsConnection_Destroy(nc);
}

NatsConfig stream_config(const NatsServer& server) {
  NatsConfig c = config_for(server);
  c.stream_create = true;
  c.stream_name = "RX";
  c.stream_subjects = {"rx.>"};
  c.deliver_policy = natbus::DeliverPolicy::all;  // the messages are published before the consumer exists
  return c;
}

Task<std::vector<ReceivedMessage>> fetch_all(NatsBus& bus, int n) {
  auto sub = co_await bus.pull_subscribe("rx.>", {.durable = "rx"});
  std::vector<ReceivedMessage> out;
  for (int i = 0; i < 10 && static_cast<int>(out.size()) < n; ++i) {
    auto batch = co_await sub.fetch(n - static_cast<int>(out.size()), 2s);
    for (auto& m : batch) out.push_back(std::move(m));
  }
  co_return out;
}

}  // namespace

TEST(Receive, HeadersFromAnotherClientAnyCaseAndSeveralValues) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server)};
    co_await bus.connect();
    raw_publish(server, "rx.a", R"({"k": [1, 2]})",
                {{"Content-Type", "application/json; charset=utf-8"},
                 {"X-Trace-Id", "trace-upper"},
                 {"X-CORRELATION-ID", "corr-upper"},
                 {"x-tag", "one"},
                 {"x-tag", "two"},
                 {"X-Sender", "python-svc"}});
    auto msgs = co_await fetch_all(bus, 1);
    EXPECT_EQ(msgs.size(), 1U);
    if (!msgs.empty()) {
      const auto& m = msgs[0];
      EXPECT_EQ(m.subject(), "rx.a");
      EXPECT_EQ(m.trace_id(), "trace-upper");
      EXPECT_EQ(m.correlation_id(), "corr-upper");
      EXPECT_EQ(m.sender(), "python-svc");
      EXPECT_EQ(m.content_type(), "application/json; charset=utf-8");
      EXPECT_EQ(m.header("CONTENT-TYPE").value_or(""), "application/json; charset=utf-8");
      EXPECT_EQ(m.header_values("X-Tag"), (std::vector<std::string_view>{"one", "two"}));
      EXPECT_EQ(m.headers().size(), 6U);  // five names, x-tag twice
      EXPECT_EQ(m.as_json()["k"][1], 2);
      EXPECT_FALSE(m.header("x-missing").has_value());
    }
    co_await bus.close();
  }());
}

// natbus reads a received message's header block in place; cnats rewrites the block when it
// lifts the headers into its map (it does for every message without a payload, to look for a
// 503). Both ways must read the same.
TEST(Receive, HeadersReadTheSameWhetherCnatsLiftedThemOrNot) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    std::vector<ReceivedMessage> got;
    auto keep = [&got](ReceivedMessage& m) -> Task<void> {
      got.push_back(std::move(m));
      co_return;
    };
    auto sub = co_await bus.subscribe_core("rx.lift.*", keep);
    const std::vector<std::pair<std::string, std::string>> headers{
        {"X-Trace-Id", "t-1"}, {"x-tag", "one"}, {"X-Tag", "two"}, {"x-spaced", "  padded value\t "}, {"Content-Type", "text/plain"}};
    raw_publish(server, "rx.lift.payload", "body", headers);
    raw_publish(server, "rx.lift.empty", "", headers);
    const bool both = co_await eventually([&] { return got.size() == 2; }, 10s);
    EXPECT_TRUE(both) << got.size();
    if (got.size() == 2) {
      for (const auto& m : got) {
        SCOPED_TRACE(std::string(m.subject()));
        EXPECT_EQ(m.trace_id(), "t-1");
        EXPECT_EQ(m.header("x-trace-id").value_or("?"), "t-1");
        EXPECT_EQ(m.header("X-Tag").value_or("?"), "two") << "an exact match first";
        EXPECT_EQ(m.header("x-spaced").value_or("?"), "padded value");
        EXPECT_EQ(m.content_type(), "text/plain");
        auto tags = m.header_values("X-TAG");
        std::sort(tags.begin(), tags.end());
        EXPECT_EQ(tags, (std::vector<std::string_view>{"one", "two"}));
        EXPECT_EQ(m.headers().size(), 5U);
        EXPECT_FALSE(m.header("x-missing").has_value());
      }
      EXPECT_EQ(got[0].payload(), "body");
      EXPECT_EQ(got[1].payload(), "");
    }
    co_await bus.close();
  }());
}

TEST(Receive, MessagesWithoutNatbusHeadersHaveEmptyAccessors) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server)};
    co_await bus.connect();
    raw_publish(server, "rx.plain", "just bytes", {});
    auto msgs = co_await fetch_all(bus, 1);
    EXPECT_EQ(msgs.size(), 1U);
    if (!msgs.empty()) {
      const auto& m = msgs[0];
      EXPECT_EQ(m.trace_id(), "");
      EXPECT_EQ(m.correlation_id(), "");
      EXPECT_EQ(m.sender(), "");
      EXPECT_EQ(m.content_type(), "");
      EXPECT_EQ(m.sent_at(), "");
      EXPECT_TRUE(m.headers().empty());
      EXPECT_EQ(m.as_text(), "just bytes");
      EXPECT_EQ(m.payload(), "just bytes");
    }
    co_await bus.close();
  }());
}

TEST(Receive, GzipFromElsewhereIsDecompressedTransparently) {
  NatsServer server;
  const std::string text = "compressed by someone else, " + std::string(5000, 'z');
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server)};
    co_await bus.connect();
    raw_publish(server, "rx.gz", natbus::detail::gzip_compress(text), {{"Content-Encoding", "GZIP"}, {"content-type", "text/plain"}});
    auto msgs = co_await fetch_all(bus, 1);
    EXPECT_EQ(msgs.size(), 1U);
    if (!msgs.empty()) {
      EXPECT_EQ(msgs[0].as_text(), text);
      EXPECT_EQ(msgs[0].data().size(), text.size());
      EXPECT_LT(msgs[0].raw_payload().size(), 200U);
    }
    co_await bus.close();
  }());
}

TEST(Receive, BadPayloadsAreDecodeErrorsAndTheMessageStaysUsable) {
  NatsServer server;
  NatsConfig cfg = stream_config(server);
  cfg.max_decompressed_size = 64 * 1024;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    const std::string z = natbus::detail::gzip_compress("hello there");
    raw_publish(server, "rx.1", "not gzip at all, really not", {{"content-encoding", "gzip"}});
    raw_publish(server, "rx.2", z.substr(0, z.size() - 6), {{"content-encoding", "gzip"}});                                 // truncated
    raw_publish(server, "rx.3", natbus::detail::gzip_compress(std::string(1 << 20, 'a')), {{"content-encoding", "gzip"}});  // bomb
    raw_publish(server, "rx.4", "x", {{"content-encoding", "br"}});
    raw_publish(server, "rx.5", std::string("\xff\xfe\xfd", 3), {{"content-type", "image/jpeg"}});
    raw_publish(server, "rx.6", "{not json", {{"content-type", "application/json"}});
    auto msgs = co_await fetch_all(bus, 6);
    EXPECT_EQ(msgs.size(), 6U);
    if (msgs.size() == 6) {
      for (int i = 0; i < 3; ++i) {
        try {
          (void)msgs[static_cast<std::size_t>(i)].payload();
          ADD_FAILURE() << "message " << i << " decoded";
        } catch (const natbus::DecodeError& e) {
          EXPECT_NE(std::string(e.what()).find("rx."), std::string::npos) << e.what();  // names the subject
        }
      }
      try {
        (void)msgs[3].payload();
        ADD_FAILURE() << "unknown encoding decoded";
      } catch (const natbus::DecodeError& e) {
        EXPECT_NE(std::string(e.what()).find("\"br\""), std::string::npos) << e.what();
      }
      EXPECT_EQ(msgs[3].raw_payload(), "x");
      EXPECT_THROW((void)msgs[4].as_text(), natbus::DecodeError);
      EXPECT_EQ(msgs[4].data().size(), 3U);
      EXPECT_THROW((void)msgs[5].as_json(), natbus::DecodeError);
      // Every bad message can still be acknowledged.
      for (auto& m : msgs) co_await m.term();
    }
    co_await bus.close();
  }());
}

namespace {
struct Order {
  int id = 0;
  std::string item;
};
void from_json(const nlohmann::json& j, Order& o) {
  j.at("id").get_to(o.id);
  j.at("item").get_to(o.item);
}
}  // namespace

TEST(Receive, AsJsonIntoATypeAndMismatch) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server)};
    co_await bus.connect();
    raw_publish(server, "rx.o1", R"({"id": 7, "item": "book"})", {});
    raw_publish(server, "rx.o2", R"({"id": "seven"})", {});
    auto msgs = co_await fetch_all(bus, 2);
    EXPECT_EQ(msgs.size(), 2U);
    if (msgs.size() == 2) {
      const auto o = msgs[0].as_json<Order>();
      EXPECT_EQ(o.id, 7);
      EXPECT_EQ(o.item, "book");
      EXPECT_THROW((void)msgs[1].as_json<Order>(), natbus::DecodeError);
    }
    co_await bus.close();
  }());
}
