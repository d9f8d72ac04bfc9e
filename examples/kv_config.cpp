// The Key-Value store: settings shared with Go and Python services (the same bucket, keys and
// revisions as nats.go's kv). Puts, a compare-and-set update, a watcher, history and keys.
//   NATS_SERVER=127.0.0.1:4222 ./kv_config
#include <natbus/natbus.hpp>

#include <fmt/format.h>

namespace {

const char* op_name(natbus::KeyValueOp op) {
  return op == natbus::KeyValueOp::put ? "put" : op == natbus::KeyValueOp::del ? "erase" : "purge";
}

natbus::Task<int> settings() {
  const natbus::NatsConfig cfg =
      natbus::NatsConfig::from_env(natbus::NatsConfig{.username = "nats-user", .password = "changeme", .name = "kv-config"});
  natbus::NatsBus bus{cfg};
  co_await bus.connect();
  natbus::KeyValue kv = co_await bus.key_value({.bucket = "example_settings", .history = 5});

  const std::uint64_t first = co_await kv.put("db.url", "postgres://db:5432/shop");
  (void)co_await kv.put("db.pool", "8");
  fmt::print("put db.url at revision {}\n", first);

  // Compare-and-set: the update names the revision it read; a writer that read an older one loses.
  const std::uint64_t second = co_await kv.update("db.url", "postgres://db2:5432/shop", first);
  fmt::print("updated db.url to revision {}\n", second);
  try {
    (void)co_await kv.update("db.url", "postgres://stale:5432/shop", first);
  } catch (const natbus::WrongLastRevisionError& e) {
    fmt::print("stale update refused: {}\n", e.what());
  }
  const std::optional<natbus::KeyValueEntry> now = co_await kv.get("db.url");
  if (now) fmt::print("db.url = {} (revision {})\n", now->as_text(), now->revision);

  // A watcher: the current values, the marker, then every change as it happens.
  natbus::KeyWatcher w = co_await kv.watch("db.>");
  (void)co_await kv.put("db.pool", "16");
  co_await kv.erase("db.pool");
  bool current = true;
  for (int changes = 0; changes < 2;) {  // the two changes above
    const natbus::KeyWatchUpdate u = co_await w.next();
    if (!u) break;
    if (u.initial_done) {
      fmt::print("watch: that was every current value\n");
      current = false;
      continue;
    }
    const natbus::KeyValueEntry& e = *u.entry;
    fmt::print("watch: {} {} = '{}' (revision {})\n", op_name(e.operation), e.key, e.value, e.revision);
    if (!current) ++changes;
  }
  co_await w.close();

  const std::vector<natbus::KeyValueEntry> history = co_await kv.history("db.url");
  for (const auto& e : history) fmt::print("history db.url: {} at revision {}\n", e.value, e.revision);
  const std::vector<std::string> keys = co_await kv.keys();
  fmt::print("keys: {}\n", fmt::join(keys, ", "));
  co_await bus.delete_key_value("example_settings");
  co_await bus.close();
  co_return 0;
}

}  // namespace

int main() { return natbus::run(settings()); }
