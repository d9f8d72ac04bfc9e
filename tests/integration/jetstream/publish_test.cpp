// JetStream publishing: PubAcks, the header contract on the wire, pipelining, dedup, errors.
#include <gtest/gtest.h>

#include <deque>
#include <fstream>

#include <regex>

#include "bus/bus_core.hpp"
#include "message/gzip.hpp"
#include "support/bus_test.hpp"

using namespace std::chrono_literals;
using natbus::BusMessage;
using natbus::NatsBus;
using natbus::NatsConfig;
using natbus::PubAck;
using natbus::Task;
using namespace natbus::testing;

TEST(Publish, ReturnsThePubAck) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server, "P1", "p1.*")};
    co_await bus.connect();
    for (std::uint64_t i = 1; i <= 5; ++i) {
      auto msg = BusMessage::from_json("p1.a", {{"i", i}});
      PubAck ack = co_await bus.publish(std::move(msg));
      EXPECT_EQ(ack.stream, "P1");
      EXPECT_EQ(ack.sequence, i);
      EXPECT_FALSE(ack.duplicate);
    }
    const nlohmann::json body = {{"k", "v"}};  // built before co_await: GCC 12 rejects braced lists inside it
    const PubAck j = co_await bus.publish_json("p1.b", body);
    EXPECT_EQ(j.sequence, 6U);
    const PubAck b = co_await bus.publish_bytes("p1.c", std::string_view("\x00\x01", 2));
    EXPECT_EQ(b.sequence, 7U);
    auto info = co_await bus.stream_info("P1");
    EXPECT_EQ(info.messages, 7U);
    co_await bus.close();
  }());
}

TEST(Publish, HeaderContractOnTheWire) {
  NatsServer server;
  RawSubscriber raw(server, "wire.>");
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server, "WIRE", "wire.>")};
    co_await bus.connect();
    auto msg = BusMessage::from_json("wire.json", {{"hello", "world"}},
                                     {.sender = "orders-svc",
                                      .correlation_id = "corr-42",
                                      .reply_on = "replies.progress",
                                      .final_to = "replies.final",
                                      .message_type = "order.created",
                                      .msg_id = "msg-1"});
    co_await bus.publish(std::move(msg));
    auto text = BusMessage::from_text("wire.text", "héllo", {.compress = true});
    co_await bus.publish(std::move(text));
    const std::vector<std::uint8_t> jpeg = {0xFF, 0xD8, 0xFF, 0xE0, 0x00};
    auto img = BusMessage::from_bytes("wire.jpeg", jpeg, {.headers = {{"content-type", "image/jpeg"}}});
    co_await bus.publish(std::move(img));
    co_await bus.close();
  }());
  const std::regex uuid("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  const std::regex sent_at(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+00:00$)");

  auto j = raw.next();
  EXPECT_EQ(j.subject, "wire.json");
  EXPECT_EQ(j.data, R"({"hello":"world"})");
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.headers) {
    keys.push_back(k);
    EXPECT_EQ(v.size(), 1U) << k;
  }
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"Nats-Msg-Id", "content-type", "x-correlation-id", "x-final-to", "x-message-type", "x-reply-on",
                                            "x-sender", "x-sent-at", "x-trace-id"}));
  EXPECT_EQ(j.headers["content-type"][0], "application/json");
  EXPECT_EQ(j.headers["x-sender"][0], "orders-svc");
  EXPECT_EQ(j.headers["x-correlation-id"][0], "corr-42");
  EXPECT_EQ(j.headers["x-reply-on"][0], "replies.progress");
  EXPECT_EQ(j.headers["x-final-to"][0], "replies.final");
  EXPECT_EQ(j.headers["x-message-type"][0], "order.created");
  EXPECT_EQ(j.headers["Nats-Msg-Id"][0], "msg-1");
  EXPECT_TRUE(std::regex_match(j.headers["x-trace-id"][0], uuid));
  EXPECT_TRUE(std::regex_match(j.headers["x-sent-at"][0], sent_at));

  auto t = raw.next();
  EXPECT_EQ(t.headers["content-type"][0], "text/plain; charset=utf-8");
  EXPECT_EQ(t.headers["content-encoding"][0], "gzip");
  EXPECT_TRUE(std::regex_match(t.headers["x-correlation-id"][0], uuid));
  std::string plain;
  natbus::detail::gzip_decompress(t.data, 1 << 20, plain);
  EXPECT_EQ(plain, "héllo");
  EXPECT_EQ(t.headers.count("x-sender"), 0U);

  auto i = raw.next();
  EXPECT_EQ(i.headers["content-type"], std::vector<std::string>{"image/jpeg"});
  EXPECT_EQ(i.data, std::string("\xFF\xD8\xFF\xE0\x00", 5));
}

