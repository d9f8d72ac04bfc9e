// The Key-Value store (ADR-8), as nats.go 1.22 writes and reads it: bucket `b` is the stream
// KV_b on $KV.b.> (history as max_msgs_per_subject, ttl as max_age, rollup allowed, deletes
// denied, direct get, discard new); a value is a bare message on $KV.b.<key>; erase and purge
// are empty messages with KV-Operation: DEL / PURGE (purge with Nats-Rollup: sub); create and
// update are publishes with Nats-Expected-Last-Subject-Sequence; watchers, keys and history
// read through ordered consumers.
#include "natbus/kv.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <memory>

#include "base/ref.hpp"
#include "base/util.hpp"
#include "base/validate.hpp"
#include "bus/bus_core.hpp"
#include "bus/ordered.hpp"
#include "jetstream/js_api.hpp"
#include "message/msg_impl.hpp"
#include "natbus/json.hpp"
#include "natbus/stream_info.hpp"

namespace natbus {

namespace detail {

namespace {

constexpr int kMaxHistory = 64;
constexpr std::string_view kOperation = "KV-Operation";
constexpr std::string_view kExpectedLast = "Nats-Expected-Last-Subject-Sequence";

bool bucket_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'; }
bool key_char(char c) { return bucket_char(c) || c == '/' || c == '=' || c == '.'; }

void check_bucket(std::string_view op, std::string_view bucket) {
  const bool ok = !bucket.empty() && std::all_of(bucket.begin(), bucket.end(), bucket_char);
  if (!ok) {
    throw InvalidArgument(fmt::format("bucket name \"{}\" is not valid: use letters, digits, '-' and '_'", bucket),
                          ErrorContext{.operation = std::string(op)});
  }
}

/// ADR-8 keys: [-/_=.a-zA-Z0-9]+, no leading or trailing '.', no empty token. With
/// `wildcards`, a token may also be `*`, and the last one `>` (watch patterns).
std::string key_problem(std::string_view key, bool wildcards) {
  if (key.empty()) return "a key must not be empty";
  if (key.front() == '.' || key.back() == '.') return "a key must not start or end with '.'";
  std::size_t start = 0;
  while (start <= key.size()) {
    const std::size_t dot = std::min(key.find('.', start), key.size());
    const std::string_view token = key.substr(start, dot - start);
    if (token.empty()) return "a key must not hold an empty token ('..')";
    const bool wild = wildcards && (token == "*" || (token == ">" && dot == key.size()));
    if (!wild && !std::all_of(token.begin(), token.end(), key_char)) {
      return wildcards ? "use letters, digits, '-', '/', '_', '=', '.' and the wildcards '*' and '>' (last)"
                       : "use letters, digits, '-', '/', '_', '=' and '.'";
    }
    start = dot + 1;
  }
  return {};
}

}  // namespace

/// One bucket, shared by the KeyValue handles that refer to it.
class KvCore final : public RefCounted {
 public:
  KvCore(Ref<BusCore> b, std::string name, std::int32_t max_value) : bus(std::move(b)), bucket(std::move(name)), max_value_size(max_value) {
    stream = "KV_" + bucket;
    prefix = "$KV." + bucket + ".";
  }
  Ref<BusCore> bus;
  std::string bucket;
  std::string stream;
  std::string prefix;  // "$KV.<bucket>."
  std::int32_t max_value_size = -1;

