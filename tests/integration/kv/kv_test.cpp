// The Key-Value store (ADR-8) against a real server: the bucket's stream as nats.go makes it,
// put / get / create / update / erase / purge with their revisions and markers, history and
// keys, watchers (current values, the marker, then changes; patterns, history, deletes left
// out, values left out, updates only, the end when the bucket goes), and bad input refused
// before anything is written.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "natbus/kv.hpp"
#include "natbus/stream_info.hpp"
#include "support/bus_test.hpp"
#include "support/child_process.hpp"

using namespace std::chrono_literals;
using natbus::KeyValue;
using natbus::KeyValueEntry;
using natbus::KeyValueOp;
using natbus::KeyWatcher;
using natbus::KeyWatchUpdate;
using natbus::NatsBus;
using natbus::Task;
using namespace natbus::testing;

namespace {

/// "<accepted>" when the call `f` makes succeeds; the text of the E it throws; or "<other: ...>"
/// for another error. `f` is a named lambda (GCC 12: no lambda temporaries inside co_await).
template <class E, class F>
Task<std::string> fails_with(F& f) {
  try {
    (void)co_await f();
  } catch (const E& e) {
    co_return e.what();
  } catch (const natbus::Error& e) {
    co_return fmt::format("<other: {}>", e.what());
  }
  co_return "<accepted>";
}

/// One line per entry: "key rev op value".
std::string line_of(const KeyValueEntry& e) {
  const char* op = e.operation == KeyValueOp::put ? "put" : e.operation == KeyValueOp::del ? "del" : "purge";
  return fmt::format("{} {} {} {}", e.key, e.revision, op, e.value);
}

/// The next update of `w` within 10 s, as a line ("init-done", "end" or line_of the entry).
Task<std::string> next_line(KeyWatcher& w) {
  Task<KeyWatchUpdate> waiting = w.next();
  const KeyWatchUpdate u = co_await natbus::with_timeout(std::move(waiting), 10s);
  if (!u) co_return "end";
  if (u.initial_done) co_return "init-done";
  co_return line_of(*u.entry);
}

/// history(key) as lines.
Task<std::vector<std::string>> history_lines(KeyValue& kv, std::string_view key) {
  const std::vector<KeyValueEntry> entries = co_await kv.history(key);
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(line_of(e));
  co_return out;
}

Task<std::vector<std::string>> next_lines(KeyWatcher& w, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(co_await next_line(w));
  co_return out;
}

}  // namespace

