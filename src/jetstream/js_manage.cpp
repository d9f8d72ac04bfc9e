// JetStream management a service owner needs beyond create/info/delete: streams with their
// whole configuration, purge with a filter, deleting one message, paged listings of streams and
// consumers, and the account's info.
#include <fmt/format.h>

#include <cstring>
#include <utility>
#include <vector>

#include "base/util.hpp"
#include "jetstream/js_api.hpp"
#include "message/header_block.hpp"
#include "natbus/log.hpp"

namespace natbus::detail {

namespace {

/// An integer field of `j`, or `fallback` when missing or not a number.
template <class T>
T number(const nlohmann::json& j, const char* key, T fallback) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return fallback;
  return it->get<T>();
}

using HeaderList = std::vector<std::pair<std::string, std::string>>;

/// A message as the stream stored it, built for a ReceivedMessage: no reply subject (nothing to
/// acknowledge), the stored subject, headers and data.
MsgPtr stored_message(const std::string& subject, const HeaderList& headers, std::string_view data, const ErrorContext& ctx) {
  natsMsg* raw = nullptr;
  if (natsMsg_Create(&raw, subject.c_str(), nullptr, data.data(), static_cast<int>(data.size())) != NATS_OK) {
    throw Error(errc::nats, "cannot build the stored message (out of memory?)", ctx);
  }
  MsgPtr m(raw);
  for (const auto& [name, value] : headers) {
    if (natsMsgHeader_Add(m.get(), name.c_str(), value.c_str()) != NATS_OK) {
      throw Error(errc::nats, fmt::format("cannot add header {} to the stored message", name), ctx);
    }
  }
  return m;
}

/// The headers of a message as cnats holds them (names in their order, each value).
HeaderList headers_of(natsMsg* m) {
  HeaderList out;
  const char** keys = nullptr;
  int n = 0;
  if (natsMsgHeader_Keys(m, &keys, &n) != NATS_OK) return out;
  for (int i = 0; i < n; ++i) {
    const char** values = nullptr;
    int k = 0;
    if (natsMsgHeader_Values(m, keys[i], &values, &k) == NATS_OK) {
      for (int j = 0; j < k; ++j) out.emplace_back(keys[i], values[j]);
      std::free(static_cast<void*>(values));
    }
  }
  std::free(static_cast<void*>(keys));
  return out;
}

std::string header_value(const HeaderList& h, std::string_view name) {
  for (const auto& [k, v] : h) {
    if (k == name) return v;
  }
  return {};
}

}  // namespace

Task<MsgPtr> JsApi::get_message(std::string stream, std::uint64_t sequence, std::string last_subject) {
  ErrorContext ctx{.operation = last_subject.empty() ? "get_message" : "get_last_message", .subject = last_subject, .stream = stream};
  nlohmann::json req = nlohmann::json::object();
  if (last_subject.empty()) {
    req["seq"] = sequence;
  } else {
    req["last_by_subj"] = last_subject;
  }
  const std::string what = last_subject.empty() ? fmt::format("sequence {}", sequence) : fmt::format("subject {}", last_subject);
  // Direct get (any replica answers) when the stream allows it. Whether it does is looked up
  // once per stream (stream_info keeps it current); a direct get that fails for want of an
  // answer forgets it and goes to the API.
  if (!allow_direct_.contains(stream)) (void)co_await stream_info(stream);
  std::optional<MsgPtr> direct;
  if (allow_direct_[stream]) {
    try {
      direct = co_await request_msg(api_subject("DIRECT.GET." + stream), req.dump(), ctx);
    } catch (const JetStreamNotEnabledError&) {
      allow_direct_.erase(stream);  // no responders: no longer direct (or gone); the API says
    } catch (const TimeoutError&) {
      allow_direct_.erase(stream);
    }
  }
  if (direct) {
    natsMsg* m = direct->get();
    HeaderList headers = headers_of(m);
    const std::string status = header_value(headers, "Status");
    if (!status.empty()) {
      ctx.server_text = header_value(headers, "Description");
      if (status == "404") throw NotFoundError(fmt::format("no message at {}", what), std::move(ctx));
      throw JetStreamError(fmt::format("direct get of {} failed with status {}", what, status), std::move(ctx));
    }
    const std::string subject = header_value(headers, "Nats-Subject");
    if (subject.empty()) throw Error(errc::protocol, fmt::format("the direct get of {} has no Nats-Subject header", what), std::move(ctx));
    const char* data = natsMsg_GetData(m);
    co_return stored_message(subject, headers,
                             std::string_view(data == nullptr ? "" : data, static_cast<std::size_t>(natsMsg_GetDataLength(m))), ctx);
  }
  nlohmann::json j;
  try {
    j = co_await request(api_subject("STREAM.MSG.GET." + stream), req.dump(), ctx);
  } catch (const NotFoundError& e) {
    if (e.js_code() != 10037) throw;  // a missing stream says so itself
    ErrorContext c = e.context();
    throw NotFoundError(fmt::format("no message at {}", what), std::move(c));
  }
  const auto it = j.find("message");
  if (it == j.end() || !it->is_object())
    throw Error(errc::protocol, fmt::format("the answer for {} holds no message", what), std::move(ctx));
  const nlohmann::json& msg = *it;
  const std::string subject = msg.value("subject", std::string());
  const auto data = base64_decode(msg.value("data", std::string()));
  const auto block = base64_decode(msg.value("hdrs", std::string()));
  if (subject.empty() || !data || !block)
    throw Error(errc::protocol, fmt::format("the stored message at {} cannot be read", what), std::move(ctx));
  HeaderList headers;
  for_each_header(*block, [&headers](std::string_view k, std::string_view v) {
    headers.emplace_back(std::string(k), std::string(v));
    return true;
  });
  // What a direct get carries, so that both paths read alike (ReceivedMessage::metadata()).
  headers.emplace_back("Nats-Stream", stream);
  headers.emplace_back("Nats-Subject", subject);
  headers.emplace_back("Nats-Sequence", std::to_string(msg.value("seq", std::uint64_t{0})));
  headers.emplace_back("Nats-Time-Stamp", msg.value("time", std::string()));
  co_return stored_message(subject, headers, *data, ctx);
}

