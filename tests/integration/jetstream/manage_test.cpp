// JetStream management beyond create/info/delete: purge by subject, keep and sequence, deleting
// one message, listings that page through the server's limits, the account's info, and the
// bad arguments natbus refuses before any round trip.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <map>
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

}  // namespace

TEST(Manage, PurgeBySubjectKeepAndSequenceRemovesExactlyThose) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    const std::vector<std::string> subjects{"pg.>"};
    (void)co_await bus.create_stream("PG", subjects, {.storage = natbus::StorageType::memory});
    co_await publish_n(bus, "pg.a", 10);  // 1..10
    co_await publish_n(bus, "pg.b", 10);  // 11..20

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
    co_await publish_n(bus, "pg.a", 2);
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
    co_await publish_n(bus, "dm.x", 5);
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
    co_await publish_n(bus, "acct.mem.x", 10);
    co_await publish_n(bus, "acct.file.x", 10);
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

TEST(ConsumerSettings, WhatIsGivenReachesTheServerAndADifferentValueRecreatesTheDurable) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "CS", "cs.>")};
    co_await bus.connect();
    auto on_msg = [](natbus::ReceivedMessage&) -> Task<void> { co_return; };
    const std::chrono::milliseconds steps[] = {100ms, 2s};
    natbus::Subscription push = co_await bus.push_subscribe("cs.push", on_msg,
                                                            {.durable = "cs_push",
                                                             .max_deliver = 5,
                                                             .consumer = {.backoff = steps,
                                                                          .inactive_threshold = 1h,
                                                                          .description = "orders for the warehouse",
                                                                          .memory_storage = true,
                                                                          .replicas = 1,
                                                                          .sample_frequency = 50,
                                                                          .rate_limit_bps = 8'000'000}});
    const auto p = co_await bus.consumer_info("CS", "cs_push");
    const nlohmann::json& pc = p.raw.at("config");
    EXPECT_EQ(pc.at("backoff"), (nlohmann::json{100'000'000, 2'000'000'000})) << pc.dump();
    EXPECT_EQ(pc.value("inactive_threshold", std::int64_t{0}), 3'600'000'000'000) << pc.dump();
    EXPECT_EQ(pc.value("description", ""), "orders for the warehouse");
    EXPECT_TRUE(pc.value("mem_storage", false));
    EXPECT_EQ(pc.value("num_replicas", 0), 1);
    EXPECT_EQ(pc.value("sample_freq", ""), "50%");
    EXPECT_EQ(pc.value("rate_limit_bps", std::uint64_t{0}), 8'000'000U);
    EXPECT_EQ(pc.value("max_deliver", 0), 5);

    natbus::Subscription pull = co_await bus.pull_subscribe(
        "cs.pull", on_msg,
        {.durable = "cs_pull",
         .batch = 20,
         .expires = 5s,
         .consumer = {.max_waiting = 16, .max_request_batch = 50, .max_request_expires = 10s, .max_request_max_bytes = 1 << 20}});
    const auto q = co_await bus.consumer_info("CS", "cs_pull");
    const nlohmann::json& qc = q.raw.at("config");
    EXPECT_EQ(qc.value("max_waiting", 0), 16) << qc.dump();
    EXPECT_EQ(qc.value("max_batch", 0), 50);
    EXPECT_EQ(qc.value("max_expires", std::int64_t{0}), 10'000'000'000);
    EXPECT_EQ(qc.value("max_bytes", 0), 1 << 20);
    co_await pull.close();

    // Subscribing again with another limit: the durable is recreated with it (bind).
    natbus::Subscription again =
        co_await bus.pull_subscribe("cs.pull", on_msg, {.durable = "cs_pull", .bind = true, .consumer = {.max_request_batch = 60}});
    const auto r = co_await bus.consumer_info("CS", "cs_pull");
    EXPECT_EQ(r.raw.at("config").value("max_batch", 0), 60) << r.raw.dump();
    // Settings not given are not reconciled: the same durable, unchanged, without them.
    const auto created = r.raw.value("created", std::string());
    co_await again.close();
    natbus::Subscription plain = co_await bus.pull_subscribe("cs.pull", on_msg, {.durable = "cs_pull", .bind = true});
    const auto s = co_await bus.consumer_info("CS", "cs_pull");
    EXPECT_EQ(s.raw.value("created", std::string()), created) << "recreated although nothing given differed";
    co_await plain.close();
    co_await push.close();
    co_await bus.close();
  }());
}

TEST(ConsumerSettings, HeadersOnlyDeliversTheHeadersAndTheSizeWithoutThePayload) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "HO", "ho.>")};
    co_await bus.connect();
    auto m = BusMessage::from_text("ho.x", "hello world", {.correlation_id = "corr-ho"});
    (void)co_await bus.publish(std::move(m));
    natbus::PullSubscription sub = co_await bus.pull_subscribe("ho.x", {.durable = "ho", .consumer = {.headers_only = true}});
    std::vector<natbus::ReceivedMessage> got = co_await sub.fetch(1, 5s);
    EXPECT_EQ(got.size(), 1U);
    if (got.size() == 1) {
      EXPECT_EQ(got[0].raw_payload(), "");
      EXPECT_EQ(got[0].header("Nats-Msg-Size").value_or("-"), "11");
      EXPECT_EQ(got[0].correlation_id(), "corr-ho");
      co_await got[0].ack();
    }
    co_await sub.close();
    co_await bus.close();
  }());
}