TEST(KeyValue, TheBucketIsTheStreamNatsGoMakesAndBindsAgainOnlyWithTheSameConfiguration) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    KeyValue kv = co_await bus.key_value({.bucket = "cfg",
                                          .description = "settings",
                                          .history = 5,
                                          .ttl = 60s,
                                          .max_value_size = 1024,
                                          .max_bytes = 1 << 20,
                                          .storage = natbus::StorageType::memory});
    EXPECT_EQ(kv.bucket(), "cfg");
    const natbus::StreamInfo si = co_await bus.stream_info("KV_cfg");
    const auto& c = si.raw["config"];
    EXPECT_EQ(si.subjects, std::vector<std::string>{"$KV.cfg.>"});
    EXPECT_EQ(c["max_msgs_per_subject"], 5);
    EXPECT_EQ(c["max_age"], 60'000'000'000LL);
    EXPECT_EQ(c["duplicate_window"], 60'000'000'000LL);  // the ttl, being under 2 minutes
    EXPECT_EQ(c["max_msg_size"], 1024);
    EXPECT_EQ(c["max_bytes"], 1 << 20);
    EXPECT_EQ(c["storage"], "memory");
    EXPECT_EQ(c["discard"], "new");
    EXPECT_EQ(c["allow_rollup_hdrs"], true);
    EXPECT_EQ(c["deny_delete"], true);
    EXPECT_EQ(c["allow_direct"], true);
    EXPECT_EQ(c["description"], "settings");
    const natbus::KeyValueStatus st = co_await kv.status();
    EXPECT_EQ(st.history, 5);
    EXPECT_EQ(st.ttl, 60s);
    EXPECT_EQ(st.max_value_size, 1024);
    EXPECT_EQ(st.storage, natbus::StorageType::memory);
    EXPECT_EQ(st.description, "settings");

    // The same configuration binds; another one is refused with a way out.
    KeyValue again = co_await bus.key_value({.bucket = "cfg",
                                             .description = "settings",
                                             .history = 5,
                                             .ttl = 60s,
                                             .max_value_size = 1024,
                                             .max_bytes = 1 << 20,
                                             .storage = natbus::StorageType::memory});
    const std::uint64_t rev = co_await again.put("a", "1");
    const auto seen = co_await kv.get("a");
    EXPECT_EQ(seen ? seen->revision : 0, rev);
    auto other = [&] { return bus.key_value({.bucket = "cfg", .history = 2, .storage = natbus::StorageType::memory}); };
    const std::string differs = co_await fails_with<natbus::JetStreamError>(other);
    EXPECT_NE(differs.find("bucket \"cfg\" exists with another configuration"), std::string::npos) << differs;

    // Bind by name; a missing bucket, a stream that is no bucket.
    KeyValue bound = co_await bus.key_value("cfg");
    const auto via_bound = co_await bound.get("a");
    EXPECT_TRUE(via_bound.has_value());
    auto missing = [&] { return bus.key_value("nope"); };
    const std::string none = co_await fails_with<natbus::NotFoundError>(missing);
    EXPECT_NE(none.find("bucket \"nope\" does not exist"), std::string::npos) << none;
    const std::vector<std::string> subjects{"plain.>"};
    (void)co_await bus.create_stream("KV_plain", subjects, {.storage = natbus::StorageType::memory});
    auto plain = [&] { return bus.key_value("plain"); };
    const std::string not_kv = co_await fails_with<natbus::InvalidArgument>(plain);
    EXPECT_NE(not_kv.find("stream KV_plain is not a Key-Value bucket"), std::string::npos) << not_kv;

    // Deleted: the handles fail, naming the bucket; deleting again is NotFound.
    co_await bus.delete_key_value("cfg");
    auto get_gone = [&] { return kv.get("a"); };
    const std::string gone = co_await fails_with<natbus::NotFoundError>(get_gone);
    EXPECT_NE(gone.find("bucket \"cfg\""), std::string::npos) << gone;
    auto delete_again = [&] { return bus.delete_key_value("cfg"); };
    const std::string twice = co_await fails_with<natbus::NotFoundError>(delete_again);
    EXPECT_NE(twice.find("bucket \"cfg\" does not exist"), std::string::npos) << twice;
    co_await bus.close();
  }());
}

