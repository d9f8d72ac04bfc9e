// The Object Store (ADR-20), as nats.go 1.22 writes and reads it: bucket `b` is the stream
// OBJ_b on $O.b.C.> and $O.b.M.> (rollup allowed, direct get, discard new); an object is its
// chunks, bare messages on $O.b.C.<nuid>, then its meta, JSON on $O.b.M.<base64url(name)> with
// Nats-Rollup: sub (so only the newest meta of a name stays); the old chunks are purged once the
// new meta is stored. Reads go through ordered consumers and check the size and SHA-256 digest.
// Built on the bus (publisher, JsApi, ordered consumers), beside kv/.
#include "natbus/object_store.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <fstream>
#include <memory>
#include <system_error>

#include "base/ref.hpp"
#include "base/sha256.hpp"
#include "base/util.hpp"
#include "bus/bus_core.hpp"
#include "bus/ordered.hpp"
#include "jetstream/js_api.hpp"
#include "message/msg_impl.hpp"
#include "natbus/json.hpp"
#include "natbus/stream_info.hpp"

namespace natbus {

namespace detail {

namespace {

constexpr std::size_t kInFlightChunks = 32;                     // chunks published and not yet acknowledged, at most
constexpr std::size_t kReadBuffer = 8;                          // chunks a reader holds ahead, at most
constexpr std::string_view kZeroTime = "0001-01-01T00:00:00Z";  // what nats.go stores as mtime

bool bucket_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'; }

void check_bucket(std::string_view op, std::string_view bucket) {
  if (bucket.empty() || !std::all_of(bucket.begin(), bucket.end(), bucket_char)) {
    throw InvalidArgument(fmt::format("object store name \"{}\" is not valid: use letters, digits, '-' and '_'", bucket),
                          ErrorContext{.operation = std::string(op)});
  }
}

std::string digest_text(Sha256& sha) {
  const auto d = sha.finish();
  return "SHA-256=" + base64url_encode(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

}  // namespace

/// One bucket, shared by the ObjectStore handles that refer to it.
class ObjCore final : public RefCounted {
 public:
  ObjCore(Ref<BusCore> b, std::string name) : bus(std::move(b)), bucket(std::move(name)) {
    stream = "OBJ_" + bucket;
    chunk_prefix = "$O." + bucket + ".C.";
    meta_prefix = "$O." + bucket + ".M.";
  }
  Ref<BusCore> bus;
  std::string bucket;
  std::string stream;
  std::string chunk_prefix;  // "$O.<bucket>.C."
  std::string meta_prefix;   // "$O.<bucket>.M."

  [[nodiscard]] std::string meta_subject(std::string_view name) const { return meta_prefix + base64url_encode(name); }
  [[nodiscard]] ErrorContext context(std::string_view op, std::string_view name) const {
    return ErrorContext{.operation = std::string(op), .subject = meta_subject(name), .stream = stream};
  }
  void check_name(std::string_view op, std::string_view name) const {
    if (name.empty()) throw InvalidArgument(fmt::format("an object of bucket \"{}\" needs a name", bucket), context(op, name));
    if (!valid_utf8(name)) {
      throw InvalidArgument(fmt::format("object name of bucket \"{}\" is not valid UTF-8", bucket),
                            ErrorContext{.operation = std::string(op)});
    }
  }
};

namespace {

nlohmann::json meta_json(const ObjectInfo& i) {
  nlohmann::json j = nlohmann::json::object();
  j["name"] = i.name;
  if (!i.description.empty()) j["description"] = i.description;
  if (!i.headers.empty()) {
    nlohmann::json h = nlohmann::json::object();
    for (const auto& [k, v] : i.headers) h[k].push_back(v);
    j["headers"] = std::move(h);
  }
  if (i.chunk_size > 0) j["options"] = {{"max_chunk_size", i.chunk_size}};
  j["bucket"] = i.bucket;
  j["nuid"] = i.nuid;
  j["size"] = i.size;
  j["mtime"] = kZeroTime;
  j["chunks"] = i.chunks;
  if (!i.digest.empty()) j["digest"] = i.digest;
  if (i.deleted) j["deleted"] = true;
  return j;
}

/// An object's meta message read back (DecodeError when it is not ADR-20 meta).
ObjectInfo info_of(const ObjCore& store, const ReceivedMessage& m) {
  const nlohmann::json j = nlohmann::json::parse(m.raw_payload(), nullptr, false);
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) {
    throw DecodeError(fmt::format("the meta on {} of bucket \"{}\" is not object meta", m.subject(), store.bucket),
                      ErrorContext{.operation = "object_store", .subject = std::string(m.subject()), .stream = store.stream});
  }
  ObjectInfo i;
  try {
    i.bucket = store.bucket;
    i.name = j["name"].get<std::string>();
    i.description = j.value("description", std::string());
    if (const auto h = j.find("headers"); h != j.end() && h->is_object()) {
      for (const auto& [k, vs] : h->items()) {
        if (vs.is_array()) {
          for (const auto& v : vs) i.headers.emplace_back(k, v.get<std::string>());
        }
      }
    }
    if (const auto o = j.find("options"); o != j.end() && o->is_object()) i.chunk_size = o->value("max_chunk_size", std::uint32_t{0});
    i.nuid = j.value("nuid", std::string());
    i.size = j.value("size", std::uint64_t{0});
    i.chunks = j.value("chunks", std::uint32_t{0});
    i.digest = j.value("digest", std::string());
    i.deleted = j.value("deleted", false);
  } catch (const nlohmann::json::exception& e) {
    throw DecodeError(fmt::format("the meta of object \"{}\" of bucket \"{}\" cannot be read: {}", i.name, store.bucket, e.what()),
                      ErrorContext{.operation = "object_store", .subject = std::string(m.subject()), .stream = store.stream});
  }
  if (const auto md = m.metadata()) i.modified = md->timestamp;
  return i;
}

BusMessage bare(std::string_view subject, std::string_view data) {
  MessageOptions o;
  o.natbus_headers = false;
  o.ensure_trace = false;
  return BusMessage::from_bytes(subject, data, o);
}

/// The newest meta of `name` (deleted ones too); empty when the bucket has none.
Task<std::optional<ObjectInfo>> load_meta(Ref<ObjCore> store, std::string name) {
  std::optional<MsgPtr> found;
  try {
    Task<MsgPtr> getting = store->bus->js().get_message(store->stream, 0, store->meta_subject(name));
    found = co_await std::move(getting);
  } catch (const NotFoundError& e) {
    if (e.js_code() == 10059) {
      throw NotFoundError(fmt::format("object store \"{}\" does not exist (any more)", store->bucket),
                          store->context("object_store", name));
    }
  }
  if (!found) co_return std::nullopt;
  const ReceivedMessage m(kLibrary, new MsgImpl(std::move(*found), store->bus.get()));
  co_return info_of(*store, m);
}

Task<ObjectInfo> live_meta(Ref<ObjCore> store, std::string op, std::string name) {
  Task<std::optional<ObjectInfo>> loading = load_meta(store, name);
  std::optional<ObjectInfo> info = co_await std::move(loading);
  if (!info || info->deleted) {
    throw NotFoundError(fmt::format("object \"{}\" of bucket \"{}\" does not exist{}", name, store->bucket, info ? " (erased)" : ""),
                        store->context(op, name));
  }
  co_return std::move(*info);
}

/// Where put() takes its bytes from: a buffer or a file, a chunk at a time.
struct Source {
  std::string_view data;  // the bytes, when there is no file
  std::ifstream file;     // or the file
  std::string path;       // (for errors)
  std::size_t offset = 0;
  /// The next chunk into `buf` (empty at the end).
  std::string_view next(std::string& buf, std::size_t chunk) {
    if (!file.is_open()) {
      const std::string_view c = data.substr(std::min(offset, data.size()), chunk);
      offset += c.size();
      return c;
    }
    buf.resize(chunk);
    file.read(buf.data(), static_cast<std::streamsize>(chunk));
    buf.resize(static_cast<std::size_t>(file.gcount()));
    return buf;
  }
};

Task<void> purge_chunks(Ref<ObjCore> store, std::string nuid) {
  Task<std::uint64_t> purging = store->bus->js().purge_stream(store->stream, store->chunk_prefix + nuid, 0, 0);
  (void)co_await std::move(purging);
}

Task<std::uint64_t> awaited(PublishFuture f) {
  const PubAck ack = co_await std::move(f);
  co_return ack.sequence;
}

Task<ObjectInfo> put_impl(Ref<ObjCore> store, std::string name, std::unique_ptr<Source> src, ObjectInfo info, std::uint32_t chunk_size) {
  const std::string op = "object.put";
  Task<std::optional<ObjectInfo>> loading = load_meta(store, name);
  const std::optional<ObjectInfo> before = co_await std::move(loading);
  info.nuid = random_token(22);
  const std::string subject = store->chunk_prefix + info.nuid;
  Sha256 sha;
  std::string buf;
  std::deque<PublishFuture> in_flight;
  std::exception_ptr error;
  try {
    for (;;) {
      const std::string_view chunk = src->next(buf, chunk_size);
      if (chunk.empty()) break;
      sha.update(chunk);
      info.size += chunk.size();
      ++info.chunks;
      Task<PublishFuture> sending = store->bus->publisher().publish_async(bare(subject, chunk));
      in_flight.push_back(co_await std::move(sending));
      if (in_flight.size() >= kInFlightChunks) {
        Task<std::uint64_t> acked = awaited(std::move(in_flight.front()));
        in_flight.pop_front();
        (void)co_await std::move(acked);
      }
    }
    if (src->file.is_open() && src->file.bad()) {
      throw InvalidArgument(fmt::format("reading {} for object \"{}\" failed", src->path, name), store->context(op, name));
    }
    info.digest = digest_text(sha);
    BusMessage meta = bare(store->meta_subject(name), meta_json(info).dump());
    meta.set_header("Nats-Rollup", "sub");
    Task<PublishFuture> sending = store->bus->publisher().publish_async(std::move(meta));
    in_flight.push_back(co_await std::move(sending));
    while (!in_flight.empty()) {
      Task<std::uint64_t> acked = awaited(std::move(in_flight.front()));
      in_flight.pop_front();
      (void)co_await std::move(acked);
    }
  } catch (const std::exception&) {
    error = std::current_exception();
  }
  if (error) {
    in_flight.clear();
    // The chunks stored so far belong to no meta: they go (best effort; the error is the news).
    try {
      Task<void> purging = purge_chunks(store, info.nuid);
      co_await std::move(purging);
    } catch (const std::exception&) {
    }
    std::rethrow_exception(error);
  }
  // The new object is whole: the old one's chunks go.
  if (before && !before->deleted && before->nuid != info.nuid) {
    Task<void> purging = purge_chunks(store, before->nuid);
    co_await std::move(purging);
  }
  info.modified = std::chrono::system_clock::now();
  co_return info;
}

}  // namespace

// ---- readers ------------------------------------------------------------------------------------

struct ObjReadInner {
  Ref<ObjCore> store;
  ObjectInfo info;
  MessageStream stream;
  Sha256 sha;
  std::uint64_t bytes = 0;
  std::uint32_t chunks = 0;
  bool done = false;
};

/// What an ObjectReader holds; a next() in progress holds the inner part too, so that the
/// reader may go away while it waits (taking the stream ends it).
struct ObjReadState {
  std::shared_ptr<ObjReadInner> inner;
};

ObjectReader make_object_reader(ObjReadState* state) noexcept { return ObjectReader(state); }

namespace {

Task<std::optional<std::string>> read_next(std::shared_ptr<ObjReadInner> s) {
  if (s->done) co_return std::nullopt;
  if (s->chunks < s->info.chunks) {
    ReceivedMessage m = co_await s->stream.next();
    if (!m) {
      s->done = true;
      throw ClosedError(fmt::format("reading object \"{}\" of bucket \"{}\" stopped after {} of {} chunks", s->info.name, s->store->bucket,
                                    s->chunks, s->info.chunks),
                        s->store->context("object.read", s->info.name));
    }
    std::string chunk(m.raw_payload());
    s->sha.update(chunk);
    s->bytes += chunk.size();
    ++s->chunks;
    if (s->bytes > s->info.size) {
      s->done = true;
      throw DecodeError(
          fmt::format("object \"{}\" of bucket \"{}\" has more than its {} bytes", s->info.name, s->store->bucket, s->info.size),
          s->store->context("object.read", s->info.name));
    }
    co_return chunk;
  }
  s->done = true;
  MessageStream ending = std::move(s->stream);
  const std::string digest = digest_text(s->sha);
  if (s->bytes != s->info.size || digest != s->info.digest) {
    throw DecodeError(fmt::format("object \"{}\" of bucket \"{}\" is corrupt: {} bytes with digest {}, its meta says {} bytes with {}",
                                  s->info.name, s->store->bucket, s->bytes, digest, s->info.size, s->info.digest),
                      s->store->context("object.read", s->info.name));
  }
  co_return std::nullopt;
}

Task<ObjectReader> open_impl(Ref<ObjCore> store, std::string name) {
  Task<ObjectInfo> meta = live_meta(store, "object.open", name);
  ObjectInfo info = co_await std::move(meta);
  auto state = std::make_shared<ObjReadInner>();
  state->store = store;
  state->info = std::move(info);
  if (state->info.chunks > 0) {
    OrderedOptions oo;
    oo.stream = store->stream;
    ConsumerSpec spec = ordered_spec("object.open", store->chunk_prefix + state->info.nuid, oo);
    spec.stream = store->stream;
    Task<OrderedStream> opening = open_ordered(store->bus, std::move(spec), kReadBuffer);
    OrderedStream os = co_await std::move(opening);
    state->stream = std::move(os.stream);
  }
  co_return make_object_reader(new ObjReadState{std::move(state)});
}

Task<std::string> get_impl(Ref<ObjCore> store, std::string name) {
  Task<ObjectReader> opening = open_impl(store, std::move(name));
  ObjectReader r = co_await std::move(opening);
  std::string out;
  out.reserve(static_cast<std::size_t>(r.info().size));
  for (;;) {
    std::optional<std::string> chunk = co_await r.next();
    if (!chunk) break;
    out += *chunk;
  }
  co_return out;
}

}  // namespace

// ---- watchers and list --------------------------------------------------------------------------

struct ObjWatchInner {
  Ref<ObjCore> store;
  MessageStream stream;
  std::uint64_t initial_pending = 0;
  std::uint64_t received = 0;
  bool init_done = false;
  bool marker_due = false;
  bool ended = false;
};

/// What an ObjectWatcher holds (shared with a next() in progress, as ObjReadState).
struct ObjWatchState {
  std::shared_ptr<ObjWatchInner> inner;
};

ObjectWatcher make_object_watcher(ObjWatchState* state) noexcept { return ObjectWatcher(state); }

namespace {

Task<ObjectWatchUpdate> watch_next(std::shared_ptr<ObjWatchInner> w) {
  if (w->marker_due) {
    w->marker_due = false;
    co_return ObjectWatchUpdate{.initial_done = true};
  }
  if (w->ended) co_return ObjectWatchUpdate{.ended = true};
  ReceivedMessage m = co_await w->stream.next();
  if (!m) co_return ObjectWatchUpdate{.ended = true};
  ObjectInfo info = info_of(*w->store, m);
  if (!w->init_done) {
    ++w->received;
    const auto md = m.metadata();
    if (w->received >= w->initial_pending || (md && md->num_pending == 0)) {
      w->init_done = true;
      w->marker_due = true;
    }
  }
  co_return ObjectWatchUpdate{.info = std::move(info)};
}

Task<ObjectWatcher> watch_impl(Ref<ObjCore> store) {
  OrderedOptions oo;
  oo.stream = store->stream;
  oo.deliver_policy = DeliverPolicy::last_per_subject;
  ConsumerSpec spec = ordered_spec("object.watch", store->meta_prefix + ">", oo);
  spec.stream = store->stream;
  Task<OrderedStream> opening = open_ordered(store->bus, std::move(spec), 256);
  OrderedStream os = co_await std::move(opening);
  auto w = std::make_shared<ObjWatchInner>();
  w->store = store;
  w->initial_pending = os.initial_pending;
  w->stream = std::move(os.stream);
  if (w->initial_pending == 0) {
    w->init_done = true;
    w->marker_due = true;
  }
  co_return make_object_watcher(new ObjWatchState{std::move(w)});
}

Task<std::vector<ObjectInfo>> list_impl(Ref<ObjCore> store) {
  Task<ObjectWatcher> watching = watch_impl(store);
  ObjectWatcher w = co_await std::move(watching);
  std::vector<ObjectInfo> out;
  for (;;) {
    ObjectWatchUpdate u = co_await w.next();
    if (!u || u.initial_done) break;
    if (u.info && !u.info->deleted) out.push_back(std::move(*u.info));
  }
  co_await w.close();
  std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.name < b.name; });
  co_return out;
}

Task<void> erase_impl(Ref<ObjCore> store, std::string name) {
  Task<std::optional<ObjectInfo>> loading = load_meta(store, name);
  std::optional<ObjectInfo> info = co_await std::move(loading);
  if (!info) {
    throw NotFoundError(fmt::format("object \"{}\" of bucket \"{}\" does not exist", name, store->bucket),
                        store->context("object.erase", name));
  }
  if (info->deleted) co_return;  // erased already (as nats.go: no error)
  const std::string nuid = info->nuid;
  info->deleted = true;
  info->size = 0;
  info->chunks = 0;
  info->digest.clear();
  BusMessage meta = bare(store->meta_subject(name), meta_json(*info).dump());
  meta.set_header("Nats-Rollup", "sub");
  Task<PublishFuture> sending = store->bus->publisher().publish_async(std::move(meta));
  PublishFuture f = co_await std::move(sending);
  (void)co_await std::move(f);
  Task<void> purging = purge_chunks(store, nuid);
  co_await std::move(purging);
}

// ---- buckets ------------------------------------------------------------------------------------

Task<ObjectStore> create_bucket(Ref<BusCore> bus, std::string bucket, std::string body) {
  std::exception_ptr error;
  try {
    Task<StreamInfo> creating = bus->js().put_stream(false, "OBJ_" + bucket, std::move(body));
    (void)co_await std::move(creating);
  } catch (const JetStreamError& e) {
    if (e.js_code() != 10058) throw;
    error = std::current_exception();
  }
  if (error) {
    ErrorContext ctx{.operation = "object_store", .stream = "OBJ_" + bucket};
    try {
      std::rethrow_exception(error);
    } catch (const JetStreamError& e) {
      ctx = e.context();
    }
    throw JetStreamError(
        fmt::format("object store \"{}\" exists with another configuration: bind to it with object_store(\"{}\"), or delete it first",
                    bucket, bucket),
        std::move(ctx));
  }
  co_return ObjectStore(kLibrary, new ObjCore(std::move(bus), std::move(bucket)));
}

Task<ObjectStore> bind_bucket(Ref<BusCore> bus, std::string bucket) {
  std::exception_ptr error;
  StreamInfo si;
  try {
    Task<StreamInfo> asking = bus->js().stream_info("OBJ_" + bucket);
    si = co_await std::move(asking);
  } catch (const NotFoundError&) {
    error = std::current_exception();
  }
  if (error) {
    throw NotFoundError(
        fmt::format("object store \"{}\" does not exist (create it with object_store({{.bucket = \"{}\"}}))", bucket, bucket),
        ErrorContext{.operation = "object_store", .stream = "OBJ_" + bucket});
  }
  const std::string chunks = "$O." + bucket + ".C.>";
  if (std::find(si.subjects.begin(), si.subjects.end(), chunks) == si.subjects.end()) {
    throw InvalidArgument(fmt::format("stream OBJ_{} is not an object store (it does not capture {})", bucket, chunks),
                          ErrorContext{.operation = "object_store", .stream = "OBJ_" + bucket});
  }
  co_return ObjectStore(kLibrary, new ObjCore(std::move(bus), std::move(bucket)));
}

Task<void> delete_bucket(Ref<BusCore> bus, std::string bucket) {
  std::exception_ptr error;
  try {
    Task<void> deleting = bus->js().delete_stream("OBJ_" + bucket);
    co_await std::move(deleting);
  } catch (const NotFoundError&) {
    error = std::current_exception();
  }
  if (error) {
    throw NotFoundError(fmt::format("object store \"{}\" does not exist", bucket),
                        ErrorContext{.operation = "delete_object_store", .stream = "OBJ_" + bucket});
  }
}

Task<void> close_stream(MessageStream s) { co_await s.close(); }

ObjCore& require(ObjCore* core, std::string_view op) {
  if (core == nullptr)
    throw InvalidArgument("empty ObjectStore (default-constructed or moved from)", ErrorContext{.operation = std::string(op)});
  return *core;
}

/// The meta put() writes, checked before anything is sent.
ObjectInfo new_info(const ObjCore& store, std::string_view op, std::string_view name, const ObjectMeta& meta) {
  store.check_name(op, name);
  const std::int64_t max_payload = store.bus->max_payload();
  if (meta.chunk_size == 0 || (max_payload > 0 && static_cast<std::int64_t>(meta.chunk_size) > max_payload)) {
    throw InvalidArgument(fmt::format("chunk_size {} for object \"{}\" of bucket \"{}\" must be 1 to the server's max_payload ({})",
                                      meta.chunk_size, name, store.bucket, max_payload),
                          store.context(op, name));
  }
  if (!valid_utf8(meta.description)) {
    throw InvalidArgument(fmt::format("description of object \"{}\" of bucket \"{}\" is not valid UTF-8", name, store.bucket),
                          store.context(op, name));
  }
  ObjectInfo info;
  info.bucket = store.bucket;
  info.name = std::string(name);
  info.description = std::string(meta.description);
  for (const Header& h : meta.headers) {
    if (h.name.empty() || !valid_utf8(h.name) || !valid_utf8(h.value)) {
      throw InvalidArgument(
          fmt::format("a header of object \"{}\" of bucket \"{}\" has an empty or non-UTF-8 name or value", name, store.bucket),
          store.context(op, name));
    }
    info.headers.emplace_back(std::string(h.name), std::string(h.value));
  }
  info.chunk_size = meta.chunk_size;
  return info;
}

}  // namespace

}  // namespace detail