TEST(ConsumerSettings, BadValuesAreRefusedBeforeAnyRoundTripNamingThem) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{consume_config(server, "BV", "bv.>")};
    co_await bus.connect();
    auto on_msg = [](natbus::ReceivedMessage&) -> Task<void> { co_return; };
    const std::chrono::milliseconds steps[] = {1s, 2s};
    const std::chrono::milliseconds zero[] = {0ms};
    std::vector<std::string> errors;
    auto push_with = [&](const natbus::PushOptions& o) -> Task<void> {
      try {
        natbus::Subscription s = co_await bus.push_subscribe("bv.x", on_msg, o);
        errors.emplace_back("accepted");
      } catch (const natbus::InvalidArgument& e) {
        errors.emplace_back(e.what());
      }
    };
    auto pull_with = [&](const natbus::PullOptions& o) -> Task<void> {
      try {
        natbus::Subscription s = co_await bus.pull_subscribe("bv.x", on_msg, o);
        errors.emplace_back("accepted");
      } catch (const natbus::InvalidArgument& e) {
        errors.emplace_back(e.what());
      }
    };
    co_await push_with({.durable = "bv", .consumer = {.backoff = steps}});
    co_await push_with({.durable = "bv", .max_deliver = 2, .consumer = {.backoff = steps}});
    co_await push_with({.durable = "bv", .max_deliver = 5, .consumer = {.backoff = zero}});
    co_await push_with({.durable = "bv", .consumer = {.replicas = 6}});
    co_await push_with({.durable = "bv", .consumer = {.sample_frequency = 101}});
    co_await push_with({.durable = "bv", .consumer = {.max_waiting = 10}});
    co_await pull_with({.durable = "bv", .consumer = {.rate_limit_bps = 1000}});
    co_await pull_with({.durable = "bv", .batch = 20, .consumer = {.max_request_batch = 10}});
    co_await pull_with({.durable = "bv", .expires = 5s, .consumer = {.max_request_expires = 1s}});
    co_await pull_with({.durable = "bv", .consumer = {.max_waiting = 1}});
    const std::vector<std::string> needles{"max_deliver must be greater than that, got -1",
                                           "max_deliver must be greater than that, got 2",
                                           "positive and at most 24 h, got 0 ms",
                                           "replicas must be 0 (the stream's) to 5, got 6",
                                           "sample_frequency is a percentage (0-100), got 101",
                                           "max_waiting and max_request_* are for pull consumers",
                                           "rate_limit_bps is for push consumers",
                                           "batch (20) is above consumer.max_request_batch (10)",
                                           "expires (5000 ms) is above consumer.max_request_expires (1000 ms)",
                                           "max_waiting must be at least 2"};
    EXPECT_EQ(errors.size(), needles.size());
    for (std::size_t i = 0; i < std::min(errors.size(), needles.size()); ++i) {
      EXPECT_NE(errors[i].find(needles[i]), std::string::npos) << errors[i];
    }
    const std::vector<std::string> consumers = co_await bus.consumer_names("BV");
    EXPECT_TRUE(consumers.empty()) << "nothing was created";
    co_await bus.close();
  }());
}