Task<std::uint64_t> JsApi::purge_stream(std::string stream, std::string subject, std::uint64_t keep, std::uint64_t sequence) {
  ErrorContext ctx{.operation = "purge_stream", .subject = subject, .stream = stream};
  nlohmann::json req = nlohmann::json::object();
  if (!subject.empty()) req["filter"] = subject;
  if (keep > 0) req["keep"] = keep;
  if (sequence > 0) req["seq"] = sequence;
  auto j = co_await request(api_subject("STREAM.PURGE." + stream), req.dump(), std::move(ctx));
  co_return number<std::uint64_t>(j, "purged", 0);
}

Task<void> JsApi::delete_message(std::string stream, std::uint64_t sequence, bool secure_erase) {
  ErrorContext ctx{.operation = "delete_message", .stream = stream};
  const nlohmann::json req{{"seq", sequence}, {"no_erase", !secure_erase}};
  // A sequence that holds no message: NotFoundError ("sequence N not found", err_code 10043).
  co_await request(api_subject("STREAM.MSG.DELETE." + stream), req.dump(), std::move(ctx));
}

Task<std::vector<nlohmann::json>> JsApi::list_all(std::string api, std::string key, std::string subject, ErrorContext context) {
  std::vector<nlohmann::json> out;
  // Bounded: each page moves the offset on, and the server's total ends it.
  for (int page = 0; page < 100000; ++page) {
    nlohmann::json req{{"offset", out.size()}};
    if (!subject.empty()) req["subject"] = subject;
    auto j = co_await request(api_subject(api), req.dump(), context);
    const auto total = number<std::uint64_t>(j, "total", 0);
    const auto it = j.find(key);
    std::size_t got = 0;
    if (it != j.end() && it->is_array()) {
      for (auto& e : *it) out.push_back(std::move(e));
      got = it->size();
    }
    if (got == 0 || out.size() >= total) break;
  }
  co_return out;
}

namespace {
const char* retention_text(RetentionPolicy r) {
  switch (r) {
    case RetentionPolicy::limits:
      return "limits";
    case RetentionPolicy::interest:
      return "interest";
    case RetentionPolicy::work_queue:
      return "workqueue";
  }
  return "limits";
}

nlohmann::json source_json(const StreamSource& s) {
  nlohmann::json j = {{"name", std::string(s.name)}};
  if (s.start_sequence > 0) j["opt_start_seq"] = s.start_sequence;
  if (s.start_time) j["opt_start_time"] = format_time(*s.start_time, TimeText::rfc3339_nanos);
  if (!s.filter_subject.empty()) j["filter_subject"] = std::string(s.filter_subject);
  // As nats.go: a source in another domain is read through that domain's API prefix.
  if (!s.domain.empty()) j["external"] = {{"api", fmt::format("$JS.{}.API", s.domain)}, {"deliver", ""}};
  return j;
}
}  // namespace

