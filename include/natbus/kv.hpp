// The Key-Value store (ADR-8), wire-compatible with nats.go, nats.py and the other official
// clients: a bucket is the stream KV_<bucket>, a key the subject $KV.<bucket>.<key>, and the
// revision of a value its stream sequence.
//
//   natbus::KeyValue kv = co_await bus.key_value({.bucket = "config", .history = 5});
//   std::uint64_t rev = co_await kv.put("db.url", "postgres://db:5432");
//   if (auto e = co_await kv.get("db.url")) std::cout << e->as_text() << " at " << e->revision << '\n';
//   co_await kv.update("db.url", "postgres://db2:5432", rev);   // WrongLastRevisionError if it moved
//   auto w = co_await kv.watch("db.>");
//   while (auto u = co_await w.next()) { if (u.entry) apply(*u.entry); }
//
// Keys: letters, digits and `-/_=.`, not starting or ending with '.'; watch patterns may use
// the NATS wildcards `*` and `>`. Use it on the loop thread of the bus it came from.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "natbus/bus.hpp"
#include "natbus/config.hpp"
#include "natbus/error.hpp"
#include "natbus/task.hpp"

namespace natbus {

/// key_value(config): the bucket to create, or to bind to when it exists with this
/// configuration. Plain views and scalars (safe as a temporary at a co_await).
struct KeyValueConfig {
  std::string_view bucket{};                ///< letters, digits, '-' and '_'
  std::string_view description{};           ///< for humans
  int history = 1;                          ///< values kept per key, 1 to 64
  std::chrono::milliseconds ttl{0};         ///< how long a value lives (0: forever)
  std::int32_t max_value_size = -1;         ///< largest value accepted (-1: the server's limit)
  std::int64_t max_bytes = -1;              ///< size of the bucket (-1: unlimited)
  StorageType storage = StorageType::file;  ///< file or memory
  int replicas = 1;                         ///< copies in a cluster, 1 to 5
};
static_assert(std::is_trivially_destructible_v<KeyValueConfig>);

/// What a revision of a key is.
enum class KeyValueOp { put, del, purge };

/// One revision of a key: its value, or a delete or purge marker.
struct KeyValueEntry {
  std::string bucket;                               ///< the bucket
  std::string key;                                  ///< the key
  std::string value;                                ///< the bytes (empty for markers)
  std::uint64_t revision = 0;                       ///< the stream sequence that stored it
  std::chrono::system_clock::time_point created{};  ///< when the server stored it
  std::uint64_t delta = 0;                          ///< newer entries a watcher had still to see
  KeyValueOp operation = KeyValueOp::put;           ///< put, del (erase) or purge

