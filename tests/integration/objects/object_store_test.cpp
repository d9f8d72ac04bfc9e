// The Object Store (ADR-20) against a real server: the bucket's stream as nats.go makes it,
// chunked puts with their SHA-256 digest, replacing and erasing (old chunks purged), list and
// watch, a corrupt object read as a DecodeError, a 200 MiB object streamed from a file and read
// back chunk by chunk in bounded memory, and bad input refused before anything is written.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <filesystem>
#include <fstream>

#include "base/sha256.hpp"
#include "base/util.hpp"
#include "natbus/object_store.hpp"
#include "natbus/stream_info.hpp"
#include "support/bus_test.hpp"
#include "support/child_process.hpp"

using namespace std::chrono_literals;
using natbus::NatsBus;
using natbus::ObjectInfo;
using natbus::ObjectStore;
using natbus::Task;
using namespace natbus::testing;

namespace {

/// The test pattern the Go interop program writes too: byte i is (31 i + 7) mod 251.
std::string pattern(std::size_t n, std::size_t from = 0) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((31 * (from + i) + 7) % 251);
  return s;
}

std::string digest_of(std::string_view data) {
  natbus::detail::Sha256 sha;
  sha.update(data);
  const auto d = sha.finish();
  return "SHA-256=" + natbus::detail::base64url_encode(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

/// "<accepted>" when the call `f` makes succeeds; the text of the E it throws; or "<other: ...>".
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

/// Resident memory of this process, from /proc/self/statm.
std::size_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0;
  std::size_t resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

TEST(ObjectStore, PutGetInfoListReplaceAndEraseAsADR20Says) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    ObjectStore store = co_await bus.object_store({.bucket = "files", .description = "test files", .storage = natbus::StorageType::memory});
    EXPECT_EQ(store.bucket(), "files");
    const natbus::StreamInfo si = co_await bus.stream_info("OBJ_files");
    EXPECT_EQ(si.subjects, (std::vector<std::string>{"$O.files.C.>", "$O.files.M.>"}));
    EXPECT_EQ(si.raw["config"]["allow_rollup_hdrs"], true);
    EXPECT_EQ(si.raw["config"]["allow_direct"], true);
    EXPECT_EQ(si.raw["config"]["discard"], "new");

    // 300 KiB in 128 KiB chunks: three chunk messages and one meta.
    const std::string data = pattern(300 * 1024);
    const natbus::Header headers[] = {{"content-type", "application/octet-stream"}};
    const ObjectInfo put = co_await store.put("dir/a.bin", data, {.description = "three chunks", .headers = headers});
    EXPECT_EQ(put.size, data.size());
    EXPECT_EQ(put.chunks, 3U);
    EXPECT_EQ(put.chunk_size, 128U * 1024U);
    EXPECT_EQ(put.digest, digest_of(data));
    EXPECT_FALSE(put.nuid.empty());
    const std::string back = co_await store.get("dir/a.bin");
    EXPECT_EQ(back.size(), data.size());
    EXPECT_TRUE(back == data);
    const ObjectInfo info = co_await store.info("dir/a.bin");
    EXPECT_EQ(info.name, "dir/a.bin");
    EXPECT_EQ(info.description, "three chunks");
    EXPECT_EQ(info.headers, (std::vector<std::pair<std::string, std::string>>{{"content-type", "application/octet-stream"}}));
    EXPECT_EQ(info.nuid, put.nuid);
    EXPECT_EQ(info.digest, put.digest);
    EXPECT_GT(info.modified, std::chrono::system_clock::now() - 1min);
    const natbus::StreamInfo after_put = co_await bus.stream_info("OBJ_files");
    EXPECT_EQ(after_put.messages, 4U);

    // An empty object, and a replacement: the old chunks go once the new meta is stored.
    const ObjectInfo empty = co_await store.put("empty", std::string_view{});
    EXPECT_EQ(empty.chunks, 0U);
    const std::string nothing = co_await store.get("empty");
    EXPECT_TRUE(nothing.empty());
    const ObjectInfo replaced = co_await store.put("dir/a.bin", std::string_view("small"));
    EXPECT_NE(replaced.nuid, put.nuid);
    const std::string small = co_await store.get("dir/a.bin");
    EXPECT_EQ(small, "small");
    const natbus::StreamInfo after_replace = co_await bus.stream_info("OBJ_files");
    EXPECT_EQ(after_replace.messages, 3U);  // the new chunk, its meta, the empty object's meta
    const std::vector<ObjectInfo> listed = co_await store.list();
    std::vector<std::string> names;
    for (const auto& o : listed) names.push_back(o.name);
    EXPECT_EQ(names, (std::vector<std::string>{"dir/a.bin", "empty"}));

    // Erased: gone from get, info and list; its chunks purged; erasing again is no error.
    co_await store.erase("dir/a.bin");
    auto get_erased = [&] { return store.get("dir/a.bin"); };
    const std::string erased = co_await fails_with<natbus::NotFoundError>(get_erased);
    EXPECT_NE(erased.find("object \"dir/a.bin\" of bucket \"files\" does not exist (erased)"), std::string::npos) << erased;
    auto info_erased = [&] { return store.info("dir/a.bin"); };
    const std::string no_info = co_await fails_with<natbus::NotFoundError>(info_erased);
    EXPECT_NE(no_info.find("(erased)"), std::string::npos) << no_info;
    const std::vector<ObjectInfo> listed_after = co_await store.list();
    EXPECT_EQ(listed_after.size(), 1U);
    const natbus::StreamInfo after_erase = co_await bus.stream_info("OBJ_files");
    EXPECT_EQ(after_erase.messages, 2U);  // two metas: the empty object's and the deleted marker
    co_await store.erase("dir/a.bin");
    auto erase_missing = [&] { return store.erase("never"); };
    const std::string missing = co_await fails_with<natbus::NotFoundError>(erase_missing);
    EXPECT_NE(missing.find("object \"never\" of bucket \"files\" does not exist"), std::string::npos) << missing;

    // Bind by name; delete the bucket.
    ObjectStore bound = co_await bus.object_store("files");
    const ObjectInfo via_bound = co_await bound.info("empty");
    EXPECT_EQ(via_bound.size, 0U);
    co_await bus.delete_object_store("files");
    auto bind_gone = [&] { return bus.object_store("files"); };
    const std::string gone = co_await fails_with<natbus::NotFoundError>(bind_gone);
    EXPECT_NE(gone.find("object store \"files\" does not exist"), std::string::npos) << gone;
    co_await bus.close();
  }());
}