nlohmann::json stream_config_json(const StreamConfig& c) {
  nlohmann::json j = {
      {"name", std::string(c.name)},
      {"retention", retention_text(c.retention)},
      {"max_consumers", c.max_consumers},
      {"max_msgs", c.max_msgs},
      {"max_bytes", c.max_bytes},
      {"max_age", c.max_age.count()},
      {"max_msgs_per_subject", c.max_msgs_per_subject},
      {"max_msg_size", c.max_msg_size},
      {"discard", c.discard == DiscardPolicy::old ? "old" : "new"},
      {"storage", c.storage == StorageType::file ? "file" : "memory"},
      {"num_replicas", c.replicas},
      {"allow_direct", c.allow_direct},
      {"mirror_direct", c.mirror_direct},
      {"sealed", c.sealed},
      {"deny_delete", c.deny_delete},
      {"deny_purge", c.deny_purge},
      {"allow_rollup_hdrs", c.allow_rollup},
  };
  if (!c.description.empty()) j["description"] = std::string(c.description);
  if (!c.subjects.empty()) j["subjects"] = std::vector<std::string>(c.subjects.begin(), c.subjects.end());
  if (c.no_ack) j["no_ack"] = true;
  if (c.duplicate_window.count() > 0) j["duplicate_window"] = c.duplicate_window.count();
  if (c.discard_new_per_subject) j["discard_new_per_subject"] = true;
  if (!c.placement_cluster.empty() || !c.placement_tags.empty()) {
    nlohmann::json p = nlohmann::json::object();
    if (!c.placement_cluster.empty()) p["cluster"] = std::string(c.placement_cluster);
    if (!c.placement_tags.empty()) p["tags"] = std::vector<std::string>(c.placement_tags.begin(), c.placement_tags.end());
    j["placement"] = std::move(p);
  }
  if (c.mirror) j["mirror"] = source_json(*c.mirror);
  if (!c.sources.empty()) {
    nlohmann::json sources = nlohmann::json::array();
    for (const auto& s : c.sources) sources.push_back(source_json(s));
    j["sources"] = std::move(sources);
  }
  if (!c.republish_destination.empty()) {
    j["republish"] = {{"src", std::string(c.republish_source)},
                      {"dest", std::string(c.republish_destination)},
                      {"headers_only", c.republish_headers_only}};
  }
  return j;
}

Task<StreamInfo> JsApi::put_stream(bool update, std::string name, std::string body) {
  ErrorContext ctx{.operation = update ? "update_stream" : "create_stream", .stream = name};
  auto j = co_await request(api_subject((update ? "STREAM.UPDATE." : "STREAM.CREATE.") + name), std::move(body), std::move(ctx));
  StreamInfo info = parse_stream_info(std::move(j));
  allow_direct_[name] = info.raw["config"].value("allow_direct", false);
  log(LogLevel::info, update ? "js_stream_updated" : "js_stream_created",
      {{"stream", name}, {"subjects", fmt::format("{}", fmt::join(info.subjects, ","))}});
  co_return info;
}

Task<AccountInfo> JsApi::account_info() {
  ErrorContext ctx{.operation = "account_info"};
  auto j = co_await request(api_subject("INFO"), "", std::move(ctx));
  AccountInfo a;
  a.memory = number<std::uint64_t>(j, "memory", 0);
  a.storage = number<std::uint64_t>(j, "storage", 0);
  a.streams = number<std::uint64_t>(j, "streams", 0);
  a.consumers = number<std::uint64_t>(j, "consumers", 0);
  a.domain = j.value("domain", std::string());
  if (const auto it = j.find("limits"); it != j.end() && it->is_object()) {
    const nlohmann::json& l = *it;
    a.limits.max_memory = number<std::int64_t>(l, "max_memory", -1);
    a.limits.max_storage = number<std::int64_t>(l, "max_storage", -1);
    a.limits.max_streams = number<std::int64_t>(l, "max_streams", -1);
    a.limits.max_consumers = number<std::int64_t>(l, "max_consumers", -1);
    a.limits.max_ack_pending = number<std::int64_t>(l, "max_ack_pending", -1);
    a.limits.memory_max_stream_bytes = number<std::int64_t>(l, "memory_max_stream_bytes", -1);
    a.limits.storage_max_stream_bytes = number<std::int64_t>(l, "storage_max_stream_bytes", -1);
    a.limits.max_bytes_required = l.value("max_bytes_required", false);
  }
  if (const auto it = j.find("api"); it != j.end() && it->is_object()) {
    a.api_total = number<std::uint64_t>(*it, "total", 0);
    a.api_errors = number<std::uint64_t>(*it, "errors", 0);
  }
  a.raw = std::move(j);
  co_return a;
}

}  // namespace natbus::detail
