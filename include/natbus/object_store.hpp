// The Object Store (ADR-20), wire-compatible with nats.go and the other official clients: a
// bucket is the stream OBJ_<bucket>; an object is chunks on $O.<bucket>.C.<nuid> and a meta
// message on $O.<bucket>.M.<base64url(name)>, with a SHA-256 digest that every read checks.
//
//   natbus::ObjectStore store = co_await bus.object_store({.bucket = "reports"});
//   natbus::ObjectInfo info = co_await store.put_file("2026-11.pdf", "/tmp/report.pdf");
//   std::string bytes = co_await store.get("2026-11.pdf");        // whole, digest checked
//   natbus::ObjectReader r = co_await store.open("2026-11.pdf");  // or chunk by chunk
//   while (auto chunk = co_await r.next()) out.write(chunk->data(), chunk->size());
//
// A read that does not match the object's size or digest throws DecodeError: never wrong bytes.
// Use it on the loop thread of the bus it came from.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "natbus/bus.hpp"
#include "natbus/config.hpp"
#include "natbus/error.hpp"
#include "natbus/message.hpp"
#include "natbus/task.hpp"

namespace natbus {

/// object_store(config): the bucket to create, or to bind to when it exists with this
/// configuration. Plain views and scalars (safe as a temporary at a co_await).
struct ObjectStoreConfig {
  std::string_view bucket{};                ///< letters, digits, '-' and '_'
  std::string_view description{};           ///< for humans
  std::chrono::milliseconds ttl{0};         ///< how long an object lives (0: forever)
  std::int64_t max_bytes = -1;              ///< size of the bucket (-1: unlimited)
  StorageType storage = StorageType::file;  ///< file or memory
  int replicas = 1;                         ///< copies in a cluster, 1 to 5
};
static_assert(std::is_trivially_destructible_v<ObjectStoreConfig>);

/// put(): what is stored beside the bytes. Plain views (safe as a temporary at a co_await).
struct ObjectMeta {
  std::string_view description{};         ///< for humans
  std::span<const Header> headers{};      ///< stored in the object's meta (nats.go: ObjectMeta.Headers)
  std::uint32_t chunk_size = 128 * 1024;  ///< bytes per chunk message (nats.go's default), 1 byte to the server's max_payload
};
static_assert(std::is_trivially_destructible_v<ObjectMeta>);

/// An object's meta data as stored (ObjectStore::info, put, list, watch).
struct ObjectInfo {
  std::string bucket;                                        ///< the bucket
  std::string name;                                          ///< the object's name
  std::string description;                                   ///< for humans
  std::vector<std::pair<std::string, std::string>> headers;  ///< the meta headers
  std::string nuid;                                          ///< the subject token its chunks are on
  std::uint64_t size = 0;                                    ///< bytes
  std::uint32_t chunks = 0;                                  ///< chunk messages
  std::uint32_t chunk_size = 0;                              ///< bytes per chunk (the last may be shorter)
  std::string digest;                                        ///< "SHA-256=<base64url>"
  std::chrono::system_clock::time_point modified{};          ///< when the server stored the meta
  bool deleted = false;                                      ///< erased (watch() shows these)
};

class ObjectReader;
class ObjectWatcher;
namespace detail {
class ObjCore;
struct ObjReadState;
struct ObjWatchState;
/// Builds the handles (natbus' own code; not API).
ObjectReader make_object_reader(ObjReadState* state) noexcept;
ObjectWatcher make_object_watcher(ObjWatchState* state) noexcept;
}  // namespace detail

/// An object read chunk by chunk (ObjectStore::open): at most a few chunks are in memory at a
/// time, whatever the object's size. Move-only.
class [[nodiscard("an ObjectReader stops reading when it is destroyed: keep it and read it with next()")]] ObjectReader {
 public:
  ObjectReader() noexcept = default;
  /// Moves the reader (the source becomes empty).
  ObjectReader(ObjectReader && other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  ObjectReader& operator=(ObjectReader&& other) noexcept;  ///< Moves the reader; the one it replaces stops.
  ObjectReader(const ObjectReader&) = delete;
  ObjectReader& operator=(const ObjectReader&) = delete;
  ~ObjectReader();

  /// The object's meta data.
  [[nodiscard]] const ObjectInfo& info() const;
  /// The next chunk, in order; empty once the whole object has come and its size and digest
  /// matched. DecodeError when they do not (the bytes handed out so far are not the object).
  Task<std::optional<std::string>> next();
  /// Stops reading.
  Task<void> close();

 private:
  friend ObjectReader detail::make_object_reader(detail::ObjReadState * state) noexcept;
  explicit ObjectReader(detail::ObjReadState * state) noexcept : state_(state) {}
  detail::ObjReadState* state_ = nullptr;
};

/// ObjectWatcher::next(): an object's new meta data, the marker that the current objects are
/// all there, or the end (false).
struct ObjectWatchUpdate {
  std::optional<ObjectInfo> info{};  ///< an object put or erased (deleted = true)
  bool initial_done = false;         ///< true once: every current object has come
  bool ended = false;                ///< the watcher stopped (close(), the bus closed)
  /// False at the end.
  explicit operator bool() const noexcept { return !ended; }
};

/// Puts and erasures of a bucket's objects, in order (ObjectStore::watch). Move-only.
class [[nodiscard("an ObjectWatcher stops watching when it is destroyed: keep it and read it with next()")]] ObjectWatcher {
 public:
  ObjectWatcher() noexcept = default;
  /// Moves the watcher (the source becomes empty).
  ObjectWatcher(ObjectWatcher && other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  ObjectWatcher& operator=(ObjectWatcher&& other) noexcept;  ///< Moves the watcher; the one it replaces stops.
  ObjectWatcher(const ObjectWatcher&) = delete;
  ObjectWatcher& operator=(const ObjectWatcher&) = delete;
  ~ObjectWatcher();

  /// The next update: first every current object, then one update with initial_done, then
  /// every put and erasure as it happens.
  Task<ObjectWatchUpdate> next();
  /// Stops watching; next() then ends.
  Task<void> close();

 private:
  friend ObjectWatcher detail::make_object_watcher(detail::ObjWatchState * state) noexcept;
  explicit ObjectWatcher(detail::ObjWatchState * state) noexcept : state_(state) {}
  detail::ObjWatchState* state_ = nullptr;
};

/// An Object Store bucket (NatsBus::object_store). A cheap handle: copies share the bucket; it
/// keeps its bus' state alive, and its calls fail with ClosedError once the bus is closed.
/// Every error names the bucket and the object.
class ObjectStore {
 public:
  ObjectStore() noexcept = default;
  /// natbus' own code: wraps a bucket.
  ObjectStore(detail::LibraryKey key, detail::ObjCore* core) noexcept;
  ObjectStore(const ObjectStore& other) noexcept;             ///< Another handle on the same bucket.
  ObjectStore& operator=(const ObjectStore& other) noexcept;  ///< Another handle on the same bucket.
  /// Moves the handle (the source becomes empty).
  ObjectStore(ObjectStore&& other) noexcept : core_(std::exchange(other.core_, nullptr)) {}
  ObjectStore& operator=(ObjectStore&& other) noexcept;  ///< Moves the handle (the source becomes empty).
  ~ObjectStore();