using detail::ObjCore;
using detail::Ref;

// ---- NatsBus ------------------------------------------------------------------------------------

Task<ObjectStore> NatsBus::object_store(const ObjectStoreConfig& c) {
  const std::string_view op = "object_store";
  detail::BusCore& core = detail::core_of(core_, op);
  detail::check_bucket(op, c.bucket);
  const ErrorContext ctx{.operation = std::string(op), .stream = "OBJ_" + std::string(c.bucket)};
  const auto bad = [&ctx](std::string message) { return InvalidArgument(std::move(message), ctx); };
  if (c.ttl.count() < 0) throw bad(fmt::format("ttl must not be negative, got {} ms", c.ttl.count()));
  if (c.max_bytes < -1 || c.max_bytes == 0) throw bad(fmt::format("max_bytes must be positive or -1, got {}", c.max_bytes));
  if (c.replicas < 1 || c.replicas > 5) throw bad(fmt::format("replicas must be 1 to 5, got {}", c.replicas));
  if (!detail::valid_utf8(c.description)) throw bad("description is not valid UTF-8");
  const std::string name = "OBJ_" + std::string(c.bucket);
  const std::string subjects[] = {"$O." + std::string(c.bucket) + ".C.>", "$O." + std::string(c.bucket) + ".M.>"};
  StreamConfig s;
  s.name = name;
  s.subjects = subjects;
  s.description = c.description;
  s.max_age = c.ttl;
  s.max_bytes = c.max_bytes;
  s.storage = c.storage;
  s.replicas = c.replicas;
  s.discard = DiscardPolicy::new_;
  s.allow_rollup = true;
  s.allow_direct = true;
  std::string body = detail::stream_config_json(s).dump();
  return detail::create_bucket(Ref<detail::BusCore>(&core), std::string(c.bucket), std::move(body));
}