// Both paths: a stream with allow_direct answers by direct get, one without through the API.
TEST(Manage, GetMessageAndGetLastMessageReadWhatWasStoredWithEveryAccessor) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    const std::vector<std::string> api_subjects{"gapi.>"};
    (void)co_await bus.create_stream("GAPI", api_subjects, {.storage = natbus::StorageType::memory});
    const nlohmann::json direct_cfg{{"name", "GDIR"}, {"subjects", {"gdir.>"}}, {"storage", "memory"}, {"allow_direct", true}};
    auto create = BusMessage::from_json("$JS.API.STREAM.CREATE.GDIR", direct_cfg);
    (void)co_await bus.request(std::move(create), 5s);
    const auto dir_info = co_await bus.stream_info("GDIR");
    EXPECT_TRUE(dir_info.raw.at("config").value("allow_direct", false)) << dir_info.raw.dump();

    // Which path each took: a plain subscriber sees the direct get requests.
    RawSubscriber watcher(server, "$JS.API.DIRECT.GET.>");
    std::map<std::string, int> direct_requests;
    const auto count_direct = [&watcher, &direct_requests] {
      natsMsg* m = nullptr;
      while (natsSubscription_NextMsg(&m, watcher.subscription(), 100) == NATS_OK) {
        ++direct_requests[natsMsg_GetSubject(m)];
        natsMsg_Destroy(m);
      }
    };
    const std::vector<std::pair<std::string, std::string>> streams{{"GAPI", "gapi"}, {"GDIR", "gdir"}};
    for (const auto& [stream, prefix] : streams) {
      const auto before = std::chrono::system_clock::now() - 1s;
      std::uint64_t second = 0;
      for (int i = 1; i <= 3; ++i) {
        auto m = BusMessage::from_text(prefix + (i == 3 ? ".b" : ".a"), "body " + std::to_string(i),
                                       {.correlation_id = "corr-" + std::to_string(i)});
        m.set_header("x-custom", "value " + std::to_string(i));
        const natbus::PubAck ack = co_await bus.publish(std::move(m));
        if (i == 2) second = ack.sequence;
      }
      const natbus::ReceivedMessage got = co_await bus.get_message(stream, second);
      EXPECT_EQ(got.subject(), prefix + ".a") << stream;
      EXPECT_EQ(got.as_text(), "body 2") << stream;
      EXPECT_EQ(got.correlation_id(), "corr-2") << stream;
      EXPECT_EQ(got.header("x-custom").value_or("-"), "value 2") << stream;
      const auto md = got.metadata();
      EXPECT_TRUE(md.has_value()) << stream;
      if (md) {
        EXPECT_EQ(md->stream, stream);
        EXPECT_EQ(md->stream_sequence, second);
        EXPECT_GT(md->timestamp, before) << stream;
        EXPECT_LT(md->timestamp, std::chrono::system_clock::now() + 1s) << stream;
      }
      EXPECT_FALSE(got.is_jetstream()) << "a stored message has nothing to acknowledge";

      const natbus::ReceivedMessage last_a = co_await bus.get_last_message(stream, prefix + ".a");
      EXPECT_EQ(last_a.as_text(), "body 2") << stream;
      const natbus::ReceivedMessage last_b = co_await bus.get_last_message(stream, prefix + ".b");
      EXPECT_EQ(last_b.as_text(), "body 3") << stream;
      EXPECT_EQ(last_b.metadata().value_or(natbus::MsgMetadata{}).stream_sequence, second + 1) << stream;

      std::string missing;
      try {
        (void)co_await bus.get_message(stream, 999);
      } catch (const natbus::NotFoundError& e) {
        missing = e.what();
      }
      EXPECT_NE(missing.find("no message at sequence 999"), std::string::npos) << stream << ": " << missing;
      EXPECT_NE(missing.find("stream=" + stream), std::string::npos) << missing;
      std::string missing_last;
      try {
        (void)co_await bus.get_last_message(stream, prefix + ".nothing");
      } catch (const natbus::NotFoundError& e) {
        missing_last = e.what();
      }
      EXPECT_NE(missing_last.find("no message at subject " + prefix + ".nothing"), std::string::npos) << stream << ": " << missing_last;
    }
    count_direct();
    EXPECT_EQ(direct_requests, (std::map<std::string, int>{{"$JS.API.DIRECT.GET.GDIR", 5}}))
        << "GDIR (allow_direct) is read by direct get, GAPI through the API";
    std::string no_stream;
    try {
      (void)co_await bus.get_message("NOPE", 1);
    } catch (const natbus::NotFoundError& e) {
      no_stream = e.what();
    }
    EXPECT_NE(no_stream.find("stream=NOPE"), std::string::npos) << no_stream;
    auto get_zero = [&] { return bus.get_message("GAPI", 0); };
    const std::string zero = co_await failure(get_zero);
    EXPECT_NE(zero.find("sequence 0"), std::string::npos) << zero;
    auto get_wild = [&] { return bus.get_last_message("GAPI", "gapi.*"); };
    const std::string wild = co_await failure(get_wild);
    EXPECT_NE(wild.find("gapi.*"), std::string::npos) << wild;
    co_await bus.close();
  }());
}