  /// The bucket's name.
  [[nodiscard]] std::string_view bucket() const noexcept;

  /// Stores `data` as `name` (replacing an object of that name once the new one is whole).
  Task<ObjectInfo> put(std::string_view name, std::span<const std::byte> data, const ObjectMeta& meta = {});
  /// Stores `data` as `name`.
  Task<ObjectInfo> put(std::string_view name, std::string_view data, const ObjectMeta& meta = {});
  /// Stores the file at `path` as `name`, read a chunk at a time (never whole in memory).
  Task<ObjectInfo> put_file(std::string_view name, std::string_view path, const ObjectMeta& meta = {});
  /// The whole object (NotFoundError when there is none; DecodeError when it is corrupt).
  Task<std::string> get(std::string_view name);
  /// The object as a stream of chunks (NotFoundError when there is none).
  Task<ObjectReader> open(std::string_view name);
  /// The object's meta data (NotFoundError when there is none or it was erased).
  Task<ObjectInfo> info(std::string_view name);
  /// Every object in the bucket (erased ones left out), by name.
  Task<std::vector<ObjectInfo>> list();
  /// Erases the object: its chunks go, a deleted marker stays (NotFoundError when there is none).
  Task<void> erase(std::string_view name);
  /// Watches the bucket's objects.
  Task<ObjectWatcher> watch();

 private:
  detail::ObjCore* core_ = nullptr;
};

}  // namespace natbus