  [[nodiscard]] ErrorContext context(std::string_view op, std::string_view key) const {
    return ErrorContext{.operation = std::string(op), .subject = prefix + std::string(key), .stream = stream};
  }
  void check_key(std::string_view op, std::string_view key, bool wildcards = false) const {
    if (auto p = key_problem(key, wildcards); !p.empty()) {
      throw InvalidArgument(fmt::format("key \"{}\" of bucket \"{}\" is not valid: {}", key, bucket, p), context(op, key));
    }
  }
  void check_value(std::string_view op, std::string_view key, std::size_t size) const {
    if (max_value_size >= 0 && size > static_cast<std::size_t>(max_value_size)) {
      throw InvalidArgument(fmt::format("value of {} bytes for key \"{}\" is larger than bucket \"{}\" allows ({} bytes, max_value_size)",
                                        size, key, bucket, max_value_size),
                            context(op, key));
    }
  }
};

namespace {

KeyValueOp operation_of(const ReceivedMessage& m) {
  const auto op = m.header(kOperation);
  if (op == "DEL") return KeyValueOp::del;
  if (op == "PURGE") return KeyValueOp::purge;
  return KeyValueOp::put;
}

KeyValueEntry entry_of(const KvCore& kv, const ReceivedMessage& m) {
  KeyValueEntry e;
  e.bucket = kv.bucket;
  const std::string_view subject = m.subject();
  e.key = std::string(subject.substr(std::min(subject.size(), kv.prefix.size())));
  e.value = std::string(m.raw_payload());
  e.operation = operation_of(m);
  if (const auto md = m.metadata()) {
    e.revision = md->stream_sequence;
    e.created = md->timestamp;
    e.delta = md->num_pending;
  }
  return e;
}

BusMessage bare(std::string_view subject, std::string_view value) {
  MessageOptions o;
  o.natbus_headers = false;
  o.ensure_trace = false;
  return BusMessage::from_bytes(subject, value, o);
}

Task<std::uint64_t> publish_kv(Ref<KvCore> kv, BusMessage msg) {
  Task<PublishFuture> sending = kv->bus->publisher().publish_async(std::move(msg));
  PublishFuture f = co_await std::move(sending);
  const PubAck ack = co_await std::move(f);
  co_return ack.sequence;
}

/// A publish that expects the key's newest revision to be `last` (0: none).
Task<std::uint64_t> publish_expecting(Ref<KvCore> kv, std::string op, std::string key, BusMessage msg, std::uint64_t last) {
  msg.set_header(kExpectedLast, std::to_string(last));
  std::exception_ptr error;
  std::uint64_t rev = 0;
  try {
    Task<std::uint64_t> publishing = publish_kv(kv, std::move(msg));
    rev = co_await std::move(publishing);
  } catch (const JetStreamError& e) {
    if (e.js_code() != 10071) throw;
    error = std::current_exception();
  }
  if (!error) co_return rev;
  std::string server;
  try {
    std::rethrow_exception(error);
  } catch (const JetStreamError& e) {
    server = e.context().server_text;
  }
  ErrorContext ctx = kv->context(op, key);
  ctx.js_code = 10071;
  ctx.server_text = server;
  throw WrongLastRevisionError(last == 0 ? fmt::format("key \"{}\" of bucket \"{}\" already has a revision", key, kv->bucket)
                                         : fmt::format("key \"{}\" of bucket \"{}\" is no longer at revision {}", key, kv->bucket, last),
                               std::move(ctx));
}

/// The stored message of `key` (the newest, or revision `revision`), markers included.
Task<std::optional<KeyValueEntry>> load(Ref<KvCore> kv, std::string key, std::uint64_t revision) {
  std::optional<MsgPtr> found;
  std::string last_of;  // the newest of the key; by sequence when empty
  if (revision == 0) last_of = kv->prefix + key;
  try {
    // Built before the co_await: no temporaries with destructors inside it (GCC 12).
    Task<MsgPtr> getting = kv->bus->js().get_message(kv->stream, revision, std::move(last_of));
    found = co_await std::move(getting);
  } catch (const NotFoundError& e) {
    if (e.js_code() == 10059) {
      throw NotFoundError(fmt::format("bucket \"{}\" does not exist (any more)", kv->bucket), kv->context("get", key));
    }
  }
  if (!found) co_return std::nullopt;
  const ReceivedMessage m(kLibrary, new MsgImpl(std::move(*found), kv->bus.get()));
  if (m.subject() != kv->prefix + key) co_return std::nullopt;  // another key's revision
  co_return entry_of(*kv, m);
}

Task<std::optional<KeyValueEntry>> get_impl(Ref<KvCore> kv, std::string key, std::uint64_t revision) {
  Task<std::optional<KeyValueEntry>> loading = load(kv, std::move(key), revision);
  std::optional<KeyValueEntry> e = co_await std::move(loading);
  if (e && e->operation != KeyValueOp::put) co_return std::nullopt;
  co_return e;
}

Task<std::uint64_t> create_impl(Ref<KvCore> kv, std::string key, std::string value) {
  std::exception_ptr error;
  std::uint64_t rev = 0;
  try {
    Task<std::uint64_t> creating = publish_expecting(kv, "kv.create", key, bare(kv->prefix + key, value), 0);
    rev = co_await std::move(creating);
  } catch (const WrongLastRevisionError&) {
    error = std::current_exception();
  }
  if (!error) co_return rev;
  // An erased or purged key has a marker as its newest revision: create goes on top of it.
  Task<std::optional<KeyValueEntry>> loading = load(kv, key, 0);
  const std::optional<KeyValueEntry> last = co_await std::move(loading);
  if (last && last->operation != KeyValueOp::put) {
    bool lost = false;
    try {
      Task<std::uint64_t> on_marker = publish_expecting(kv, "kv.create", key, bare(kv->prefix + key, value), last->revision);
      rev = co_await std::move(on_marker);
    } catch (const WrongLastRevisionError&) {
      lost = true;  // another writer's value came in after the marker
    }
    if (!lost) co_return rev;
    throw KeyExistsError(fmt::format("key \"{}\" of bucket \"{}\" already holds a value (another writer's, just now)", key, kv->bucket),
                         kv->context("kv.create", key));
  }
  throw KeyExistsError(
      fmt::format("key \"{}\" of bucket \"{}\" already holds a value (revision {})", key, kv->bucket, last ? last->revision : 0),
      kv->context("kv.create", key));
}

}  // namespace

// ---- watchers -----------------------------------------------------------------------------------

struct KvWatchInner {
  Ref<KvCore> kv;
  bool ended = false;  // the watcher stopped: its stream is gone
  KeyWatchOptions options;
  MessageStream stream;
  std::uint64_t initial_pending = 0;
  std::uint64_t received = 0;
  bool init_done = false;
  bool marker_due = false;
};

struct KvWatchState {
  std::shared_ptr<KvWatchInner> inner;
};

KeyWatcher make_key_watcher(KvWatchState* state) noexcept { return KeyWatcher(state); }

namespace {
/// Takes the watcher's stream away (ending a next() still waiting on it, which holds the rest).
MessageStream take_stream(KvWatchState& state) noexcept {
  state.inner->ended = true;
  return std::move(state.inner->stream);
}
}  // namespace

namespace {

Task<KeyWatchUpdate> watch_next(std::shared_ptr<KvWatchInner> w) {
  for (;;) {
    if (w->marker_due) {
      w->marker_due = false;
      co_return KeyWatchUpdate{.initial_done = true};
    }
    if (w->ended) co_return KeyWatchUpdate{.ended = true};
    ReceivedMessage m = co_await w->stream.next();
    if (!m) co_return KeyWatchUpdate{.ended = true};
    KeyValueEntry e = entry_of(*w->kv, m);
    if (!w->init_done) {
      ++w->received;
      if (w->received >= w->initial_pending || e.delta == 0) {
        w->init_done = true;
        w->marker_due = true;
      }
    }
    if (w->options.ignore_deletes && e.operation != KeyValueOp::put) continue;
    co_return KeyWatchUpdate{.entry = std::move(e)};
  }
}

Task<KeyWatcher> watch_impl(Ref<KvCore> kv, ConsumerSpec spec, KeyWatchOptions options) {
  Task<OrderedStream> opening = open_ordered(kv->bus, std::move(spec), 256);
  OrderedStream os = co_await std::move(opening);
  auto inner = std::make_shared<KvWatchInner>();
  inner->kv = kv;
  inner->options = options;
  inner->initial_pending = os.initial_pending;
  inner->stream = std::move(os.stream);
  // Nothing stored to begin with: the (empty) current values are all there at once.
  if (!options.updates_only && inner->initial_pending == 0) {
    inner->init_done = true;
    inner->marker_due = true;
  }
  if (options.updates_only) inner->init_done = true;
  co_return make_key_watcher(new KvWatchState{std::move(inner)});
}

ConsumerSpec watch_spec(const KvCore& kv, std::string_view op, std::string_view pattern, const KeyWatchOptions& o) {
  kv.check_key(op, pattern, true);
  if (o.updates_only && o.include_history) {
    throw InvalidArgument("updates_only and include_history exclude each other", kv.context(op, pattern));
  }
  OrderedOptions oo;
  oo.stream = kv.stream;
  oo.deliver_policy = o.include_history ? DeliverPolicy::all : o.updates_only ? DeliverPolicy::new_ : DeliverPolicy::last_per_subject;
  oo.headers_only = o.meta_only;
  const std::string subject = kv.prefix + std::string(pattern);
  ConsumerSpec spec = ordered_spec(op, subject, oo);
  spec.stream = kv.stream;
  return spec;
}

Task<std::vector<KeyValueEntry>> collect(Ref<KvCore> kv, ConsumerSpec spec, KeyWatchOptions options) {
  Task<KeyWatcher> watching = watch_impl(kv, std::move(spec), options);
  KeyWatcher w = co_await std::move(watching);
  std::vector<KeyValueEntry> out;
  for (;;) {
    KeyWatchUpdate u = co_await w.next();
    if (!u || u.initial_done) break;
    if (u.entry) out.push_back(std::move(*u.entry));
  }
  co_await w.close();
  co_return out;
}

Task<std::vector<std::string>> keys_impl(Ref<KvCore> kv, ConsumerSpec spec) {
  Task<std::vector<KeyValueEntry>> collecting = collect(kv, std::move(spec), KeyWatchOptions{.ignore_deletes = true, .meta_only = true});
  std::vector<KeyValueEntry> entries = co_await std::move(collecting);
  std::vector<std::string> keys;
  keys.reserve(entries.size());
  for (auto& e : entries) keys.push_back(std::move(e.key));
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  co_return keys;
}

Task<KeyValueStatus> status_impl(Ref<KvCore> kv) {
  Task<StreamInfo> asking = kv->bus->js().stream_info(kv->stream);
  const StreamInfo si = co_await std::move(asking);
  const nlohmann::json& c = si.raw.contains("config") ? si.raw["config"] : nlohmann::json::object();
  KeyValueStatus s;
  s.bucket = kv->bucket;
  s.values = si.messages;
  s.bytes = si.bytes;
  s.history = c.value("max_msgs_per_subject", std::int64_t{1});
  s.ttl = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::nanoseconds(c.value("max_age", std::int64_t{0})));
  s.max_value_size = c.value("max_msg_size", std::int32_t{-1});
  s.max_bytes = c.value("max_bytes", std::int64_t{-1});
  s.storage = si.storage;
  s.replicas = si.replicas;
  s.description = si.description;
  co_return s;
}

// ---- buckets ------------------------------------------------------------------------------------

/// A bucket's KvCore from its stream's state (NotFoundError unless it is a bucket).
KvCore* core_from(Ref<BusCore> bus, const std::string& bucket, const StreamInfo& si) {
  const nlohmann::json& c = si.raw.contains("config") ? si.raw["config"] : nlohmann::json::object();
  return new KvCore(std::move(bus), bucket, c.value("max_msg_size", std::int32_t{-1}));
}

Task<KeyValue> create_bucket(Ref<BusCore> bus, std::string bucket, std::string body) {
  std::exception_ptr error;
  StreamInfo si;
  try {
    Task<StreamInfo> creating = bus->js().put_stream(false, "KV_" + bucket, std::move(body));
    si = co_await std::move(creating);
  } catch (const JetStreamError& e) {
    if (e.js_code() != 10058) throw;
    error = std::current_exception();
  }
  if (error) {
    ErrorContext ctx{.operation = "key_value", .stream = "KV_" + bucket};
    try {
      std::rethrow_exception(error);
    } catch (const JetStreamError& e) {
      ctx = e.context();
    }
    throw JetStreamError(
        fmt::format("bucket \"{}\" exists with another configuration: bind to it with key_value(\"{}\"), or delete it first", bucket,
                    bucket),
        std::move(ctx));
  }
  co_return KeyValue(kLibrary, core_from(bus, bucket, si));
}

Task<KeyValue> bind_bucket(Ref<BusCore> bus, std::string bucket) {
  std::exception_ptr error;
  StreamInfo si;
  try {
    Task<StreamInfo> asking = bus->js().stream_info("KV_" + bucket);
    si = co_await std::move(asking);
  } catch (const NotFoundError&) {
    error = std::current_exception();
  }
  if (error) {
    throw NotFoundError(fmt::format("bucket \"{}\" does not exist (create it with key_value({{.bucket = \"{}\"}}))", bucket, bucket),
                        ErrorContext{.operation = "key_value", .stream = "KV_" + bucket});
  }
  const std::string subjects = "$KV." + bucket + ".>";
  if (std::find(si.subjects.begin(), si.subjects.end(), subjects) == si.subjects.end() && !si.raw["config"].contains("mirror")) {
    throw InvalidArgument(fmt::format("stream KV_{} is not a Key-Value bucket (it does not capture {})", bucket, subjects),
                          ErrorContext{.operation = "key_value", .stream = "KV_" + bucket});
  }
  co_return KeyValue(kLibrary, core_from(bus, bucket, si));
}

Task<void> delete_bucket(Ref<BusCore> bus, std::string bucket) {
  std::exception_ptr error;
  try {
    Task<void> deleting = bus->js().delete_stream("KV_" + bucket);
    co_await std::move(deleting);
  } catch (const NotFoundError&) {
    error = std::current_exception();
  }
  if (error) {
    throw NotFoundError(fmt::format("bucket \"{}\" does not exist", bucket),
                        ErrorContext{.operation = "delete_key_value", .stream = "KV_" + bucket});
  }
}

Task<void> discard_revision(Task<std::uint64_t> publishing) { (void)co_await std::move(publishing); }

Task<void> close_stream(MessageStream s) { co_await s.close(); }

KvCore& require(KvCore* core, std::string_view op) {
  if (core == nullptr)
    throw InvalidArgument("empty KeyValue (default-constructed or moved from)", ErrorContext{.operation = std::string(op)});
  return *core;
}

}  // namespace

}  // namespace detail