namespace {

/// Polls the stream's info until it holds `n` messages (or 20 s pass); its last info.
Task<natbus::StreamInfo> info_with(NatsBus& bus, const std::string& stream, std::uint64_t n) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  natbus::StreamInfo info = co_await bus.stream_info(stream);
  while (info.messages != n && std::chrono::steady_clock::now() < deadline) {
    co_await natbus::sleep(20ms);
    info = co_await bus.stream_info(stream);
  }
  co_return info;
}

}  // namespace

// create_stream(config) sends every field as the server spells it; update_stream replaces the
// configuration; the server's refusals name the stream and carry its text.
TEST(Manage, StreamConfigurationReachesTheServerAndUpdateStreamReplacesIt) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    const std::string subjects[] = {"cfg.>"};
    std::vector<std::string> seen;
    auto on_republished = [&](natbus::ReceivedMessage& m) -> Task<void> {
      seen.push_back(fmt::format("{}={}", m.subject(), m.header("Nats-Sequence").value_or("?")));
      co_return;
    };
    natbus::Subscription rp = co_await bus.subscribe_core("copy.>", on_republished);
    co_await bus.flush();
    const natbus::StreamConfig full{.name = "CFG",
                                    .subjects = subjects,
                                    .description = "orders by region",
                                    .discard = natbus::DiscardPolicy::new_,
                                    .discard_new_per_subject = true,
                                    .max_msgs = 1000,
                                    .max_bytes = 1 << 20,
                                    .max_age = 1h,
                                    .max_msgs_per_subject = 2,
                                    .max_msg_size = 4096,
                                    .max_consumers = 7,
                                    .duplicate_window = 30s,
                                    .storage = natbus::StorageType::memory,
                                    .deny_delete = true,
                                    .allow_rollup = true,
                                    .allow_direct = true,
                                    .republish_source = "cfg.>",
                                    .republish_destination = "copy.>"};
    const natbus::StreamInfo created = co_await bus.create_stream(full);
    const nlohmann::json& c = created.raw["config"];
    EXPECT_EQ(created.description, "orders by region");
    EXPECT_EQ(c.value("discard", ""), "new");
    EXPECT_TRUE(c.value("discard_new_per_subject", false));
    EXPECT_EQ(c.value("max_msgs", 0), 1000);
    EXPECT_EQ(c.value("max_bytes", 0), 1 << 20);
    EXPECT_EQ(c.value("max_age", std::int64_t{0}), std::int64_t{3'600'000'000'000});
    EXPECT_EQ(c.value("max_msgs_per_subject", 0), 2);
    EXPECT_EQ(c.value("max_msg_size", 0), 4096);
    EXPECT_EQ(c.value("max_consumers", 0), 7);
    EXPECT_EQ(c.value("duplicate_window", std::int64_t{0}), std::int64_t{30'000'000'000});
    EXPECT_EQ(c.value("storage", ""), "memory");
    EXPECT_TRUE(c.value("deny_delete", false));
    EXPECT_FALSE(c.value("deny_purge", true));
    EXPECT_TRUE(c.value("allow_rollup_hdrs", false));
    EXPECT_TRUE(c.value("allow_direct", false));
    EXPECT_EQ(c["republish"].value("dest", ""), "copy.>");

    // What the settings do: a third message on a full subject is refused (discard new per
    // subject), stored ones are republished with their sequence, and deletes are denied.
    co_await publish_n(bus, "cfg.eu", 2);
    bool refused = false;
    try {
      auto third = BusMessage::from_text("cfg.eu", "3");
      (void)co_await bus.publish(std::move(third));
    } catch (const natbus::Error& e) {
      refused = std::string(e.what()).find("maximum messages per subject exceeded") != std::string::npos;
      if (!refused) ADD_FAILURE() << e.what();
    }
    EXPECT_TRUE(refused) << "the third cfg.eu message was stored";
    EXPECT_TRUE(co_await eventually([&] { return seen.size() == 2; }));
    EXPECT_EQ(seen, (std::vector<std::string>{"copy.eu=1", "copy.eu=2"}));
    auto del = [&]() -> Task<int> {
      co_await bus.delete_message("CFG", 1);
      co_return 0;
    };
    const std::string denied = co_await failure(del);
    EXPECT_NE(denied.find("CFG"), std::string::npos) << denied;
    EXPECT_NE(denied.find("message delete not permitted"), std::string::npos) << denied;

    // The same configuration again is the same stream; another one is refused with the text.
    const natbus::StreamInfo again = co_await bus.create_stream(full);
    EXPECT_EQ(again.messages, 2U);
    auto other = [&]() -> Task<natbus::StreamInfo> {
      co_return co_await bus.create_stream({.name = "CFG", .subjects = subjects, .storage = natbus::StorageType::memory});
    };
    const std::string in_use = co_await failure(other);
    EXPECT_NE(in_use.find("CFG"), std::string::npos) << in_use;
    EXPECT_NE(in_use.find("stream name already in use with a different configuration"), std::string::npos) << in_use;

    // update_stream: the new configuration replaces the old one, settings left alone included.
    const std::string more[] = {"cfg.>", "extra.*"};
    // (What 2.9 never changes stays as it was: storage, max_consumers, deny_delete, republish.)
    const natbus::StreamInfo updated = co_await bus.update_stream({.name = "CFG",
                                                                   .subjects = more,
                                                                   .description = "v2",
                                                                   .max_msgs = 10,
                                                                   .max_consumers = 7,
                                                                   .storage = natbus::StorageType::memory,
                                                                   .deny_delete = true,
                                                                   .republish_source = "cfg.>",
                                                                   .republish_destination = "copy.>"});
    EXPECT_EQ(updated.subjects, (std::vector<std::string>(std::begin(more), std::end(more))));
    EXPECT_EQ(updated.description, "v2");
    EXPECT_EQ(updated.raw["config"].value("max_msgs", 0), 10);
    EXPECT_EQ(updated.raw["config"].value("max_msgs_per_subject", 0), -1) << "left alone: back to the default";
    EXPECT_FALSE(updated.raw["config"].value("discard_new_per_subject", false));
    EXPECT_EQ(updated.raw["config"].value("discard", ""), "old");
    EXPECT_EQ(updated.messages, 2U) << "an update keeps the messages";

    // Changes the server cannot make come back with its text; a missing stream is NotFound.
    auto to_file = [&]() -> Task<natbus::StreamInfo> {
      co_return co_await bus.update_stream({.name = "CFG", .subjects = more, .max_consumers = 7, .storage = natbus::StorageType::file});
    };
    const std::string storage = co_await failure(to_file);
    EXPECT_NE(storage.find("update_stream"), std::string::npos) << storage;
    EXPECT_NE(storage.find("CFG"), std::string::npos) << storage;
    EXPECT_NE(storage.find("can not change storage type"), std::string::npos) << storage;
    bool not_found = false;
    try {
      (void)co_await bus.update_stream({.name = "NOPE", .subjects = more});
    } catch (const natbus::NotFoundError& e) {
      not_found = std::string(e.what()).find("NOPE") != std::string::npos;
    }
    EXPECT_TRUE(not_found);

    // Placement reaches the server (a single server, in no cluster, keeps it and ignores it).
    const std::string tags[] = {"ssd", "eu-west"};
    const std::string placed_subjects[] = {"placed.>"};
    const natbus::StreamInfo placed =
        co_await bus.create_stream({.name = "PLACED", .subjects = placed_subjects, .placement_cluster = "east", .placement_tags = tags});
    EXPECT_EQ(placed.raw["config"]["placement"].dump(), R"({"cluster":"east","tags":["ssd","eu-west"]})");

    // Sealed, by update: nothing comes in any more.
    const natbus::StreamInfo sealed = co_await bus.update_stream({.name = "CFG",
                                                                  .subjects = more,
                                                                  .max_msgs = 10,
                                                                  .max_consumers = 7,
                                                                  .storage = natbus::StorageType::memory,
                                                                  .sealed = true,
                                                                  .deny_delete = true,
                                                                  .republish_source = "cfg.>",
                                                                  .republish_destination = "copy.>"});
    EXPECT_TRUE(sealed.sealed);
    bool refused_sealed = false;
    try {
      auto late = BusMessage::from_text("extra.x", "late");
      (void)co_await bus.publish(std::move(late));
    } catch (const natbus::Error& e) {
      refused_sealed = std::string(e.what()).find("sealed") != std::string::npos;
      if (!refused_sealed) ADD_FAILURE() << e.what();
    }
    EXPECT_TRUE(refused_sealed);
    co_await rp.close();
    co_await bus.close();
  }());
}