TEST(KeyValue, RevisionsMarkersCreateAndUpdateAsADR8Says) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    KeyValue kv = co_await bus.key_value({.bucket = "orders", .history = 3});
    const auto before = std::chrono::system_clock::now() - 1s;
    const std::uint64_t r1 = co_await kv.put("eu.1", "new");
    const std::uint64_t r2 = co_await kv.put("eu.2", "new");
    const std::uint64_t r3 = co_await kv.put("eu.1", "paid");
    EXPECT_EQ(r1, 1U);
    EXPECT_EQ(r2, 2U);
    EXPECT_EQ(r3, 3U);
    const auto e = co_await kv.get("eu.1");
    EXPECT_TRUE(e.has_value());
    if (e) {
      EXPECT_EQ(e->bucket, "orders");
      EXPECT_EQ(e->key, "eu.1");
      EXPECT_EQ(e->as_text(), "paid");
      EXPECT_EQ(e->revision, r3);
      EXPECT_EQ(e->operation, KeyValueOp::put);
      EXPECT_GT(e->created, before);
      EXPECT_LT(e->created, std::chrono::system_clock::now() + 1s);
    }
    // An older revision of the key; a revision of another key; one not stored.
    const auto old = co_await kv.get("eu.1", r1);
    EXPECT_EQ(old ? old->value : "<none>", "new");
    const auto wrong_key = co_await kv.get("eu.1", r2);
    EXPECT_FALSE(wrong_key.has_value());
    const auto beyond = co_await kv.get("eu.1", 99);
    EXPECT_FALSE(beyond.has_value());
    const auto never = co_await kv.get("eu.9");
    EXPECT_FALSE(never.has_value());

    // update() only on top of the newest revision; a stale one writes nothing.
    const std::uint64_t r4 = co_await kv.update("eu.1", "shipped", r3);
    EXPECT_EQ(r4, 4U);
    auto stale = [&] { return kv.update("eu.1", "lost", r3); };
    const std::string refused = co_await fails_with<natbus::WrongLastRevisionError>(stale);
    EXPECT_NE(refused.find("key \"eu.1\" of bucket \"orders\" is no longer at revision 3"), std::string::npos) << refused;
    const auto after_stale = co_await kv.get("eu.1");
    EXPECT_EQ(after_stale ? after_stale->revision : 0, r4);

    // create() only where there is no value: a live key refuses, an erased one takes it.
    auto create_live = [&] { return kv.create("eu.2", "dup"); };
    const std::string exists = co_await fails_with<natbus::KeyExistsError>(create_live);
    EXPECT_NE(exists.find("key \"eu.2\" of bucket \"orders\" already holds a value (revision 2)"), std::string::npos) << exists;
    const std::uint64_t fresh = co_await kv.create("eu.3", "new");
    EXPECT_EQ(fresh, 5U);
    co_await kv.erase("eu.2");
    const auto erased = co_await kv.get("eu.2");
    EXPECT_FALSE(erased.has_value());
    const std::uint64_t recreated = co_await kv.create("eu.2", "again");
    EXPECT_EQ(recreated, 7U);  // on top of the delete marker at 6

    // History keeps three per key, markers included; purge leaves only its marker.
    co_await kv.erase("eu.2");
    const auto h2 = co_await history_lines(kv, "eu.2");
    EXPECT_EQ(h2, (std::vector<std::string>{"eu.2 6 del ", "eu.2 7 put again", "eu.2 8 del "}));
    const auto h1 = co_await history_lines(kv, "eu.1");
    EXPECT_EQ(h1, (std::vector<std::string>{"eu.1 1 put new", "eu.1 3 put paid", "eu.1 4 put shipped"}));
    co_await kv.purge("eu.1");
    const auto purged = co_await history_lines(kv, "eu.1");
    EXPECT_EQ(purged, (std::vector<std::string>{"eu.1 9 purge "}));
    const auto after_purge = co_await kv.get("eu.1");
    EXPECT_FALSE(after_purge.has_value());
    const auto none = co_await kv.history("eu.7");
    EXPECT_TRUE(none.empty());

    // keys(): those holding a value now.
    (void)co_await kv.put("us.1", "x");
    const auto keys = co_await kv.keys();
    EXPECT_EQ(keys, (std::vector<std::string>{"eu.3", "us.1"}));
    const natbus::KeyValueStatus st = co_await kv.status();
    EXPECT_EQ(st.values, 6U);  // eu.1's purge marker, eu.2's last three, eu.3, us.1
    co_await bus.close();
  }());
}