TEST(Publish, AsyncPipelineWithBoundedWindow) {
  NatsServer server;
  NatsConfig cfg = stream_config(server, "ASYNC", "async.*");
  cfg.max_pending_publishes = 64;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    std::vector<natbus::PublishFuture> futures;
    std::size_t max_seen = 0;
    for (int i = 0; i < 2000; ++i) {
      auto msg = BusMessage::from_text("async.x", std::to_string(i));
      futures.push_back(co_await bus.publish_async(std::move(msg)));
      max_seen = std::max(max_seen, bus.pending_publishes());
    }
    EXPECT_LE(max_seen, 64U);  // backpressure held the window
    co_await bus.publish_async_complete(30s);
    EXPECT_EQ(bus.pending_publishes(), 0U);
    std::uint64_t expected = 1;
    for (auto& f : futures) {
      EXPECT_TRUE(f.ready());
      PubAck a = co_await std::move(f);
      EXPECT_EQ(a.sequence, expected++);
    }
    co_await bus.close();
  }());
}

// The window counts publishes, not bytes: 4,096 large messages in flight used to sit in cnats'
// write buffer at once (256 MiB of 64 KiB messages), and each partial write moved all of it.
// A publish now waits while the buffer is above its high water mark.
TEST(Publish, LargeMessagesInTheWindowKeepTheWriteBufferBounded) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsConfig cfg = stream_config(server, "PBIG", "pbig.*");
    cfg.max_pending_publishes = 4096;
    NatsBus bus{cfg};
    co_await bus.connect();
    constexpr int kMessages = 1000;
    const std::string payload(64 * 1024, 'x');
    natsConnection* nc = natbus::detail::bus_core_of(bus)->nc();
    int most_buffered = 0;
    std::deque<natbus::PublishFuture> inflight;
    for (int i = 0; i < kMessages; ++i) {
      auto msg = BusMessage::from_bytes("pbig.a", payload);
      inflight.push_back(co_await bus.publish_async(std::move(msg)));
      most_buffered = std::max(most_buffered, natsConnection_Buffered(nc));
    }
    std::uint64_t last = 0;
    for (auto& f : inflight) {
      const PubAck ack = co_await std::move(f);
      EXPECT_GT(ack.sequence, last);
      last = ack.sequence;
    }
    EXPECT_EQ(last, static_cast<std::uint64_t>(kMessages));
    // The high water mark (1 MiB) plus one message; before: the whole burst (~64 MiB).
    EXPECT_LE(most_buffered, natbus::detail::BusCore::kWriteHighWater + 70 * 1024) << "bytes waiting in cnats' write buffer";
    co_await bus.delete_stream("PBIG");
    co_await bus.close();
  }());
}

TEST(Publish, MsgIdDeduplicatesOnTheServer) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server, "DEDUP", "dedup.*")};
    co_await bus.connect();
    auto first = BusMessage::from_text("dedup.a", "one", {.msg_id = "order-1"});
    auto again = BusMessage::from_text("dedup.a", "one", {.msg_id = "order-1"});
    const PubAck a = co_await bus.publish(std::move(first));
    const PubAck b = co_await bus.publish(std::move(again));
    EXPECT_FALSE(a.duplicate);
    EXPECT_TRUE(b.duplicate);
    EXPECT_EQ(a.sequence, b.sequence);
    auto info = co_await bus.stream_info("DEDUP");
    EXPECT_EQ(info.messages, 1U);
    co_await bus.close();
  }());
}