using detail::KvCore;
using detail::Ref;

// ---- NatsBus ------------------------------------------------------------------------------------

Task<KeyValue> NatsBus::key_value(const KeyValueConfig& c) {
  const std::string_view op = "key_value";
  detail::BusCore& core = detail::core_of(core_, op);
  detail::check_bucket(op, c.bucket);
  const ErrorContext ctx{.operation = std::string(op), .stream = "KV_" + std::string(c.bucket)};
  const auto bad = [&ctx](std::string message) { return InvalidArgument(std::move(message), ctx); };
  if (c.history < 1 || c.history > detail::kMaxHistory)
    throw bad(fmt::format("history must be 1 to {}, got {}", detail::kMaxHistory, c.history));
  if (c.ttl.count() < 0) throw bad(fmt::format("ttl must not be negative, got {} ms", c.ttl.count()));
  if (c.max_value_size < -1 || c.max_value_size == 0)
    throw bad(fmt::format("max_value_size must be positive or -1, got {}", c.max_value_size));
  if (c.max_bytes < -1 || c.max_bytes == 0) throw bad(fmt::format("max_bytes must be positive or -1, got {}", c.max_bytes));
  if (c.replicas < 1 || c.replicas > 5) throw bad(fmt::format("replicas must be 1 to 5, got {}", c.replicas));
  if (!detail::valid_utf8(c.description)) throw bad("description is not valid UTF-8");
  const std::string name = "KV_" + std::string(c.bucket);
  const std::string subject = "$KV." + std::string(c.bucket) + ".>";
  const std::string subjects[] = {subject};
  StreamConfig s;
  s.name = name;
  s.subjects = subjects;
  s.description = c.description;
  s.max_msgs_per_subject = c.history;
  s.max_bytes = c.max_bytes;
  s.max_age = c.ttl;
  s.max_msg_size = c.max_value_size;
  s.storage = c.storage;
  s.replicas = c.replicas;
  s.allow_rollup = true;
  s.deny_delete = true;
  s.allow_direct = true;
  s.discard = DiscardPolicy::new_;
  // As nats.go: the duplicate window is 2 minutes, or the ttl when that is shorter.
  s.duplicate_window = std::chrono::minutes(2);
  if (c.ttl.count() > 0 && c.ttl < std::chrono::minutes(2)) s.duplicate_window = c.ttl;
  std::string body = detail::stream_config_json(s).dump();
  return detail::create_bucket(Ref<detail::BusCore>(&core), std::string(c.bucket), std::move(body));
}