TEST(KeyValue, AWatcherGivesTheCurrentValuesThenTheMarkerThenEveryChange) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    KeyValue kv = co_await bus.key_value({.bucket = "w", .history = 10, .storage = natbus::StorageType::memory});

    // An empty bucket: the marker comes at once.
    KeyWatcher empty = co_await kv.watch_all();
    const std::string first = co_await next_line(empty);
    EXPECT_EQ(first, "init-done");
    co_await empty.close();
    const std::string closed = co_await next_line(empty);
    EXPECT_EQ(closed, "end");

    (void)co_await kv.put("a.1", "x");
    (void)co_await kv.put("a.1", "y");
    (void)co_await kv.put("b.1", "z");
    (void)co_await kv.put("a.2", "v");
    co_await kv.erase("a.2");
    KeyWatcher all = co_await kv.watch_all();
    KeyWatcher a = co_await kv.watch("a.*", {.ignore_deletes = true});
    KeyWatcher hist = co_await kv.watch("a.1", {.include_history = true});
    KeyWatcher meta = co_await kv.watch("b.>", {.meta_only = true});
    KeyWatcher updates = co_await kv.watch_all({.updates_only = true});
    const auto all_initial = co_await next_lines(all, 4);
    EXPECT_EQ(all_initial, (std::vector<std::string>{"a.1 2 put y", "b.1 3 put z", "a.2 5 del ", "init-done"}));
    const auto a_initial = co_await next_lines(a, 2);
    EXPECT_EQ(a_initial, (std::vector<std::string>{"a.1 2 put y", "init-done"}));
    const auto hist_initial = co_await next_lines(hist, 3);
    EXPECT_EQ(hist_initial, (std::vector<std::string>{"a.1 1 put x", "a.1 2 put y", "init-done"}));
    const auto meta_initial = co_await next_lines(meta, 2);
    EXPECT_EQ(meta_initial, (std::vector<std::string>{"b.1 3 put ", "init-done"}));

    // Then every change, in order, to each watcher whose pattern matches.
    (void)co_await kv.put("a.3", "new");
    co_await kv.erase("a.1");
    (void)co_await kv.put("b.1", "zz");
    const auto all_changes = co_await next_lines(all, 3);
    EXPECT_EQ(all_changes, (std::vector<std::string>{"a.3 6 put new", "a.1 7 del ", "b.1 8 put zz"}));
    const auto a_changes = co_await next_lines(a, 1);
    EXPECT_EQ(a_changes, (std::vector<std::string>{"a.3 6 put new"}));
    const auto hist_changes = co_await next_lines(hist, 1);
    EXPECT_EQ(hist_changes, (std::vector<std::string>{"a.1 7 del "}));
    const auto meta_changes = co_await next_lines(meta, 1);
    EXPECT_EQ(meta_changes, (std::vector<std::string>{"b.1 8 put "}));
    const auto update_changes = co_await next_lines(updates, 3);
    EXPECT_EQ(update_changes, all_changes);
    // A purge (read once the watchers have the put it removes, which is gone otherwise).
    co_await kv.purge("a.3");
    const auto all_purge = co_await next_lines(all, 1);
    EXPECT_EQ(all_purge, std::vector<std::string>{"a.3 9 purge "});
    const auto update_purge = co_await next_lines(updates, 1);
    EXPECT_EQ(update_purge, all_purge);

    // Closing the bus ends every watcher.
    co_await bus.close();
    const std::string ended = co_await next_line(all);
    EXPECT_EQ(ended, "end");
    const std::string after_close = co_await next_line(a);
    EXPECT_EQ(after_close, "end");
  }());
}