TEST(Publish, DedupeWindowDropsRepeatedCorrelationIds) {
  NatsServer server;
  NatsConfig cfg = stream_config(server, "CDEDUP", "cdedup.*");
  cfg.dedupe_window = 2s;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    for (int i = 0; i < 3; ++i) {
      auto m = BusMessage::from_text("cdedup.a", "x", {.correlation_id = "same-corr"});
      const PubAck a = co_await bus.publish(std::move(m));
      EXPECT_EQ(a.duplicate, i > 0);
    }
    auto other = BusMessage::from_text("cdedup.a", "x", {.correlation_id = "other-corr"});
    EXPECT_FALSE((co_await bus.publish(std::move(other))).duplicate);
    auto info = co_await bus.stream_info("CDEDUP");
    EXPECT_EQ(info.messages, 2U);
    co_await bus.close();
  }());
}

TEST(Publish, DedupeWindowCountsOnlyAcknowledgedPublishesSoRetriesGoOut) {
  // A first attempt that fails leaves its correlation id unrecorded: the retry is published.
  NatsServer server(ServerOptions{.max_payload = 4096});
  NatsConfig cfg = stream_config(server, "RDEDUP", "rdedup.*");
  cfg.dedupe_window = 30s;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    // 1. Too large the first time.
    auto big = BusMessage::from_text("rdedup.a", std::string(8000, 'x'), {.correlation_id = "big-corr"});
    bool refused = false;
    try {
      co_await bus.publish(std::move(big));
    } catch (const natbus::PayloadTooLargeError&) {
      refused = true;
    }
    EXPECT_TRUE(refused);
    auto small = BusMessage::from_text("rdedup.a", "fits", {.correlation_id = "big-corr"});
    const PubAck a = co_await bus.publish(std::move(small));
    EXPECT_FALSE(a.duplicate) << "the retry of a refused publish was dropped as a duplicate";
    EXPECT_GT(a.sequence, 0U);
    // 2. No stream the first time; the stream appears; the retry is stored.
    auto early = BusMessage::from_text("late.a", "x", {.correlation_id = "ns-corr"});
    bool no_stream = false;
    try {
      co_await bus.publish(std::move(early));
    } catch (const natbus::NoStreamError&) {
      no_stream = true;
    }
    EXPECT_TRUE(no_stream);
    const std::vector<std::string> subjects{"late.*"};
    co_await bus.create_stream("LATE", subjects);
    auto retry = BusMessage::from_text("late.a", "x", {.correlation_id = "ns-corr"});
    const PubAck b = co_await bus.publish(std::move(retry));
    EXPECT_FALSE(b.duplicate) << "the retry after a no-stream error was dropped as a duplicate";
    EXPECT_EQ(b.sequence, 1U);
    // Once acknowledged, the window does drop the same id.
    auto again = BusMessage::from_text("late.a", "x", {.correlation_id = "ns-corr"});
    EXPECT_TRUE((co_await bus.publish(std::move(again))).duplicate);
    EXPECT_EQ((co_await bus.stream_info("LATE")).messages, 1U);
    co_await bus.close();
  }());
}

TEST(Publish, NoStreamForSubject) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    auto msg = BusMessage::from_text("nobody.listens", "x");
    try {
      co_await bus.publish(std::move(msg));
      ADD_FAILURE() << "expected NoStreamError";
    } catch (const natbus::NoStreamError& e) {
      EXPECT_TRUE(e.retryable());
      EXPECT_NE(std::string(e.what()).find("nobody.listens"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("no stream"), std::string::npos) << e.what();
    }
    co_await bus.close();
  }());
}

TEST(Publish, PayloadOverMaxPayloadKeepsTheConnection) {
  NatsServer server(ServerOptions{.max_payload = 4096});
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server, "BIG", "big.*")};
    co_await bus.connect();
    auto huge = BusMessage::from_bytes("big.x", std::string(8000, 'x'));
    try {
      co_await bus.publish(std::move(huge));
      ADD_FAILURE() << "expected PayloadTooLargeError";
    } catch (const natbus::PayloadTooLargeError& e) {
      EXPECT_NE(std::string(e.what()).find("4096"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(bus.connected());
    auto ok = BusMessage::from_bytes("big.x", std::string(100, 'x'));
    EXPECT_EQ((co_await bus.publish(std::move(ok))).sequence, 1U);
    co_await bus.close();
  }());
}