Task<KeyValue> NatsBus::key_value(std::string_view bucket) {
  const std::string_view op = "key_value";
  detail::BusCore& core = detail::core_of(core_, op);
  detail::check_bucket(op, bucket);
  return detail::bind_bucket(Ref<detail::BusCore>(&core), std::string(bucket));
}

Task<void> NatsBus::delete_key_value(std::string_view bucket) {
  const std::string_view op = "delete_key_value";
  detail::BusCore& core = detail::core_of(core_, op);
  detail::check_bucket(op, bucket);
  return detail::delete_bucket(Ref<detail::BusCore>(&core), std::string(bucket));
}

// ---- KeyValue -----------------------------------------------------------------------------------

KeyValue::KeyValue(detail::LibraryKey /*key*/, detail::KvCore* core) noexcept : core_(core) {}
KeyValue::KeyValue(const KeyValue& other) noexcept : core_(other.core_) {
  if (core_ != nullptr) core_->add_ref();
}
KeyValue& KeyValue::operator=(const KeyValue& other) noexcept {
  if (this != &other) {
    if (other.core_ != nullptr) other.core_->add_ref();
    if (core_ != nullptr) core_->release();
    core_ = other.core_;
  }
  return *this;
}
KeyValue& KeyValue::operator=(KeyValue&& other) noexcept {
  if (this != &other) {
    if (core_ != nullptr) core_->release();
    core_ = std::exchange(other.core_, nullptr);
  }
  return *this;
}
KeyValue::~KeyValue() {
  if (core_ != nullptr) core_->release();
}

