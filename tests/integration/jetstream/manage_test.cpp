// JetStream management beyond create/info/delete: purge by subject, keep and sequence, deleting
// one message, listings that page through the server's limits, the account's info, and the
// bad arguments natbus refuses before any round trip.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <set>

#include "support/bus_test.hpp"

using namespace std::chrono_literals;
using natbus::BusMessage;
using natbus::NatsBus;
using natbus::Task;
using namespace natbus::testing;

namespace {

/// The error text of the call `f` makes (thrown before or after its first suspension), or ""
/// when it succeeded. `f` is a named lambda (GCC 12: no lambda temporaries inside co_await).
template <class F>
Task<std::string> failure(F& f) {
  try {
    (void)co_await f();
  } catch (const natbus::Error& e) {
    co_return e.what();
  }
  co_return "";
}

Task<void> publish_to(NatsBus& bus, const std::string& subject, int n) {
  for (int i = 0; i < n; ++i) {
    auto m = BusMessage::from_text(subject, std::to_string(i));
    (void)co_await bus.publish(std::move(m));
  }
}

}  // namespace

TEST(Manage, PurgeBySubjectKeepAndSequenceRemovesExactlyThose) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    const std::vector<std::string> subjects{"pg.>"};
    (void)co_await bus.create_stream("PG", subjects, {.storage = natbus::StorageType::memory});
    co_await publish_to(bus, "pg.a", 10);  // 1..10
    co_await publish_to(bus, "pg.b", 10);  // 11..20

    const std::uint64_t kept3 = co_await bus.purge_stream("PG", {.subject = "pg.a", .keep = 3});
    EXPECT_EQ(kept3, 7U);
    auto info = co_await bus.stream_info("PG");
    EXPECT_EQ(info.messages, 13U);
    EXPECT_EQ(info.first_sequence, 8U) << "pg.a's newest three (8, 9, 10) stay";

    const std::uint64_t below15 = co_await bus.purge_stream("PG", {.sequence = 15});
    EXPECT_EQ(below15, 7U) << "8, 9, 10 and 11..14";
    info = co_await bus.stream_info("PG");
    EXPECT_EQ(info.messages, 6U);
    EXPECT_EQ(info.first_sequence, 15U);

    const std::uint64_t b_gone = co_await bus.purge_stream("PG", {.subject = "pg.b"});
    EXPECT_EQ(b_gone, 6U);
    info = co_await bus.stream_info("PG");
    EXPECT_EQ(info.messages, 0U);

    // Refused before any round trip, naming what is wrong; nothing is purged.
    co_await publish_to(bus, "pg.a", 2);
    auto purge_both = [&] { return bus.purge_stream("PG", {.keep = 1, .sequence = 3}); };
    const std::string both = co_await failure(purge_both);
    EXPECT_NE(both.find("keep (1) and sequence (3)"), std::string::npos) << both;
    auto purge_bad = [&] { return bus.purge_stream("PG", {.subject = "pg..a"}); };
    const std::string bad_subject = co_await failure(purge_bad);
    EXPECT_NE(bad_subject.find("pg..a"), std::string::npos) << bad_subject;
    auto purge_nope = [&] { return bus.purge_stream("NOPE", {.subject = "pg.a"}); };
    const std::string no_stream = co_await failure(purge_nope);
    EXPECT_NE(no_stream.find("stream=NOPE"), std::string::npos) << no_stream;
    info = co_await bus.stream_info("PG");
    EXPECT_EQ(info.messages, 2U);
    co_await bus.close();
  }());
}

TEST(Manage, DeleteMessageRemovesOneSequenceAndAMissingOneIsNotFound) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    const std::vector<std::string> subjects{"dm.>"};
    (void)co_await bus.create_stream("DM", subjects);  // file storage: secure erase overwrites
    co_await publish_to(bus, "dm.x", 5);
    co_await bus.delete_message("DM", 3, true);
    co_await bus.delete_message("DM", 4);
    const auto info = co_await bus.stream_info("DM");
    EXPECT_EQ(info.messages, 3U);
    EXPECT_EQ(info.raw.at("state").value("num_deleted", 0), 2) << info.raw.dump();

    bool not_found = false;
    try {
      co_await bus.delete_message("DM", 3);
    } catch (const natbus::NotFoundError& e) {
      not_found = std::string(e.what()).find("sequence 3 not found") != std::string::npos &&
                  std::string(e.what()).find("stream=DM") != std::string::npos;
      EXPECT_TRUE(not_found) << e.what();
    }
    EXPECT_TRUE(not_found);
    auto delete_zero = [&] { return bus.delete_message("DM", 0); };
    const std::string zero = co_await failure(delete_zero);
    EXPECT_NE(zero.find("sequence 0"), std::string::npos) << zero;
    co_await bus.close();
  }());
}