TEST(Publish, TimeoutWhenTheServerIsFrozen) {
  NatsServer server;
  NatsConfig cfg = stream_config(server, "FROZEN", "frozen.*");
  cfg.publish_timeout = 300ms;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    server.freeze();
    auto msg = BusMessage::from_text("frozen.a", "x", {.msg_id = "f-1"});
    try {
      co_await bus.publish(std::move(msg));
      ADD_FAILURE() << "expected TimeoutError";
    } catch (const natbus::TimeoutError& e) {
      EXPECT_TRUE(e.retryable());
      EXPECT_NE(std::string(e.what()).find("same msg_id"), std::string::npos) << e.what();
    }
    server.thaw();
    // The application retries with the same msg_id: stored once.
    auto retry = BusMessage::from_text("frozen.a", "x", {.msg_id = "f-1"});
    const PubAck ack = co_await bus.publish(std::move(retry));
    EXPECT_EQ(ack.sequence, 1U);
    auto info = co_await bus.stream_info("FROZEN");
    EXPECT_EQ(info.messages, 1U);
    co_await bus.close();
  }());
}

TEST(Publish, CloseWaitsForPendingPubAcks) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{stream_config(server, "DRAIN", "drain.*")};
    co_await bus.connect();
    std::vector<natbus::PublishFuture> futures;
    for (int i = 0; i < 500; ++i) {
      auto msg = BusMessage::from_text("drain.a", "x");
      futures.push_back(co_await bus.publish_async(std::move(msg)));
    }
    co_await bus.close();
    int acked = 0;
    for (auto& f : futures) {
      EXPECT_TRUE(f.ready());
      acked += (co_await std::move(f)).sequence > 0 ? 1 : 0;
    }
    EXPECT_EQ(acked, 500);
  }());
}

namespace {
std::size_t rss_kb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return static_cast<std::size_t>(std::stoul(line.substr(6)));
  }
  return 0;
}
}  // namespace

TEST(Publish, OneLongRequestDoesNotPinTheReplyTable) {
  // A request that waits an hour while 500,000 publishes come and go: the reply table holds
  // what is outstanding, not everything since that request.
  constexpr int kCount = 500000;
  NatsServer server;
  NatsConfig cfg = stream_config(server, "PIN", "pin.*");
  cfg.stream.storage = natbus::StorageType::memory;
  std::size_t table_at_100k = 0;
  std::size_t table_at_end = 0;
  std::size_t rss_at_100k = 0;
  std::size_t rss_at_end = 0;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{cfg};
    co_await bus.connect();
    auto silent = [](natbus::ReceivedMessage) -> Task<void> { co_return; };  // never answers
    auto sub = co_await bus.subscribe_core("slowreq.x", silent);
    bool answered = false;
    natbus::spawn([](NatsBus& b, bool& done) -> Task<void> {
      auto req = BusMessage::from_text("slowreq.x", "take your time");
      try {
        (void)co_await b.request(std::move(req), std::chrono::hours(1));
      } catch (const natbus::Error&) {
      }
      done = true;
    }(bus, answered));
    co_await natbus::yield();
    std::deque<natbus::PublishFuture> window;
    for (int i = 0; i < kCount; ++i) {
      auto msg = BusMessage::from_text("pin.a", "x", {.natbus_headers = false});
      window.push_back(co_await bus.publish_async(std::move(msg)));
      if (window.size() >= 2048) {
        (void)co_await std::move(window.front());
        window.pop_front();
      }
      if (i == 100000) {
        table_at_100k = natbus::detail::bus_core_of(bus)->mux().table_size();
        rss_at_100k = rss_kb();
      }
    }
    while (!window.empty()) {
      (void)co_await std::move(window.front());
      window.pop_front();
    }
    table_at_end = natbus::detail::bus_core_of(bus)->mux().table_size();
    rss_at_end = rss_kb();
    EXPECT_FALSE(answered);
    co_await bus.close();
  }());
  std::printf("[publish] reply table with one long request: %zu entries at 100k publishes, %zu at %d; RSS %zu -> %zu kB\n", table_at_100k,
              table_at_end, kCount, rss_at_100k, rss_at_end);
  EXPECT_LT(table_at_100k, 10000U);
  EXPECT_LT(table_at_end, 10000U);
  if (!kSanitized) {  // sanitizer allocators keep freed memory: RSS says nothing there
    EXPECT_LT(rss_at_end, rss_at_100k + 8 * 1024) << "RSS grew by more than 8 MB";
  }
}
