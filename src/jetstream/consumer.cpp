// Ensuring the durable: create it, or check and reconcile an existing one.
#include "jetstream/consumer.hpp"

#include <fmt/format.h>

#include <array>
#include <cstring>

#include "base/util.hpp"
#include "base/validate.hpp"
#include "message/trace.hpp"
#include "transport/request.hpp"

namespace natbus::detail {

namespace {

template <class D>
std::int64_t ns(D d) {
  return static_cast<std::int64_t>(saturating_ns(d).count());
}

nlohmann::json consumer_config(const ConsumerSpec& s) {
  nlohmann::json c = {
      {"deliver_policy", std::string(to_string(s.deliver_policy))},
      {"ack_policy", s.ack_none ? "none" : "explicit"},
      {"max_deliver", s.max_deliver},
      {"replay_policy", "instant"},
  };
  if (!s.ack_none) {
    c["ack_wait"] = ns(s.ack_wait);
    c["max_ack_pending"] = s.max_ack_pending;
  }
  if (!s.durable.empty()) c["durable_name"] = s.durable;
  if (!s.filter_subject.empty()) c["filter_subject"] = s.filter_subject;
  if (s.deliver_policy == DeliverPolicy::by_start_sequence) c["opt_start_seq"] = s.start_sequence;
  if (s.deliver_policy == DeliverPolicy::by_start_time) c["opt_start_time"] = format_time(s.start_time, TimeText::rfc3339_nanos);
  if (s.push) {
    c["deliver_subject"] = s.deliver_subject;
    if (!s.queue.empty()) c["deliver_group"] = s.queue;
    if (s.idle_heartbeat.count() > 0) c["idle_heartbeat"] = ns(s.idle_heartbeat);
    if (s.flow_control) c["flow_control"] = true;
  }
  if (s.inactive_threshold.count() > 0) c["inactive_threshold"] = ns(s.inactive_threshold);
  if (!s.backoff.empty()) {
    nlohmann::json b = nlohmann::json::array();
    for (const auto d : s.backoff) b.push_back(ns(d));
    c["backoff"] = std::move(b);
  }
  if (!s.description.empty()) c["description"] = s.description;
  if (s.headers_only) c["headers_only"] = true;
  if (s.memory_storage) c["mem_storage"] = true;
  if (s.replicas > 0) c["num_replicas"] = s.replicas;
  if (s.sample_frequency > 0) c["sample_freq"] = fmt::format("{}%", s.sample_frequency);
  if (s.rate_limit_bps > 0) c["rate_limit_bps"] = s.rate_limit_bps;
  if (s.max_waiting > 0) c["max_waiting"] = s.max_waiting;
  if (s.max_request_batch > 0) c["max_batch"] = s.max_request_batch;
  if (s.max_request_expires.count() > 0) c["max_expires"] = ns(s.max_request_expires);
  if (s.max_request_max_bytes > 0) c["max_bytes"] = s.max_request_max_bytes;
  return c;
}

/// The ConsumerSettings that were given and that the server has otherwise.
void settings_differences(const ConsumerSpec& s, const nlohmann::json& cfg, std::vector<std::string>& out) {
  const auto differs = [&out](std::string_view what, const auto& have, const auto& want) {
    if (have != want) out.push_back(fmt::format("{} {} -> {}", what, have, want));
  };
  if (!s.backoff.empty()) {
    std::vector<std::int64_t> want;
    for (const auto d : s.backoff) want.push_back(ns(d));
    std::vector<std::int64_t> have;
    if (const auto it = cfg.find("backoff"); it != cfg.end() && it->is_array()) {
      for (const auto& v : *it) have.push_back(v.is_number() ? v.get<std::int64_t>() : 0);
    }
    if (have != want) out.push_back(fmt::format("backoff [{}] ns -> [{}] ns", fmt::join(have, ", "), fmt::join(want, ", ")));
  }
  if (s.inactive_threshold.count() > 0)
    differs("inactive threshold", cfg.value("inactive_threshold", std::int64_t{0}), ns(s.inactive_threshold));
  if (!s.description.empty()) differs("description", cfg.value("description", std::string()), s.description);
  if (s.headers_only) differs("headers only", cfg.value("headers_only", false), true);
  if (s.memory_storage) differs("memory storage", cfg.value("mem_storage", false), true);
  if (s.replicas > 0) differs("replicas", cfg.value("num_replicas", 0), s.replicas);
  if (s.sample_frequency > 0) {
    std::string have = cfg.value("sample_freq", std::string());
    if (!have.empty() && have.back() == '%') have.pop_back();
    differs("sample frequency", have, std::to_string(s.sample_frequency));
  }
  if (s.rate_limit_bps > 0) differs("rate limit", cfg.value("rate_limit_bps", std::uint64_t{0}), s.rate_limit_bps);
  if (s.max_waiting > 0) differs("max waiting", cfg.value("max_waiting", 0), s.max_waiting);
  if (s.max_request_batch > 0) differs("max request batch", cfg.value("max_batch", 0), s.max_request_batch);
  if (s.max_request_expires.count() > 0)
    differs("max request expires", cfg.value("max_expires", std::int64_t{0}), ns(s.max_request_expires));
  if (s.max_request_max_bytes > 0) differs("max request bytes", cfg.value("max_bytes", 0), s.max_request_max_bytes);
}

/// The settings DESIGN.md §1 reconciles (queue group, filter, deliver policy, ack wait, max ack
/// pending), and the ConsumerSettings that were given.
std::vector<std::string> differences(const ConsumerSpec& s, const nlohmann::json& cfg) {
  std::vector<std::string> out;
  const std::string group = cfg.value("deliver_group", std::string());
  if (s.push && group != s.queue) out.push_back(fmt::format("queue group \"{}\" -> \"{}\"", group, s.queue));
  const std::string filter = cfg.value("filter_subject", std::string());
  if (filter != s.filter_subject) out.push_back(fmt::format("filter subject \"{}\" -> \"{}\"", filter, s.filter_subject));
  const std::string policy = cfg.value("deliver_policy", std::string("all"));
  if (policy != to_string(s.deliver_policy)) out.push_back(fmt::format("deliver policy {} -> {}", policy, to_string(s.deliver_policy)));
  const std::int64_t ack_wait = cfg.value("ack_wait", std::int64_t{0});
  if (ack_wait != ns(s.ack_wait)) {
    out.push_back(fmt::format("ack wait {} ms -> {} ms", ack_wait / 1000000, s.ack_wait.count()));
  }
  const int map = cfg.value("max_ack_pending", 0);
  if (map != s.max_ack_pending) out.push_back(fmt::format("max ack pending {} -> {}", map, s.max_ack_pending));
  settings_differences(s, cfg, out);
  return out;
}

Task<ConsumerInfo> create_consumer(JsApi& js, const ConsumerSpec& spec, const ErrorContext& ctx) {
  nlohmann::json req = {{"stream_name", spec.stream}, {"config", consumer_config(spec)}};
  const std::string subject = spec.durable.empty()
                                  ? js.api_subject("CONSUMER.CREATE." + spec.stream)
                                  : js.api_subject(fmt::format("CONSUMER.DURABLE.CREATE.{}.{}", spec.stream, spec.durable));
  std::optional<nlohmann::json> j;
  std::exception_ptr error;
  try {
    j = co_await js.request(subject, req.dump(), ctx);
  } catch (const JetStreamError& e) {
    if (e.js_code() != 10093) throw;
    error = std::current_exception();
  }
  if (error) {
    // 10093: the filter subject is not one the stream captures. Say which stream and subjects.
    ErrorContext c = ctx;
    try {
      std::rethrow_exception(error);
    } catch (const JetStreamError& e) {
      c = e.context();
    }
    auto si = co_await js.stream_info(spec.stream);
    throw InvalidArgument(fmt::format("stream {} does not capture subject {} (its subjects: {})", spec.stream, spec.filter_subject,
                                      fmt::join(si.subjects, ", ")),
                          std::move(c));
  }
  co_return parse_consumer_info(std::move(*j));
}

}  // namespace

Task<ConsumerInfo> ensure_consumer(JsApi& js, ConsumerSpec& spec) {
  ErrorContext ctx;
  ctx.operation = spec.op;
  ctx.subject = spec.filter_subject;
  ctx.stream = spec.stream;
  ctx.durable = spec.durable;
  const std::string_view kind = spec.push ? "push" : "pull";
  if (spec.durable.empty()) {
    if (spec.push && spec.deliver_subject.empty()) spec.deliver_subject = js.new_inbox();
    auto info = co_await create_consumer(js, spec, ctx);
    log(spec.ack_none ? LogLevel::debug : LogLevel::info, "js_consumer_created",
        {{"stream", spec.stream},
         {"consumer", info.name},
         {"kind", spec.ack_none ? "ordered" : "ephemeral"},
         {"subject", spec.filter_subject}});
    co_return info;
  }
  std::optional<ConsumerInfo> existing;
  try {
    existing = co_await js.consumer_info(spec.stream, spec.durable);
  } catch (const NotFoundError& e) {
    // 10014: consumer missing (create it). A missing stream is the caller's error: rethrow.
    if (e.js_code() != 10014) throw;
  }
  if (existing) {
    if (existing->push != spec.push) {
      throw ConsumerKindError(
          fmt::format("durable exists as a {} consumer, but {} asks for a {} consumer (delete the durable or use {})",
                      existing->push ? "PUSH" : "PULL", spec.op, kind, existing->push ? "push_subscribe" : "pull_subscribe"),
          ctx);
    }
    const auto diffs = differences(spec, existing->raw["config"]);
    if (diffs.empty()) {
      spec.deliver_subject = existing->deliver_subject;
      log(LogLevel::info, "js_consumer_attached", {{"stream", spec.stream}, {"durable", spec.durable}, {"kind", std::string(kind)}});
      co_return *existing;
    }
    if (!spec.reconcile) {
      spec.deliver_subject = existing->deliver_subject;
      log(LogLevel::warn, "js_consumer_config_differs",
          {{"stream", spec.stream},
           {"durable", spec.durable},
           {"differences", fmt::format("{}", fmt::join(diffs, "; "))},
           {"action", "kept (bind=false)"}});
      co_return *existing;
    }
    log(LogLevel::warn, "js_consumer_recreated",
        {{"stream", spec.stream}, {"durable", spec.durable}, {"differences", fmt::format("{}", fmt::join(diffs, "; "))}});
    co_await js.delete_consumer(spec.stream, spec.durable);
  }
  if (spec.push && spec.deliver_subject.empty()) spec.deliver_subject = js.new_inbox();
  ConsumerInfo info;
  std::exception_ptr create_error;
  try {
    info = co_await create_consumer(js, spec, ctx);
  } catch (const JetStreamError&) {
    create_error = std::current_exception();
  }
  if (create_error) {
    // Another pod may have created it at the same moment: use it if it matches.
    std::optional<ConsumerInfo> again;
    try {
      again = co_await js.consumer_info(spec.stream, spec.durable);
    } catch (const NotFoundError&) {
    }
    if (!again || again->push != spec.push || !differences(spec, again->raw["config"]).empty()) std::rethrow_exception(create_error);
    info = std::move(*again);
  }
  spec.deliver_subject = info.deliver_subject;
  log(LogLevel::info, "js_consumer_created",
      {{"stream", spec.stream},
       {"durable", spec.durable},
       {"kind", std::string(kind)},
       {"subject", spec.filter_subject},
       {"queue", spec.queue},
       {"deliver_policy", std::string(to_string(spec.deliver_policy))}});
  co_return info;
}

}  // namespace natbus::detail