TEST(KeyValue, BadInputIsRefusedNamingTheKeyAndBucketAndWritesNothing) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    KeyValue kv = co_await bus.key_value({.bucket = "strict", .max_value_size = 8, .storage = natbus::StorageType::memory});
    std::vector<std::string> errors;
    const auto refuse = [&](auto& call) -> Task<void> {
      std::string error = co_await fails_with<natbus::InvalidArgument>(call);
      errors.push_back(std::move(error));
    };
    auto empty_key = [&] { return kv.put("", "v"); };
    auto leading_dot = [&] { return kv.put(".a", "v"); };
    auto trailing_dot = [&] { return kv.get("a."); };
    auto empty_token = [&] { return kv.create("a..b", "v"); };
    auto space = [&] { return kv.put("a b", "v"); };
    auto wildcard = [&] { return kv.put("a.*", "v"); };
    auto too_big = [&] { return kv.put("big", "123456789"); };
    auto rev0 = [&] { return kv.update("a", "v", 0); };
    auto get_rev0 = [&] { return kv.get("a", 0); };
    auto bad_pattern = [&] { return kv.watch("a.>.b"); };
    auto erase_bad = [&] { return kv.erase("x y"); };
    co_await refuse(empty_key);
    co_await refuse(leading_dot);
    co_await refuse(trailing_dot);
    co_await refuse(empty_token);
    co_await refuse(space);
    co_await refuse(wildcard);
    co_await refuse(too_big);
    co_await refuse(rev0);
    co_await refuse(get_rev0);
    co_await refuse(bad_pattern);
    co_await refuse(erase_bad);
    const std::vector<std::string> expected{
        R"(natbus: kv.put: key "" of bucket "strict" is not valid: a key must not be empty (subject=$KV.strict. stream=KV_strict))",
        R"(natbus: kv.put: key ".a" of bucket "strict" is not valid: a key must not start or end with '.' (subject=$KV.strict..a stream=KV_strict))",
        R"(natbus: kv.get: key "a." of bucket "strict" is not valid: a key must not start or end with '.' (subject=$KV.strict.a. stream=KV_strict))",
        R"(natbus: kv.create: key "a..b" of bucket "strict" is not valid: a key must not hold an empty token ('..') (subject=$KV.strict.a..b stream=KV_strict))",
        R"(natbus: kv.put: key "a b" of bucket "strict" is not valid: use letters, digits, '-', '/', '_', '=' and '.' (subject=$KV.strict.a b stream=KV_strict))",
        R"(natbus: kv.put: key "a.*" of bucket "strict" is not valid: use letters, digits, '-', '/', '_', '=' and '.' (subject=$KV.strict.a.* stream=KV_strict))",
        R"(natbus: kv.put: value of 9 bytes for key "big" is larger than bucket "strict" allows (8 bytes, max_value_size) (subject=$KV.strict.big stream=KV_strict))",
        R"(natbus: kv.update: revision 0 is no revision (key "a" of bucket "strict"): use create() for a new key (subject=$KV.strict.a stream=KV_strict))",
        R"(natbus: kv.get: revision 0 is no revision (key "a" of bucket "strict"): revisions start at 1 (subject=$KV.strict.a stream=KV_strict))",
        R"(natbus: kv.watch: key "a.>.b" of bucket "strict" is not valid: use letters, digits, '-', '/', '_', '=', '.' and the wildcards '*' and '>' (last) (subject=$KV.strict.a.>.b stream=KV_strict))",
        R"(natbus: kv.erase: key "x y" of bucket "strict" is not valid: use letters, digits, '-', '/', '_', '=' and '.' (subject=$KV.strict.x y stream=KV_strict))",
    };
    EXPECT_EQ(errors, expected);

    // Buckets and their configurations.
    errors.clear();
    auto bad_bucket = [&] { return bus.key_value({.bucket = "a.b"}); };
    auto no_bucket = [&] { return bus.key_value(""); };
    auto history0 = [&] { return bus.key_value({.bucket = "h", .history = 0}); };
    auto history65 = [&] { return bus.key_value({.bucket = "h", .history = 65}); };
    auto negative_ttl = [&] { return bus.key_value({.bucket = "h", .ttl = -1ms}); };
    auto replicas = [&] { return bus.key_value({.bucket = "h", .replicas = 6}); };
    auto zero_size = [&] { return bus.key_value({.bucket = "h", .max_value_size = 0}); };
    auto delete_bad = [&] { return bus.delete_key_value("x y"); };
    co_await refuse(bad_bucket);
    co_await refuse(no_bucket);
    co_await refuse(history0);
    co_await refuse(history65);
    co_await refuse(negative_ttl);
    co_await refuse(replicas);
    co_await refuse(zero_size);
    co_await refuse(delete_bad);
    const std::vector<std::string> expected_buckets{
        R"(natbus: key_value: bucket name "a.b" is not valid: use letters, digits, '-' and '_')",
        R"(natbus: key_value: bucket name "" is not valid: use letters, digits, '-' and '_')",
        "natbus: key_value: history must be 1 to 64, got 0 (stream=KV_h)",
        "natbus: key_value: history must be 1 to 64, got 65 (stream=KV_h)",
        "natbus: key_value: ttl must not be negative, got -1 ms (stream=KV_h)",
        "natbus: key_value: replicas must be 1 to 5, got 6 (stream=KV_h)",
        "natbus: key_value: max_value_size must be positive or -1, got 0 (stream=KV_h)",
        R"(natbus: delete_key_value: bucket name "x y" is not valid: use letters, digits, '-' and '_')",
    };
    EXPECT_EQ(errors, expected_buckets);

    // A value over the server's max_payload in a bucket without a limit of its own; a value
    // that is not text asked for as text.
    KeyValue open = co_await bus.key_value({.bucket = "open", .storage = natbus::StorageType::memory});
    const std::string huge(std::size_t{1024 * 1024} + 1, 'x');  // the test server's max_payload is the default, 1 MiB
    auto too_large = [&] { return open.put("big", huge); };
    const std::string over = co_await fails_with<natbus::PayloadTooLargeError>(too_large);
    EXPECT_NE(over.find("$KV.open.big"), std::string::npos) << over;
    (void)co_await open.put("bin", std::string_view("\xff\xfe", 2));
    const auto bin = co_await open.get("bin");
    std::string not_text;
    try {
      (void)bin.value().as_text();
    } catch (const natbus::DecodeError& e) {
      not_text = e.what();
    }
    EXPECT_NE(not_text.find("value of key \"bin\" (revision 1) is not valid UTF-8"), std::string::npos) << not_text;
    const natbus::StreamInfo open_si = co_await bus.stream_info("KV_open");
    EXPECT_EQ(open_si.messages, 1U);
    co_await bus.delete_key_value("open");

    // Nothing reached the server: the bucket is empty, and no other bucket was made.
    const natbus::StreamInfo si = co_await bus.stream_info("KV_strict");
    EXPECT_EQ(si.messages, 0U);
    const auto streams = co_await bus.stream_names();
    EXPECT_EQ(streams, std::vector<std::string>{"KV_strict"});
    // An empty handle says so.
    KeyValue none;
    auto empty_handle = [&] { return none.get("a"); };
    const std::string unbound = co_await fails_with<natbus::InvalidArgument>(empty_handle);
    EXPECT_EQ(unbound, "natbus: kv.get: empty KeyValue (default-constructed or moved from)");
    co_await bus.close();
  }());
}