Task<ObjectStore> NatsBus::object_store(std::string_view bucket) {
  const std::string_view op = "object_store";
  detail::BusCore& core = detail::core_of(core_, op);
  detail::check_bucket(op, bucket);
  return detail::bind_bucket(Ref<detail::BusCore>(&core), std::string(bucket));
}

Task<void> NatsBus::delete_object_store(std::string_view bucket) {
  const std::string_view op = "delete_object_store";
  detail::BusCore& core = detail::core_of(core_, op);
  detail::check_bucket(op, bucket);
  return detail::delete_bucket(Ref<detail::BusCore>(&core), std::string(bucket));
}

// ---- ObjectStore --------------------------------------------------------------------------------

ObjectStore::ObjectStore(detail::LibraryKey /*key*/, detail::ObjCore* core) noexcept : core_(core) {}
ObjectStore::ObjectStore(const ObjectStore& other) noexcept : core_(other.core_) {
  if (core_ != nullptr) core_->add_ref();
}
ObjectStore& ObjectStore::operator=(const ObjectStore& other) noexcept {
  if (this != &other) {
    if (other.core_ != nullptr) other.core_->add_ref();
    if (core_ != nullptr) core_->release();
    core_ = other.core_;
  }
  return *this;
}
ObjectStore& ObjectStore::operator=(ObjectStore&& other) noexcept {
  if (this != &other) {
    if (core_ != nullptr) core_->release();
    core_ = std::exchange(other.core_, nullptr);
  }
  return *this;
}
ObjectStore::~ObjectStore() {
  if (core_ != nullptr) core_->release();
}