TEST(ObjectStore, ACorruptObjectIsADecodeErrorNeverWrongBytes) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    ObjectStore store = co_await bus.object_store({.bucket = "bad", .storage = natbus::StorageType::memory});
    const std::string data = pattern(3000);
    const ObjectInfo put = co_await store.put("x", data, {.chunk_size = 1000});
    EXPECT_EQ(put.chunks, 3U);
    // The middle chunk replaced by one of the same size with other bytes.
    co_await bus.delete_message("OBJ_bad", 2);
    natbus::MessageOptions bare;
    bare.natbus_headers = false;
    bare.ensure_trace = false;
    auto forged = natbus::BusMessage::from_bytes("$O.bad.C." + put.nuid, std::string(1000, 'z'), bare);
    (void)co_await bus.publish(std::move(forged));
    auto get_corrupt = [&] { return store.get("x"); };
    const std::string corrupt = co_await fails_with<natbus::DecodeError>(get_corrupt);
    EXPECT_NE(corrupt.find("object \"x\" of bucket \"bad\" is corrupt: 3000 bytes with digest"), std::string::npos) << corrupt;
    // Read chunk by chunk, the end is the error: no reader takes the bytes for the object.
    natbus::ObjectReader r = co_await store.open("x");
    std::size_t chunks = 0;
    std::string failure;
    try {
      for (;;) {
        std::optional<std::string> c = co_await r.next();
        if (!c) break;
        ++chunks;
      }
    } catch (const natbus::DecodeError& e) {
      failure = e.what();
    }
    EXPECT_EQ(chunks, 3U);
    EXPECT_NE(failure.find("is corrupt"), std::string::npos) << failure;
    co_await bus.close();
  }());
}

