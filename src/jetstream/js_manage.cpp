// JetStream management a service owner needs beyond create/info/delete: purge with a filter,
// deleting one message, paged listings of streams and consumers, and the account's info.
#include <fmt/format.h>

#include "jetstream/js_api.hpp"

namespace natbus::detail {

namespace {

/// An integer field of `j`, or `fallback` when missing or not a number.
template <class T>
T number(const nlohmann::json& j, const char* key, T fallback) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return fallback;
  return it->get<T>();
}

}  // namespace

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