// Two regional streams, a mirror of one from a start sequence, and an aggregate that sources a
// filtered part of one and all of the other: what each holds, and the progress the server reports.
TEST(Manage, AStreamMirroredAndSourcedAcrossTwoStreams) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    const std::string eu[] = {"eu.>"};
    const std::string us[] = {"us.>"};
    (void)co_await bus.create_stream({.name = "EU", .subjects = eu, .storage = natbus::StorageType::memory});
    (void)co_await bus.create_stream({.name = "US", .subjects = us, .storage = natbus::StorageType::memory});
    co_await publish_n(bus, "eu.orders", 30);   // EU 1..30
    co_await publish_n(bus, "eu.refunds", 10);  // EU 31..40
    co_await publish_n(bus, "us.orders", 25);   // US 1..25

    (void)co_await bus.create_stream({.name = "EU_BACKUP",
                                      .storage = natbus::StorageType::memory,
                                      .mirror = natbus::StreamSource{.name = "EU", .start_sequence = 11},
                                      .allow_direct = true,
                                      .mirror_direct = true});
    const natbus::StreamSource from[] = {{.name = "EU", .filter_subject = "eu.orders"}, {.name = "US"}};
    (void)co_await bus.create_stream({.name = "ALL", .storage = natbus::StorageType::memory, .sources = from});

    const natbus::StreamInfo backup = co_await info_with(bus, "EU_BACKUP", 30);
    EXPECT_EQ(backup.messages, 30U) << "EU's 11..40";
    EXPECT_EQ(backup.first_sequence, 11U) << "a mirror keeps its origin's sequences";
    EXPECT_TRUE(backup.subjects.empty());
    EXPECT_TRUE(backup.mirror.has_value());
    if (backup.mirror) {
      EXPECT_EQ(backup.mirror->name, "EU");
      EXPECT_EQ(backup.mirror->lag, 0U);
      EXPECT_TRUE(backup.mirror->error.empty()) << backup.mirror->error;
    }
    natbus::ReceivedMessage m11 = co_await bus.get_message("EU_BACKUP", 11);
    EXPECT_EQ(m11.subject(), "eu.orders");
    EXPECT_EQ(m11.as_text(), "10");

    const natbus::StreamInfo all = co_await info_with(bus, "ALL", 55);
    EXPECT_EQ(all.messages, 55U) << "EU's 30 orders (no refunds) and US's 25";
    EXPECT_EQ(all.sources.size(), 2U);
    std::set<std::string> names;
    for (const auto& s : all.sources) names.insert(s.name);
    EXPECT_EQ(names, (std::set<std::string>{"EU", "US"}));
    const std::vector<std::string> in_all = co_await bus.consumer_names("ALL");
    EXPECT_TRUE(in_all.empty());
    natbus::ReceivedMessage last_refund_probe = co_await bus.get_last_message("ALL", "us.orders");
    EXPECT_EQ(last_refund_probe.as_text(), "24");
    bool no_refunds = false;
    try {
      (void)co_await bus.get_last_message("ALL", "eu.refunds");
    } catch (const natbus::NotFoundError&) {
      no_refunds = true;
    }
    EXPECT_TRUE(no_refunds) << "the filter let eu.refunds through";

    // New messages keep flowing into both.
    co_await publish_n(bus, "eu.orders", 5, 100);
    const natbus::StreamInfo backup2 = co_await info_with(bus, "EU_BACKUP", 35);
    EXPECT_EQ(backup2.messages, 35U);
    const natbus::StreamInfo all2 = co_await info_with(bus, "ALL", 60);
    EXPECT_EQ(all2.messages, 60U);
    co_await bus.close();
  }());
}