std::string_view ObjectStore::bucket() const noexcept { return core_ != nullptr ? std::string_view(core_->bucket) : std::string_view{}; }

Task<ObjectInfo> ObjectStore::put(std::string_view name, std::string_view data, const ObjectMeta& meta) {
  ObjCore& s = detail::require(core_, "object.put");
  ObjectInfo info = detail::new_info(s, "object.put", name, meta);
  auto src = std::make_unique<detail::Source>();
  src->data = data;
  return detail::put_impl(Ref<ObjCore>(&s), std::string(name), std::move(src), std::move(info), meta.chunk_size);
}

Task<ObjectInfo> ObjectStore::put(std::string_view name, std::span<const std::byte> data, const ObjectMeta& meta) {
  return put(name, std::string_view(reinterpret_cast<const char*>(data.data()), data.size()), meta);
}

Task<ObjectInfo> ObjectStore::put_file(std::string_view name, std::string_view path, const ObjectMeta& meta) {
  ObjCore& s = detail::require(core_, "object.put_file");
  ObjectInfo info = detail::new_info(s, "object.put_file", name, meta);
  auto src = std::make_unique<detail::Source>();
  src->path = std::string(path);
  src->file.open(src->path, std::ios::binary);
  if (!src->file.is_open()) {
    throw InvalidArgument(fmt::format("cannot open {} for object \"{}\" of bucket \"{}\": {}", path, name, s.bucket,
                                      std::error_code(errno, std::generic_category()).message()),
                          s.context("object.put_file", name));
  }
  return detail::put_impl(Ref<ObjCore>(&s), std::string(name), std::move(src), std::move(info), meta.chunk_size);
}

