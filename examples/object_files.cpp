// The Object Store: files of any size shared with Go and Python services (nats.go's object
// store, same chunks, same digest). A put from a file, a streamed read, list, erase.
//   NATS_SERVER=127.0.0.1:4222 ./object_files
#include <natbus/natbus.hpp>

#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace {

natbus::Task<int> files() {
  const natbus::NatsConfig cfg =
      natbus::NatsConfig::from_env(natbus::NatsConfig{.username = "nats-user", .password = "changeme", .name = "object-files"});
  natbus::NatsBus bus{cfg};
  co_await bus.connect();
  natbus::ObjectStore store = co_await bus.object_store({.bucket = "example_files"});

  // A 1 MiB file goes in chunk by chunk (128 KiB each), never whole in memory.
  const auto path = std::filesystem::temp_directory_path() / "natbus-example-report.bin";
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < (1 << 20); ++i) out.put(static_cast<char>(i % 251));
  }
  const natbus::Header headers[] = {{"content-type", "application/octet-stream"}};
  const natbus::ObjectInfo put =
      co_await store.put_file("reports/2026-11.bin", path.string(), {.description = "November", .headers = headers});
  std::filesystem::remove(path);
  fmt::print("put {}: {} bytes in {} chunks, {}\n", put.name, put.size, put.chunks, put.digest);
  (void)co_await store.put("notes.txt", std::string_view("ship it"));

  // Read back chunk by chunk: the size and digest are checked before the end is reported.
  natbus::ObjectReader reader = co_await store.open("reports/2026-11.bin");
  std::size_t bytes = 0;
  int chunks = 0;
  while (auto chunk = co_await reader.next()) {
    bytes += chunk->size();
    ++chunks;
  }
  fmt::print("read {} bytes in {} chunks, digest checked\n", bytes, chunks);
  const std::string notes = co_await store.get("notes.txt");
  fmt::print("notes.txt: {}\n", notes);

  const std::vector<natbus::ObjectInfo> objects = co_await store.list();
  for (const natbus::ObjectInfo& o : objects) fmt::print("list: {} ({} bytes, {})\n", o.name, o.size, o.description);
  co_await store.erase("notes.txt");
  try {
    (void)co_await store.info("notes.txt");
  } catch (const natbus::NotFoundError& e) {
    fmt::print("after erase: {}\n", e.what());
  }
  co_await bus.delete_object_store("example_files");
  co_await bus.close();
  co_return 0;
}

}  // namespace

int main() { return natbus::run(files()); }