#ifdef NATBUS_EXAMPLE_KV
TEST(Example, KvConfigPrintsWhatTheReadmeShows) {
  NatsServer server(ServerOptions{.user = "nats-user", .password = "changeme"});
  ChildProcess example({NATBUS_EXAMPLE_KV}, {"NATS_SERVER=" + server.url(), "NATS_USERNAME=nats-user", "NATS_PASSWORD=changeme"});
  const auto last = example.wait_for_line("keys: ", 60s);
  EXPECT_TRUE(last.has_value()) << ::testing::PrintToString(example.output());
  EXPECT_EQ(example.wait(30s), 0) << ::testing::PrintToString(example.output());
  std::vector<std::string> printed;
  for (const auto& l : example.output()) {
    if (l.find(" INFO ") == std::string::npos && l.find(" DEBUG ") == std::string::npos) printed.push_back(l);
  }
  const std::vector<std::string> expected{
      "put db.url at revision 1",
      "updated db.url to revision 3",
      std::string("stale update refused: natbus: kv.update: key \"db.url\" of bucket \"example_settings\" is no longer at revision 1 ") +
          "(subject=$KV.example_settings.db.url stream=KV_example_settings) [server: wrong last sequence: 3, err_code 10071]",
      "db.url = postgres://db2:5432/shop (revision 3)",
      "watch: put db.pool = '8' (revision 2)",
      "watch: put db.url = 'postgres://db2:5432/shop' (revision 3)",
      "watch: that was every current value",
      "watch: put db.pool = '16' (revision 4)",
      "watch: erase db.pool = '' (revision 5)",
      "history db.url: postgres://db:5432/shop at revision 1",
      "history db.url: postgres://db2:5432/shop at revision 3",
      "keys: db.url",
  };
  EXPECT_EQ(printed, expected);
}
#endif