Task<std::string> ObjectStore::get(std::string_view name) {
  ObjCore& s = detail::require(core_, "object.get");
  s.check_name("object.get", name);
  return detail::get_impl(Ref<ObjCore>(&s), std::string(name));
}

Task<ObjectReader> ObjectStore::open(std::string_view name) {
  ObjCore& s = detail::require(core_, "object.open");
  s.check_name("object.open", name);
  return detail::open_impl(Ref<ObjCore>(&s), std::string(name));
}

Task<ObjectInfo> ObjectStore::info(std::string_view name) {
  ObjCore& s = detail::require(core_, "object.info");
  s.check_name("object.info", name);
  return detail::live_meta(Ref<ObjCore>(&s), "object.info", std::string(name));
}

Task<std::vector<ObjectInfo>> ObjectStore::list() { return detail::list_impl(Ref<ObjCore>(&detail::require(core_, "object.list"))); }

Task<void> ObjectStore::erase(std::string_view name) {
  ObjCore& s = detail::require(core_, "object.erase");
  s.check_name("object.erase", name);
  return detail::erase_impl(Ref<ObjCore>(&s), std::string(name));
}

Task<ObjectWatcher> ObjectStore::watch() { return detail::watch_impl(Ref<ObjCore>(&detail::require(core_, "object.watch"))); }