std::string_view KeyValue::bucket() const noexcept { return core_ != nullptr ? std::string_view(core_->bucket) : std::string_view{}; }

Task<std::uint64_t> KeyValue::put(std::string_view key, std::string_view value) {
  KvCore& kv = detail::require(core_, "kv.put");
  kv.check_key("kv.put", key);
  kv.check_value("kv.put", key, value.size());
  return detail::publish_kv(Ref<KvCore>(&kv), detail::bare(kv.prefix + std::string(key), value));
}

Task<std::uint64_t> KeyValue::put(std::string_view key, std::span<const std::byte> value) {
  return put(key, std::string_view(reinterpret_cast<const char*>(value.data()), value.size()));
}

Task<std::uint64_t> KeyValue::create(std::string_view key, std::string_view value) {
  KvCore& kv = detail::require(core_, "kv.create");
  kv.check_key("kv.create", key);
  kv.check_value("kv.create", key, value.size());
  return detail::create_impl(Ref<KvCore>(&kv), std::string(key), std::string(value));
}

Task<std::uint64_t> KeyValue::update(std::string_view key, std::string_view value, std::uint64_t last_revision) {
  KvCore& kv = detail::require(core_, "kv.update");
  kv.check_key("kv.update", key);
  kv.check_value("kv.update", key, value.size());
  if (last_revision == 0) {
    throw InvalidArgument(
        fmt::format("revision 0 is no revision (key \"{}\" of bucket \"{}\"): use create() for a new key", key, kv.bucket),
        kv.context("kv.update", key));
  }
  return detail::publish_expecting(Ref<KvCore>(&kv), "kv.update", std::string(key), detail::bare(kv.prefix + std::string(key), value),
                                   last_revision);
}