TEST(ObjectStore, AWatcherSeesTheCurrentObjectsThenPutsAndErasures) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    ObjectStore store = co_await bus.object_store({.bucket = "w", .storage = natbus::StorageType::memory});
    (void)co_await store.put("one", std::string_view("1"));
    (void)co_await store.put("two", std::string_view("22"));
    natbus::ObjectWatcher w = co_await store.watch();
    std::vector<std::string> seen;
    const auto take = [&](int n) -> Task<void> {
      for (int i = 0; i < n; ++i) {
        Task<natbus::ObjectWatchUpdate> waiting = w.next();
        const natbus::ObjectWatchUpdate u = co_await natbus::with_timeout(std::move(waiting), 10s);
        if (!u) {
          seen.emplace_back("end");
        } else if (u.initial_done) {
          seen.emplace_back("init-done");
        } else {
          seen.push_back(fmt::format("{} {}{}", u.info->name, u.info->size, u.info->deleted ? " deleted" : ""));
        }
      }
    };
    co_await take(3);
    EXPECT_EQ(seen, (std::vector<std::string>{"one 1", "two 2", "init-done"}));
    seen.clear();
    (void)co_await store.put("three", std::string_view("333"));
    co_await store.erase("one");
    co_await take(2);
    EXPECT_EQ(seen, (std::vector<std::string>{"three 3", "one 0 deleted"}));
    seen.clear();
    co_await w.close();
    co_await take(1);
    EXPECT_EQ(seen, std::vector<std::string>{"end"});
    co_await bus.close();
  }());
}

TEST(ObjectStore, A200MiBFileIsStoredAndStreamedBackInBoundedMemory) {
  NatsServer server;
  // Sanitizers keep freed memory in quarantine (RSS says nothing there) and run slower: a
  // smaller object checks the same path, the memory bound only without them.
  const std::size_t size = kSanitized ? std::size_t{32} << 20 : std::size_t{200} << 20;
  const auto path = std::filesystem::temp_directory_path() / fmt::format("natbus-object-{}.bin", ::getpid());
  {
    std::ofstream out(path, std::ios::binary);
    for (std::size_t at = 0; at < size; at += 1 << 20) out << pattern(1 << 20, at);
  }
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    ObjectStore store = co_await bus.object_store({.bucket = "big"});
    const ObjectInfo put = co_await store.put_file("big.bin", path.string());
    EXPECT_EQ(put.size, size);
    EXPECT_EQ(put.chunks, size / (128 * 1024));
    std::filesystem::remove(path);
    const std::size_t before = rss_bytes();
    std::size_t peak = before;
    natbus::ObjectReader r = co_await store.open("big.bin");
    std::size_t at = 0;
    bool same = true;
    for (;;) {
      std::optional<std::string> c = co_await r.next();
      if (!c) break;
      same = same && *c == pattern(c->size(), at);
      at += c->size();
      peak = std::max(peak, rss_bytes());
    }
    EXPECT_EQ(at, size);
    EXPECT_TRUE(same);
    std::printf("streamed %zu MiB: RSS %zu MiB before, %zu MiB at most while reading\n", size >> 20, before >> 20, peak >> 20);
    if (!kSanitized) {
      EXPECT_LT(peak - before, std::size_t{32} << 20);
    }
    co_await bus.close();
  }());
  std::filesystem::remove(path);
}