// ---- ObjectReader, ObjectWatcher ----------------------------------------------------------------

namespace detail {
namespace {
/// Ends what a reader or watcher is reading (a next() still waiting on it sees the end).
template <class Inner>
void finish(Inner& inner) noexcept {
  MessageStream ending = std::move(inner.stream);
}
}  // namespace
}  // namespace detail

ObjectReader& ObjectReader::operator=(ObjectReader&& other) noexcept {
  if (this != &other) {
    detail::ObjReadState* old = std::exchange(state_, std::exchange(other.state_, nullptr));
    if (old != nullptr) detail::finish(*old->inner);
    delete old;
  }
  return *this;
}

ObjectReader::~ObjectReader() {
  if (state_ != nullptr) detail::finish(*state_->inner);
  delete state_;
}

const ObjectInfo& ObjectReader::info() const {
  if (state_ == nullptr) throw InvalidArgument("empty ObjectReader (moved from?)", ErrorContext{.operation = "object.read"});
  return state_->inner->info;
}

Task<std::optional<std::string>> ObjectReader::next() {
  if (state_ == nullptr) throw InvalidArgument("empty ObjectReader (moved from?)", ErrorContext{.operation = "object.read"});
  return detail::read_next(state_->inner);
}

Task<void> ObjectReader::close() {
  if (state_ == nullptr) throw InvalidArgument("empty ObjectReader (moved from?)", ErrorContext{.operation = "object.read.close"});
  state_->inner->done = true;
  return detail::close_stream(std::move(state_->inner->stream));
}

ObjectWatcher& ObjectWatcher::operator=(ObjectWatcher&& other) noexcept {
  if (this != &other) {
    detail::ObjWatchState* old = std::exchange(state_, std::exchange(other.state_, nullptr));
    if (old != nullptr) detail::finish(*old->inner);
    delete old;
  }
  return *this;
}

ObjectWatcher::~ObjectWatcher() {
  if (state_ != nullptr) detail::finish(*state_->inner);
  delete state_;
}

Task<ObjectWatchUpdate> ObjectWatcher::next() {
  if (state_ == nullptr) throw InvalidArgument("empty ObjectWatcher (moved from?)", ErrorContext{.operation = "object.watch.next"});
  return detail::watch_next(state_->inner);
}

Task<void> ObjectWatcher::close() {
  if (state_ == nullptr) throw InvalidArgument("empty ObjectWatcher (moved from?)", ErrorContext{.operation = "object.watch.close"});
  state_->inner->ended = true;
  return detail::close_stream(std::move(state_->inner->stream));
}

}  // namespace natbus