Task<std::optional<KeyValueEntry>> KeyValue::get(std::string_view key) {
  KvCore& kv = detail::require(core_, "kv.get");
  kv.check_key("kv.get", key);
  return detail::get_impl(Ref<KvCore>(&kv), std::string(key), 0);
}

Task<std::optional<KeyValueEntry>> KeyValue::get(std::string_view key, std::uint64_t revision) {
  KvCore& kv = detail::require(core_, "kv.get");
  kv.check_key("kv.get", key);
  if (revision == 0) {
    throw InvalidArgument(fmt::format("revision 0 is no revision (key \"{}\" of bucket \"{}\"): revisions start at 1", key, kv.bucket),
                          kv.context("kv.get", key));
  }
  return detail::get_impl(Ref<KvCore>(&kv), std::string(key), revision);
}

Task<void> KeyValue::erase(std::string_view key) {
  KvCore& kv = detail::require(core_, "kv.erase");
  kv.check_key("kv.erase", key);
  BusMessage m = detail::bare(kv.prefix + std::string(key), {});
  m.set_header(detail::kOperation, "DEL");
  return detail::discard_revision(detail::publish_kv(Ref<KvCore>(&kv), std::move(m)));
}

Task<void> KeyValue::purge(std::string_view key) {
  KvCore& kv = detail::require(core_, "kv.purge");
  kv.check_key("kv.purge", key);
  BusMessage m = detail::bare(kv.prefix + std::string(key), {});
  m.set_header(detail::kOperation, "PURGE");
  m.set_header("Nats-Rollup", "sub");
  return detail::discard_revision(detail::publish_kv(Ref<KvCore>(&kv), std::move(m)));
}