// What natbus can see is wrong never reaches the server: InvalidArgument naming the field and
// the value, and no stream appears.
TEST(Manage, BadStreamConfigurationsAreRefusedBeforeAnyRoundTrip) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    const std::string ok[] = {"bad.>"};
    const std::string empty[] = {""};
    const std::string spaced[] = {"bad. x"};
    const std::string no_tag[] = {""};
    const natbus::StreamSource self[] = {{.name = "BAD"}};
    const natbus::StreamSource both[] = {{.name = "SRC", .start_sequence = 3, .start_time = std::chrono::system_clock::now()}};
    std::vector<std::string> errors;
    auto create = [&](const natbus::StreamConfig& c) -> Task<void> {
      try {
        (void)co_await bus.create_stream(c);
        errors.emplace_back("accepted");
      } catch (const natbus::InvalidArgument& e) {
        errors.emplace_back(e.what());
      }
    };
    auto update = [&](const natbus::StreamConfig& c) -> Task<void> {
      try {
        (void)co_await bus.update_stream(c);
        errors.emplace_back("accepted");
      } catch (const natbus::InvalidArgument& e) {
        errors.emplace_back(e.what());
      }
    };
    co_await create({.name = "", .subjects = ok});
    co_await create({.name = "B.AD", .subjects = ok});
    co_await create({.name = "BAD", .subjects = empty});
    co_await create({.name = "BAD", .subjects = spaced});
    co_await create({.name = "BAD", .subjects = ok, .max_msgs = -2});
    co_await create({.name = "BAD", .subjects = ok, .max_bytes = -5});
    co_await create({.name = "BAD", .subjects = ok, .max_age = -1s});
    co_await create({.name = "BAD", .subjects = ok, .max_age = 1min, .duplicate_window = 2min});
    co_await create({.name = "BAD", .subjects = ok, .replicas = 6});
    co_await create({.name = "BAD", .subjects = ok, .replicas = 0});
    co_await create({.name = "BAD", .subjects = ok, .discard_new_per_subject = true});
    co_await create({.name = "BAD", .subjects = ok, .placement_tags = no_tag});
    co_await create({.name = "BAD", .subjects = ok, .mirror = natbus::StreamSource{.name = "SRC"}});
    co_await create({.name = "BAD", .mirror = natbus::StreamSource{.name = "SRC"}, .sources = self});
    co_await create({.name = "BAD", .sources = self});
    co_await create({.name = "BAD", .sources = both});
    co_await create({.name = "BAD", .subjects = ok, .mirror_direct = true});
    co_await create({.name = "BAD", .subjects = ok, .republish_source = "bad.>"});
    co_await create({.name = "BAD", .subjects = ok, .sealed = true});
    co_await create({.name = "BAD", .subjects = ok, .deny_purge = true, .allow_rollup = true});
    co_await update({.name = "BAD", .subjects = ok, .max_consumers = -3});
    co_await create({.name = "BAD", .subjects = ok, .description = "caf\xC3"});
    const std::vector<std::string> needles{R"(create_stream: stream "")",
                                           R"(stream "B.AD")",
                                           R"(subject "")",
                                           R"(subject "bad. x")",
                                           "max_msgs must be -1 (unlimited) or more, got -2",
                                           "max_bytes must be -1 (unlimited) or more, got -5",
                                           "max_age must not be negative, got -1000000000 ns",
                                           "duplicate_window (120000000000 ns) must not be longer than max_age (60000000000 ns)",
                                           "replicas must be 1 to 5, got 6",
                                           "replicas must be 1 to 5, got 0",
                                           "discard_new_per_subject needs discard = DiscardPolicy::new_",
                                           "placement_tags: a tag must not be empty",
                                           "a mirror takes no subjects",
                                           "a mirror cannot have sources as well",
                                           R"(source "BAD" is the stream itself)",
                                           "start_sequence and start_time cannot both be given",
                                           "mirror_direct is for mirrors",
                                           "republish_source needs a republish_destination",
                                           "a new stream cannot be created sealed",
                                           "allow_rollup purges: not with deny_purge",
                                           "update_stream: max_consumers must be -1 (unlimited) or more, got -3",
                                           "description \"caf\\xc3\": not valid UTF-8"};
    EXPECT_EQ(errors.size(), needles.size());
    for (std::size_t i = 0; i < std::min(errors.size(), needles.size()); ++i) {
      EXPECT_NE(errors[i].find(needles[i]), std::string::npos) << i << ": " << errors[i];
    }
    const std::vector<std::string> streams = co_await bus.stream_names();
    EXPECT_TRUE(streams.empty()) << "nothing was created";
    co_await bus.close();
  }());
}
