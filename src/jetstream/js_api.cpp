// JetStream management over the JSON API ($JS.API.*), through the bus' Mux: no thread blocks,
// every call honours NatsConfig::js_api_timeout, and every server field is reachable (cnats
// 3.4's structs stop at server 2.9's).
#include "jetstream/js_api.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "base/util.hpp"
#include "base/validate.hpp"
#include "jetstream/server_errors.hpp"
#include "natbus/log.hpp"
#include "transport/request.hpp"

namespace natbus::detail {

namespace {

template <class D>
std::int64_t ns(D d) {
  return static_cast<std::int64_t>(saturating_ns(d).count());
}

StorageType storage_of(const nlohmann::json& cfg) {
  return cfg.value("storage", std::string("file")) == "memory" ? StorageType::memory : StorageType::file;
}

}  // namespace

std::string JsApi::api_subject(std::string_view suffix) const {
  if (s_.domain.empty()) return fmt::format("$JS.API.{}", suffix);
  return fmt::format("$JS.{}.API.{}", s_.domain, suffix);
}

std::string JsApi::new_inbox() const { return s_.inbox_prefix + "." + random_token(22); }

Task<nlohmann::json> JsApi::request(std::string subject, std::string body, ErrorContext ctx) {
  MsgPtr reply = co_await request_msg(subject, std::move(body), ctx);
  const char* data = natsMsg_GetData(reply.get());
  const auto len = static_cast<std::size_t>(natsMsg_GetDataLength(reply.get()));
  nlohmann::json j = nlohmann::json::parse(std::string_view(data == nullptr ? "" : data, len), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    ctx.server_text = std::string(data == nullptr ? "" : data, std::min<std::size_t>(len, 200));
    throw Error(errc::protocol, fmt::format("unreadable JetStream API answer on {}", subject), std::move(ctx));
  }
  if (auto it = j.find("error"); it != j.end() && it->is_object()) throw_server_error(*it, std::move(ctx), ServerErrorSource::api);
  co_return j;
}

Task<MsgPtr> JsApi::request_msg(std::string subject, std::string body, ErrorContext ctx) {
  co_await host_.js_ready(ctx.operation, s_.timeout);
  const auto timeout = saturating_ns(s_.timeout);
  auto [reply, status] = co_await ReplyAwaiter(host_.js_mux(), subject, std::move(body), timeout);
  switch (status) {
    case NATS_OK:
      break;
    case NATS_TIMEOUT:
      throw TimeoutError(fmt::format("no JetStream API answer on {} within {} ms (js_api_timeout)", subject, s_.timeout.count()),
                         std::move(ctx));
    case NATS_NO_RESPONDERS:
      throw JetStreamNotEnabledError(
          fmt::format("nothing answers on {}: JetStream is not enabled on the server (start nats-server with -js) or for "
                      "this account",
                      subject),
          std::move(ctx));
    case NATS_CONNECTION_DISCONNECTED:
      throw ConnectionError("the connection was lost before the JetStream API answered", std::move(ctx));
    default:
      throw ClosedError("the connection closed before the JetStream API answered", std::move(ctx));
  }
  co_return std::move(reply);
}

StreamInfo parse_stream_info(nlohmann::json j) {
  StreamInfo si;
  const auto& cfg = j["config"];
  si.name = cfg.value("name", std::string());
  if (cfg.contains("subjects") && cfg["subjects"].is_array()) {
    for (const auto& s : cfg["subjects"]) si.subjects.push_back(s.get<std::string>());
  }
  si.storage = storage_of(cfg);
  si.replicas = cfg.value("num_replicas", 1);
  const auto& st = j["state"];
  si.messages = st.value("messages", std::uint64_t{0});
  si.bytes = st.value("bytes", std::uint64_t{0});
  si.first_sequence = st.value("first_seq", std::uint64_t{0});
  si.last_sequence = st.value("last_seq", std::uint64_t{0});
  si.consumers = st.value("consumer_count", 0);
  if (j.contains("cluster") && j["cluster"].is_object()) si.leader = j["cluster"].value("leader", std::string());
  si.description = cfg.value("description", std::string());
  si.sealed = cfg.value("sealed", false);
  const auto source_info = [](const nlohmann::json& s) {
    StreamSourceInfo out;
    out.name = s.value("name", std::string());
    out.lag = s.value("lag", std::uint64_t{0});
    out.active = std::chrono::nanoseconds(s.value("active", std::int64_t{-1}));
    if (s.contains("error") && s["error"].is_object()) out.error = s["error"].value("description", std::string());
    return out;
  };
  if (j.contains("mirror") && j["mirror"].is_object()) si.mirror = source_info(j["mirror"]);
  if (j.contains("sources") && j["sources"].is_array()) {
    for (const auto& s : j["sources"]) si.sources.push_back(source_info(s));
  }
  si.raw = std::move(j);
  return si;
}

ConsumerInfo parse_consumer_info(nlohmann::json j) {
  ConsumerInfo ci;
  ci.stream = j.value("stream_name", std::string());
  ci.name = j.value("name", std::string());
  const auto& cfg = j["config"];
  ci.deliver_subject = cfg.value("deliver_subject", std::string());
  ci.push = !ci.deliver_subject.empty();
  ci.deliver_group = cfg.value("deliver_group", std::string());
  ci.filter_subject = cfg.value("filter_subject", std::string());
  ci.push_bound = j.value("push_bound", false);
  ci.num_pending = j.value("num_pending", std::uint64_t{0});
  ci.num_ack_pending = j.value("num_ack_pending", std::uint64_t{0});
  ci.num_redelivered = j.value("num_redelivered", std::uint64_t{0});
  ci.num_waiting = j.value("num_waiting", std::uint64_t{0});
  if (j.contains("delivered")) {
    ci.delivered_consumer_sequence = j["delivered"].value("consumer_seq", std::uint64_t{0});
    ci.delivered_stream_sequence = j["delivered"].value("stream_seq", std::uint64_t{0});
  }
  if (j.contains("ack_floor")) ci.ack_floor_stream_sequence = j["ack_floor"].value("stream_seq", std::uint64_t{0});
  ci.raw = std::move(j);
  return ci;
}

Task<StreamInfo> JsApi::stream_info(std::string stream) {
  ErrorContext ctx{.operation = "stream_info", .stream = stream};
  auto j = co_await request(api_subject("STREAM.INFO." + stream), "", std::move(ctx));
  StreamInfo info = parse_stream_info(std::move(j));
  allow_direct_[stream] = info.raw["config"].value("allow_direct", false);
  co_return info;
}

Task<ConsumerInfo> JsApi::consumer_info(std::string stream, std::string consumer) {
  ErrorContext ctx{.operation = "consumer_info", .stream = stream, .durable = consumer};
  auto j = co_await request(api_subject(fmt::format("CONSUMER.INFO.{}.{}", stream, consumer)), "", std::move(ctx));
  co_return parse_consumer_info(std::move(j));
}

Task<void> JsApi::delete_consumer(std::string stream, std::string consumer) {
  ErrorContext ctx{.operation = "delete_consumer", .stream = stream, .durable = consumer};
  co_await request(api_subject(fmt::format("CONSUMER.DELETE.{}.{}", stream, consumer)), "", std::move(ctx));
}

Task<void> JsApi::delete_stream(std::string stream) {
  ErrorContext ctx{.operation = "delete_stream", .stream = stream};
  co_await request(api_subject("STREAM.DELETE." + stream), "", std::move(ctx));
  // nats-server 2.9 leaves a deleted stream's direct-get subscription behind, silent: a direct
  // get would wait js_api_timeout before the API said "stream not found".
  allow_direct_.erase(stream);
}

Task<void> JsApi::purge_stream(std::string stream) {
  ErrorContext ctx{.operation = "purge_stream", .stream = stream};
  co_await request(api_subject("STREAM.PURGE." + stream), "", std::move(ctx));
}

Task<std::string> JsApi::resolve_stream(std::string given, std::string subject, std::string op) {
  if (!given.empty()) co_return given;
  if (!s_.default_stream.empty()) co_return s_.default_stream;
  ErrorContext ctx{.operation = op, .subject = subject};
  nlohmann::json req = {{"subject", subject}};
  auto j = co_await request(api_subject("STREAM.NAMES"), req.dump(), ctx);
  std::vector<std::string> names;
  if (j.contains("streams") && j["streams"].is_array()) {
    for (const auto& n : j["streams"]) names.push_back(n.get<std::string>());
  }
  if (names.empty()) throw NotFoundError("no stream captures this subject (create one, or set stream / NatsConfig::stream_name)", ctx);
  if (names.size() > 1) {
    throw InvalidArgument(
        fmt::format("{} streams capture this subject ({}); name one with the stream option", names.size(), fmt::join(names, ", ")), ctx);
  }
  co_return names.front();
}

Task<void> JsApi::check_enabled() {
  ErrorContext ctx{.operation = "connect"};
  auto j = co_await request(api_subject("INFO"), "", ctx);
  log(LogLevel::debug, "js_account_info",
      {{"streams", std::to_string(j.value("streams", 0))}, {"consumers", std::to_string(j.value("consumers", 0))}});
}

Task<StreamInfo> JsApi::ensure_stream(std::string name, std::vector<std::string> subjects, StreamOptions so, bool create,
                                      bool add_missing) {
  ErrorContext ctx;
  ctx.operation = create ? "create_stream" : "connect";
  ctx.stream = name;
  std::optional<StreamInfo> info;
  try {
    info = co_await stream_info(name);
  } catch (const NotFoundError& e) {
    if (e.js_code() != 10059 && e.js_code() != 0) throw;
    if (!create) {
      log(LogLevel::warn, "js_stream_missing", {{"stream", name}, {"hint", "stream_create is false"}});
      throw;
    }
  }
  if (!info) {
    // The same writer as create_stream(StreamConfig): StreamOptions is a part of it.
    const StreamConfig config{.name = name,
                              .subjects = subjects,
                              .retention = so.retention,
                              .discard = so.discard,
                              .max_msgs = so.max_msgs,
                              .max_bytes = so.max_bytes,
                              .max_age = so.max_age,
                              .max_msgs_per_subject = so.max_msgs_per_subject,
                              .max_msg_size = so.max_msg_size,
                              .duplicate_window = so.duplicate_window,
                              .storage = so.storage,
                              .replicas = so.replicas};
    const nlohmann::json conf = stream_config_json(config);
    bool created_elsewhere = false;
    try {
      auto j = co_await request(api_subject("STREAM.CREATE." + name), conf.dump(), ctx);
      info = parse_stream_info(std::move(j));
      log(LogLevel::info, "js_stream_created",
          {{"stream", name},
           {"subjects", fmt::format("{}", fmt::join(subjects, ","))},
           {"storage", std::string(to_string(so.storage))},
           {"replicas", std::to_string(so.replicas)}});
    } catch (const JetStreamError& e) {
      // 10058: created meanwhile by another pod with the same name; read it back.
      if (e.js_code() != 10058) throw;
      created_elsewhere = true;
    }
    if (created_elsewhere) info = co_await stream_info(name);
  }
  // Subjects asked for but missing from the existing stream are reported, or added when allowed.
  std::vector<std::string> missing;
  for (const auto& s : subjects) {
    if (std::find(info->subjects.begin(), info->subjects.end(), s) == info->subjects.end()) missing.push_back(s);
  }
  if (!missing.empty()) {
    if (!add_missing) {
      throw JetStreamError(fmt::format("stream exists with subjects [{}] but [{}] is asked for as well; set "
                                       "stream_update_subjects = true (NatsConfig) to add them",
                                       fmt::join(info->subjects, ", "), fmt::join(missing, ", ")),
                           ctx);
    }
    nlohmann::json conf = info->raw["config"];
    std::vector<std::string> all = info->subjects;
    all.insert(all.end(), missing.begin(), missing.end());
    conf["subjects"] = all;
    auto j = co_await request(api_subject("STREAM.UPDATE." + name), conf.dump(), ctx);
    info = parse_stream_info(std::move(j));
    log(LogLevel::info, "js_stream_subjects_updated", {{"stream", name}, {"added", fmt::format("{}", fmt::join(missing, ","))}});
  }
  log(LogLevel::info, "js_stream_ready",
      {{"stream", info->name},
       {"subjects", fmt::format("{}", fmt::join(info->subjects, ","))},
       {"storage", std::string(to_string(info->storage))},
       {"replicas", std::to_string(info->replicas)},
       {"msgs", std::to_string(info->messages)},
       {"bytes", std::to_string(info->bytes)},
       {"first_seq", std::to_string(info->first_sequence)},
       {"last_seq", std::to_string(info->last_sequence)},
       {"consumers", std::to_string(info->consumers)}});
  co_return std::move(*info);
}

}  // namespace natbus::detail