Task<std::vector<std::string>> KeyValue::keys() {
  KvCore& kv = detail::require(core_, "kv.keys");
  return detail::keys_impl(Ref<KvCore>(&kv), detail::watch_spec(kv, "kv.keys", ">", {.ignore_deletes = true, .meta_only = true}));
}

Task<std::vector<KeyValueEntry>> KeyValue::history(std::string_view key) {
  KvCore& kv = detail::require(core_, "kv.history");
  kv.check_key("kv.history", key);
  const KeyWatchOptions o{.include_history = true};
  return detail::collect(Ref<KvCore>(&kv), detail::watch_spec(kv, "kv.history", key, o), o);
}

Task<KeyWatcher> KeyValue::watch(std::string_view pattern, const KeyWatchOptions& options) {
  KvCore& kv = detail::require(core_, "kv.watch");
  return detail::watch_impl(Ref<KvCore>(&kv), detail::watch_spec(kv, "kv.watch", pattern, options), options);
}

Task<KeyValueStatus> KeyValue::status() { return detail::status_impl(Ref<KvCore>(&detail::require(core_, "kv.status"))); }

// ---- KeyWatcher ---------------------------------------------------------------------------------

KeyWatcher& KeyWatcher::operator=(KeyWatcher&& other) noexcept {
  if (this != &other) {
    detail::KvWatchState* old = std::exchange(state_, std::exchange(other.state_, nullptr));
    if (old != nullptr) MessageStream ending = detail::take_stream(*old);
    delete old;
  }
  return *this;
}

KeyWatcher::~KeyWatcher() {
  if (state_ != nullptr) MessageStream ending = detail::take_stream(*state_);
  delete state_;
}

Task<KeyWatchUpdate> KeyWatcher::next() {
  if (state_ == nullptr) throw InvalidArgument("empty KeyWatcher (moved from?)", ErrorContext{.operation = "kv.watch.next"});
  return detail::watch_next(state_->inner);
}

Task<void> KeyWatcher::close() {
  if (state_ == nullptr) throw InvalidArgument("empty KeyWatcher (moved from?)", ErrorContext{.operation = "kv.watch.close"});
  return detail::close_stream(detail::take_stream(*state_));
}

std::string_view KeyValueEntry::as_text() const {
  if (!detail::valid_utf8(value)) {
    throw DecodeError(fmt::format("value of key \"{}\" (revision {}) is not valid UTF-8", key, revision),
                      ErrorContext{.operation = "as_text", .subject = "$KV." + bucket + "." + key});
  }
  return value;
}

}  // namespace natbus