TEST(Manage, ListingsPageThroughMoreThanTheServerSendsAtOnce) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    // 300 streams: more than STREAM.LIST's page of 256.
    std::set<std::string> want;
    for (int i = 0; i < 300; ++i) {
      const std::string name = fmt::format("L{:03}", i);
      const std::vector<std::string> subjects{fmt::format("list.{}.>", i)};
      (void)co_await bus.create_stream(name, subjects, {.storage = natbus::StorageType::memory});
      want.insert(name);
    }
    const std::vector<std::string> names = co_await bus.stream_names();
    EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), want);
    EXPECT_EQ(names.size(), 300U) << "each stream once";
    const std::vector<natbus::StreamInfo> infos = co_await bus.streams();
    std::set<std::string> listed;
    for (const auto& s : infos) listed.insert(s.name);
    EXPECT_EQ(listed, want);
    EXPECT_EQ(infos.size(), 300U);
    const std::vector<std::string> one = co_await bus.stream_names("list.17.orders");
    EXPECT_EQ(one, std::vector<std::string>{"L017"});
    const std::vector<natbus::StreamInfo> one_info = co_await bus.streams("list.42.>");
    EXPECT_EQ(one_info.size(), 1U);
    EXPECT_EQ(one_info.empty() ? "" : one_info.front().name, "L042");
    const std::vector<std::string> none = co_await bus.stream_names("nothing.here");
    EXPECT_TRUE(none.empty());

    // 260 consumers on one stream: more than CONSUMER.LIST's page of 256.
    std::set<std::string> durables;
    for (int i = 0; i < 260; ++i) {
      const std::string durable = fmt::format("c{:03}", i);
      const nlohmann::json body{{"stream_name", "L000"}, {"config", {{"durable_name", durable}, {"ack_policy", "explicit"}}}};
      auto create = BusMessage::from_json("$JS.API.CONSUMER.DURABLE.CREATE.L000." + durable, body);
      (void)co_await bus.request(std::move(create), 5s);
      durables.insert(durable);
    }
    const std::vector<std::string> cnames = co_await bus.consumer_names("L000");
    EXPECT_EQ(std::set<std::string>(cnames.begin(), cnames.end()), durables);
    const std::vector<natbus::ConsumerInfo> cinfos = co_await bus.consumers("L000");
    std::set<std::string> clisted;
    for (const auto& c : cinfos) clisted.insert(c.name);
    EXPECT_EQ(clisted, durables);
    EXPECT_EQ(cinfos.size(), 260U);
    auto list_nope = [&] { return bus.consumers("NOPE"); };
    const std::string missing = co_await failure(list_nope);
    EXPECT_NE(missing.find("stream=NOPE"), std::string::npos) << missing;
    co_await bus.close();
  }());
}

TEST(Manage, AccountInfoReportsWhatTheAccountHolds) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    const natbus::AccountInfo before = co_await bus.account_info();
    const std::vector<std::string> mem{"acct.mem.>"};
    const std::vector<std::string> file{"acct.file.>"};
    (void)co_await bus.create_stream("ACCT_MEM", mem, {.storage = natbus::StorageType::memory});
    (void)co_await bus.create_stream("ACCT_FILE", file);
    co_await publish_to(bus, "acct.mem.x", 10);
    co_await publish_to(bus, "acct.file.x", 10);
    const nlohmann::json body{{"stream_name", "ACCT_MEM"}, {"config", {{"durable_name", "d"}, {"ack_policy", "explicit"}}}};
    auto create = BusMessage::from_json("$JS.API.CONSUMER.DURABLE.CREATE.ACCT_MEM.d", body);
    (void)co_await bus.request(std::move(create), 5s);

    const natbus::AccountInfo a = co_await bus.account_info();
    EXPECT_EQ(a.streams, before.streams + 2);
    EXPECT_EQ(a.consumers, before.consumers + 1);
    const auto mem_info = co_await bus.stream_info("ACCT_MEM");
    const auto file_info = co_await bus.stream_info("ACCT_FILE");
    EXPECT_EQ(a.memory, before.memory + mem_info.bytes);
    EXPECT_EQ(a.storage, before.storage + file_info.bytes);
    EXPECT_GT(a.api_total, before.api_total);
    EXPECT_EQ(a.limits.max_streams, a.raw.at("limits").value("max_streams", std::int64_t{-2})) << a.raw.dump();
    EXPECT_EQ(a.limits.max_memory, a.raw.at("limits").value("max_memory", std::int64_t{-2})) << a.raw.dump();
    EXPECT_EQ(a.domain, "");
    co_await bus.close();
  }());
}