  /// The value as UTF-8 text; DecodeError when it is not valid UTF-8.
  [[nodiscard]] std::string_view as_text() const;
  /// The value as bytes.
  [[nodiscard]] std::span<const std::byte> as_bytes() const noexcept {
    return std::as_bytes(std::span<const char>(value.data(), value.size()));
  }
  /// The value parsed as JSON; DecodeError when it is not. Needs <natbus/json.hpp>.
  template <class Tag = detail::JsonTag>
  requires std::same_as<Tag, detail::JsonTag>
  [[nodiscard]] typename detail::needs_natbus_json_hpp<Tag>::json as_json() const {
    return detail::needs_natbus_json_hpp<Tag>::parse(key, value);
  }
};

/// KeyValue::watch(): what a watcher is sent.
struct KeyWatchOptions {
  bool include_history = false;  ///< every stored revision first, not only the newest of each key
  bool ignore_deletes = false;   ///< leave out delete and purge markers
  bool meta_only = false;        ///< entries without their values (headers only on the wire)
  bool updates_only = false;     ///< no current values: only the changes from now on
};

/// What KeyWatcher::next() gives: an entry, the marker that the current values are all there,
/// or the end (false).
struct KeyWatchUpdate {
  std::optional<KeyValueEntry> entry{};  ///< a put, erase or purge of a watched key
  bool initial_done = false;             ///< true once: the current values have all come (unless updates_only)
  bool ended = false;                    ///< the watcher stopped: close(), the bus closed, or the bucket deleted (noticed within 15 s)
  /// False at the end.
  explicit operator bool() const noexcept { return !ended; }
};

class KeyWatcher;
namespace detail {
class KvCore;
struct KvWatchState;
/// Builds a KeyWatcher (natbus' own code; not API).
KeyWatcher make_key_watcher(KvWatchState* state) noexcept;
}  // namespace detail

/// Changes of the watched keys, in revision order (KeyValue::watch). Move-only.
class [[nodiscard("a KeyWatcher stops watching when it is destroyed: keep it and read it with next()")]] KeyWatcher {
 public:
  KeyWatcher() noexcept = default;
  /// Moves the watcher (the source becomes empty).
  KeyWatcher(KeyWatcher && other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  KeyWatcher& operator=(KeyWatcher&& other) noexcept;  ///< Moves the watcher; the one it replaces stops.
  KeyWatcher(const KeyWatcher&) = delete;
  KeyWatcher& operator=(const KeyWatcher&) = delete;
  ~KeyWatcher();

  /// The next update, waiting for one: first the current value of every watched key (unless
  /// updates_only), then one update with initial_done, then every change as it happens.
  Task<KeyWatchUpdate> next();
  /// Stops watching; next() then ends.
  Task<void> close();

 private:
  friend KeyWatcher detail::make_key_watcher(detail::KvWatchState * state) noexcept;
  explicit KeyWatcher(detail::KvWatchState * state) noexcept : state_(state) {}
  detail::KvWatchState* state_ = nullptr;
};

/// A bucket's state (KeyValue::status).
struct KeyValueStatus {
  std::string bucket;                       ///< the bucket
  std::uint64_t values = 0;                 ///< stored entries, markers and history included
  std::uint64_t bytes = 0;                  ///< their size
  std::int64_t history = 1;                 ///< values kept per key
  std::chrono::milliseconds ttl{0};         ///< how long a value lives (0: forever)
  std::int32_t max_value_size = -1;         ///< largest value accepted (-1: the server's limit)
  std::int64_t max_bytes = -1;              ///< size limit (-1: none)
  StorageType storage = StorageType::file;  ///< file or memory
  int replicas = 1;                         ///< copies in a cluster
  std::string description;                  ///< for humans
};

/// A Key-Value bucket (NatsBus::key_value). A cheap handle: copies share the bucket; it keeps
/// its bus' state alive, and its calls fail with ClosedError once the bus is closed. Every
/// error names the bucket and the key. Values are bytes (a string_view or a span of bytes).
class KeyValue {
 public:
  KeyValue() noexcept = default;
  /// natbus' own code: wraps a bucket.
  KeyValue(detail::LibraryKey key, detail::KvCore* core) noexcept;
  KeyValue(const KeyValue& other) noexcept;             ///< Another handle on the same bucket.
  KeyValue& operator=(const KeyValue& other) noexcept;  ///< Another handle on the same bucket.
  /// Moves the handle (the source becomes empty).
  KeyValue(KeyValue&& other) noexcept : core_(std::exchange(other.core_, nullptr)) {}
  KeyValue& operator=(KeyValue&& other) noexcept;  ///< Moves the handle (the source becomes empty).
  ~KeyValue();

  /// The bucket's name.
  [[nodiscard]] std::string_view bucket() const noexcept;

  /// Stores `value` under `key`; returns its revision.
  Task<std::uint64_t> put(std::string_view key, std::string_view value);
  /// Stores `value` under `key`; returns its revision.
  Task<std::uint64_t> put(std::string_view key, std::span<const std::byte> value);
  /// Stores `value` only if `key` has none (never set, erased or purged); returns the revision.
  /// KeyExistsError when it has one.
  Task<std::uint64_t> create(std::string_view key, std::string_view value);
  /// Stores `value` only if the newest revision of `key` is `last_revision`; returns the new
  /// revision. WrongLastRevisionError when another revision came in between.
  Task<std::uint64_t> update(std::string_view key, std::string_view value, std::uint64_t last_revision);
  /// The newest value of `key`; empty when it has none (never set, erased or purged).
  Task<std::optional<KeyValueEntry>> get(std::string_view key);
  /// That revision of `key`; empty when the bucket does not hold it (or it is another key's).
  Task<std::optional<KeyValueEntry>> get(std::string_view key, std::uint64_t revision);
  /// Erases `key`: a delete marker becomes its newest revision (history stays).
  Task<void> erase(std::string_view key);
  /// Purges `key`: every revision goes, and a purge marker stays as its newest.
  Task<void> purge(std::string_view key);
  /// Every key that holds a value now (erased and purged ones left out), sorted.
  Task<std::vector<std::string>> keys();
  /// Every stored revision of `key`, oldest first, markers included (empty when none).
  Task<std::vector<KeyValueEntry>> history(std::string_view key);
  /// Watches the keys `pattern` matches (`*` and `>` wildcards allowed).
  Task<KeyWatcher> watch(std::string_view pattern, const KeyWatchOptions& options = {});
  /// Watches every key of the bucket.
  Task<KeyWatcher> watch_all(const KeyWatchOptions& options = {}) { return watch(">", options); }
  /// The bucket's configuration and size.
  Task<KeyValueStatus> status();

 private:
  detail::KvCore* core_ = nullptr;
};

}  // namespace natbus