TEST(ObjectStore, BadInputIsRefusedNamingTheObjectAndBucketAndWritesNothing) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    ObjectStore store = co_await bus.object_store({.bucket = "strict", .storage = natbus::StorageType::memory});
    std::vector<std::string> errors;
    const auto refuse = [&](auto& call) -> Task<void> {
      std::string error = co_await fails_with<natbus::InvalidArgument>(call);
      errors.push_back(std::move(error));
    };
    const natbus::Header empty_header[] = {{"", "v"}};
    auto no_name = [&] { return store.put("", std::string_view("x")); };
    auto zero_chunk = [&] { return store.put("a", std::string_view("x"), {.chunk_size = 0}); };
    auto huge_chunk = [&] { return store.put("a", std::string_view("x"), {.chunk_size = 2 << 20}); };
    auto bad_header = [&] { return store.put("a", std::string_view("x"), {.headers = empty_header}); };
    auto no_file = [&] { return store.put_file("a", "/nonexistent/natbus.bin"); };
    auto get_no_name = [&] { return store.get(""); };
    auto bad_bucket = [&] { return bus.object_store({.bucket = "a.b"}); };
    auto negative_ttl = [&] { return bus.object_store({.bucket = "t", .ttl = -1ms}); };
    auto replicas = [&] { return bus.object_store({.bucket = "t", .replicas = 0}); };
    co_await refuse(no_name);
    co_await refuse(zero_chunk);
    co_await refuse(huge_chunk);
    co_await refuse(bad_header);
    co_await refuse(no_file);
    co_await refuse(get_no_name);
    co_await refuse(bad_bucket);
    co_await refuse(negative_ttl);
    co_await refuse(replicas);
    const std::vector<std::string> expected{
        R"(natbus: object.put: an object of bucket "strict" needs a name (subject=$O.strict.M. stream=OBJ_strict))",
        R"(natbus: object.put: chunk_size 0 for object "a" of bucket "strict" must be 1 to the server's max_payload (1048576) (subject=$O.strict.M.YQ== stream=OBJ_strict))",
        R"(natbus: object.put: chunk_size 2097152 for object "a" of bucket "strict" must be 1 to the server's max_payload (1048576) (subject=$O.strict.M.YQ== stream=OBJ_strict))",
        R"(natbus: object.put: a header of object "a" of bucket "strict" has an empty or non-UTF-8 name or value (subject=$O.strict.M.YQ== stream=OBJ_strict))",
        R"(natbus: object.put_file: cannot open /nonexistent/natbus.bin for object "a" of bucket "strict": No such file or directory (subject=$O.strict.M.YQ== stream=OBJ_strict))",
        R"(natbus: object.get: an object of bucket "strict" needs a name (subject=$O.strict.M. stream=OBJ_strict))",
        R"(natbus: object_store: object store name "a.b" is not valid: use letters, digits, '-' and '_')",
        "natbus: object_store: ttl must not be negative, got -1 ms (stream=OBJ_t)",
        "natbus: object_store: replicas must be 1 to 5, got 0 (stream=OBJ_t)",
    };
    EXPECT_EQ(errors, expected);
    const natbus::StreamInfo si = co_await bus.stream_info("OBJ_strict");
    EXPECT_EQ(si.messages, 0U);
    const auto streams = co_await bus.stream_names();
    EXPECT_EQ(streams, std::vector<std::string>{"OBJ_strict"});
    co_await bus.close();
  }());
}

#ifdef NATBUS_EXAMPLE_OBJECTS
TEST(Example, ObjectFilesPrintsWhatTheReadmeShows) {
  NatsServer server(ServerOptions{.user = "nats-user", .password = "changeme"});
  ChildProcess example({NATBUS_EXAMPLE_OBJECTS}, {"NATS_SERVER=" + server.url(), "NATS_USERNAME=nats-user", "NATS_PASSWORD=changeme"});
  const auto last = example.wait_for_line("after erase: ", 60s);
  EXPECT_TRUE(last.has_value()) << ::testing::PrintToString(example.output());
  EXPECT_EQ(example.wait(30s), 0) << ::testing::PrintToString(example.output());
  std::vector<std::string> printed;
  for (const auto& l : example.output()) {
    if (l.find(" INFO ") == std::string::npos && l.find(" DEBUG ") == std::string::npos) printed.push_back(l);
  }
  const std::vector<std::string> expected{
      "put reports/2026-11.bin: 1048576 bytes in 8 chunks, SHA-256=YxuEAn1rnlK1OcToNzYi0jAy363GTWCvhzOckDfk92k=",
      "read 1048576 bytes in 8 chunks, digest checked",
      "notes.txt: ship it",
      "list: notes.txt (7 bytes, )",
      "list: reports/2026-11.bin (1048576 bytes, November)",
      R"(after erase: natbus: object.info: object "notes.txt" of bucket "example_files" does not exist (erased) (subject=$O.example_files.M.bm90ZXMudHh0 stream=OBJ_example_files))",
  };
  EXPECT_EQ(printed, expected);
}
#endif
