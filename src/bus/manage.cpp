// NatsBus' JetStream management beyond create/info/delete (streams with their whole
// configuration, purge with options, delete_message, listings, account_info): arguments
// checked here, before any round trip; the API calls are JsApi's (jetstream/js_manage.cpp).
#include <fmt/format.h>

#include <type_traits>

#include "base/key.hpp"
#include "base/ref.hpp"
#include "base/util.hpp"
#include "base/validate.hpp"
#include "bus/bus_core.hpp"
#include "message/msg_impl.hpp"
#include "natbus/bus.hpp"
#include "natbus/stream_info.hpp"

namespace natbus {

using detail::BusCore;
using detail::core_of;
using detail::Ref;

// The natural call site, a braced StreamConfig inside co_await, is safe under g++ 12 only so.
static_assert(std::is_trivially_destructible_v<StreamConfig> && std::is_trivially_destructible_v<StreamSource>);

namespace {

Task<std::uint64_t> purge_impl(Ref<BusCore> bus, std::string stream, std::string subject, std::uint64_t keep, std::uint64_t sequence) {
  co_return co_await bus->js().purge_stream(std::move(stream), std::move(subject), keep, sequence);
}

Task<void> delete_message_impl(Ref<BusCore> bus, std::string stream, std::uint64_t sequence, bool secure_erase) {
  co_await bus->js().delete_message(std::move(stream), sequence, secure_erase);
}

Task<std::vector<std::string>> names_impl(Ref<BusCore> bus, std::string api, std::string key, std::string subject, ErrorContext ctx) {
  std::vector<nlohmann::json> all = co_await bus->js().list_all(std::move(api), std::move(key), std::move(subject), std::move(ctx));
  std::vector<std::string> out;
  out.reserve(all.size());
  for (const auto& j : all) {
    if (j.is_string()) out.push_back(j.get<std::string>());
  }
  co_return out;
}

Task<std::vector<StreamInfo>> streams_impl(Ref<BusCore> bus, std::string subject) {
  ErrorContext ctx{.operation = "streams", .subject = subject};
  std::vector<nlohmann::json> all = co_await bus->js().list_all("STREAM.LIST", "streams", std::move(subject), std::move(ctx));
  std::vector<StreamInfo> out;
  out.reserve(all.size());
  for (auto& j : all) out.push_back(detail::parse_stream_info(std::move(j)));
  co_return out;
}

Task<std::vector<ConsumerInfo>> consumers_impl(Ref<BusCore> bus, std::string stream) {
  ErrorContext ctx{.operation = "consumers", .stream = stream};
  std::vector<nlohmann::json> all = co_await bus->js().list_all("CONSUMER.LIST." + stream, "consumers", std::string(), std::move(ctx));
  std::vector<ConsumerInfo> out;
  out.reserve(all.size());
  for (auto& j : all) out.push_back(detail::parse_consumer_info(std::move(j)));
  co_return out;
}

Task<AccountInfo> account_info_impl(Ref<BusCore> bus) { co_return co_await bus->js().account_info(); }

Task<ReceivedMessage> get_impl(Ref<BusCore> bus, std::string stream, std::uint64_t sequence, std::string subject) {
  detail::MsgPtr m = co_await bus->js().get_message(std::move(stream), sequence, std::move(subject));
  co_return ReceivedMessage(detail::kLibrary, new detail::MsgImpl(std::move(m), bus.get()));
}

Task<StreamInfo> put_stream_impl(Ref<BusCore> bus, bool update, std::string name, std::string body) {
  co_return co_await bus->js().put_stream(update, std::move(name), std::move(body));
}

/// Everything about a StreamConfig that is wrong whatever the server: throws InvalidArgument
/// naming the field and its value.
void check_stream_config(std::string_view op, const StreamConfig& c, bool update) {
  const ErrorContext ctx{.operation = std::string(op), .stream = std::string(c.name)};
  const auto bad = [&ctx](std::string message) { return InvalidArgument(std::move(message), ctx); };
  detail::check(op, "stream", c.name, detail::name_problem(c.name));
  // The configuration goes out as JSON: every text in it must be UTF-8.
  const auto utf8 = [op](const char* what, std::string_view v) {
    detail::check(op, what, v, detail::valid_utf8(v) ? std::string() : std::string("not valid UTF-8"));
  };
  for (const auto& s : c.subjects) {
    detail::check(op, "subject", s, detail::subject_problem(s, true));
    utf8("subject", s);
  }
  utf8("description", c.description);
  const auto limit = [&bad](const char* what, std::int64_t v) {
    if (v < -1) throw bad(fmt::format("{} must be -1 (unlimited) or more, got {}", what, v));
  };
  limit("max_msgs", c.max_msgs);
  limit("max_bytes", c.max_bytes);
  limit("max_msgs_per_subject", c.max_msgs_per_subject);
  limit("max_msg_size", c.max_msg_size);
  limit("max_consumers", c.max_consumers);
  if (c.max_age.count() < 0) throw bad(fmt::format("max_age must not be negative, got {} ns", c.max_age.count()));
  if (c.duplicate_window.count() < 0) {
    throw bad(fmt::format("duplicate_window must not be negative, got {} ns", c.duplicate_window.count()));
  }
  if (c.max_age.count() > 0 && c.duplicate_window > c.max_age) {
    throw bad(
        fmt::format("duplicate_window ({} ns) must not be longer than max_age ({} ns)", c.duplicate_window.count(), c.max_age.count()));
  }
  if (c.replicas < 1 || c.replicas > 5) throw bad(fmt::format("replicas must be 1 to 5, got {}", c.replicas));
  if (c.discard_new_per_subject && (c.discard != DiscardPolicy::new_ || c.max_msgs_per_subject <= 0)) {
    throw bad("discard_new_per_subject needs discard = DiscardPolicy::new_ and a max_msgs_per_subject above 0");
  }
  for (const auto& t : c.placement_tags) {
    if (t.empty()) throw bad("placement_tags: a tag must not be empty");
    utf8("placement tag", t);
  }
  if (!c.placement_cluster.empty()) detail::check(op, "placement_cluster", c.placement_cluster, detail::queue_problem(c.placement_cluster));
  const auto source = [&](const StreamSource& s, const char* what) {
    detail::check(op, what, s.name, detail::name_problem(s.name));
    if (s.name == c.name) throw bad(fmt::format("{} \"{}\" is the stream itself", what, s.name));
    if (!s.filter_subject.empty()) {
      const std::string field = fmt::format("{} filter_subject", what);
      detail::check(op, field, s.filter_subject, detail::subject_problem(s.filter_subject, true));
      utf8(field.c_str(), s.filter_subject);
    }
    if (s.start_sequence > 0 && s.start_time)
      throw bad(fmt::format("{} \"{}\": start_sequence and start_time cannot both be given", what, s.name));
    if (!s.domain.empty()) detail::check(op, fmt::format("{} domain", what), s.domain, detail::name_problem(s.domain));
  };
  if (c.mirror) {
    source(*c.mirror, "mirror");
    if (!c.subjects.empty()) throw bad("a mirror takes no subjects: it stores what its origin stores");
    if (!c.sources.empty()) throw bad("a mirror cannot have sources as well");
  } else if (c.mirror_direct) {
    throw bad("mirror_direct is for mirrors");
  }
  for (const auto& s : c.sources) source(s, "source");
  if (!c.republish_source.empty() && c.republish_destination.empty()) {
    throw bad("republish_source needs a republish_destination");
  }
  if (!c.republish_destination.empty()) {
    detail::check(op, "republish_destination", c.republish_destination, detail::subject_problem(c.republish_destination, true));
    utf8("republish_destination", c.republish_destination);
    if (!c.republish_source.empty()) {
      detail::check(op, "republish_source", c.republish_source, detail::subject_problem(c.republish_source, true));
      utf8("republish_source", c.republish_source);
    }
  }
  if (c.allow_rollup && c.deny_purge) throw bad("allow_rollup purges: not with deny_purge (the server requires the purge permission)");
  if (c.sealed && !update) throw bad("sealed is for update_stream: a new stream cannot be created sealed");
}

void check_filter(std::string_view op, std::string_view subject) {
  if (!subject.empty()) detail::check(op, "subject", subject, detail::subject_problem(subject, true));
}

}  // namespace

// The configuration is read (checked and written as JSON) before the Task is returned: nothing
// of the caller's views is used after that.
Task<StreamInfo> NatsBus::create_stream(const StreamConfig& config) {
  check_stream_config("create_stream", config, false);
  std::string body = detail::stream_config_json(config).dump();
  return put_stream_impl(Ref<BusCore>(&core_of(core_, "create_stream")), false, std::string(config.name), std::move(body));
}

Task<StreamInfo> NatsBus::update_stream(const StreamConfig& config) {
  check_stream_config("update_stream", config, true);
  std::string body = detail::stream_config_json(config).dump();
  return put_stream_impl(Ref<BusCore>(&core_of(core_, "update_stream")), true, std::string(config.name), std::move(body));
}

Task<std::uint64_t> NatsBus::purge_stream(std::string_view stream, const PurgeOptions& options) {
  detail::check("purge_stream", "stream", stream, detail::name_problem(stream));
  check_filter("purge_stream", options.subject);
  if (options.keep > 0 && options.sequence > 0) {
    throw InvalidArgument(fmt::format("keep ({}) and sequence ({}) cannot both be given", options.keep, options.sequence),
                          ErrorContext{.operation = "purge_stream", .stream = std::string(stream)});
  }
  return purge_impl(Ref<BusCore>(&core_of(core_, "purge_stream")), std::string(stream), std::string(options.subject), options.keep,
                    options.sequence);
}

Task<ReceivedMessage> NatsBus::get_message(std::string_view stream, std::uint64_t sequence) {
  detail::check("get_message", "stream", stream, detail::name_problem(stream));
  if (sequence == 0) {
    throw InvalidArgument("sequence 0 is not a message (sequences start at 1)",
                          ErrorContext{.operation = "get_message", .stream = std::string(stream)});
  }
  return get_impl(Ref<BusCore>(&core_of(core_, "get_message")), std::string(stream), sequence, std::string());
}

Task<ReceivedMessage> NatsBus::get_last_message(std::string_view stream, std::string_view subject) {
  detail::check("get_last_message", "stream", stream, detail::name_problem(stream));
  detail::check("get_last_message", "subject", subject, detail::subject_problem(subject, false));
  return get_impl(Ref<BusCore>(&core_of(core_, "get_last_message")), std::string(stream), 0, std::string(subject));
}

Task<void> NatsBus::delete_message(std::string_view stream, std::uint64_t sequence, bool secure_erase) {
  detail::check("delete_message", "stream", stream, detail::name_problem(stream));
  if (sequence == 0) {
    throw InvalidArgument("sequence 0 is not a message (sequences start at 1)",
                          ErrorContext{.operation = "delete_message", .stream = std::string(stream)});
  }
  return delete_message_impl(Ref<BusCore>(&core_of(core_, "delete_message")), std::string(stream), sequence, secure_erase);
}

Task<std::vector<std::string>> NatsBus::stream_names(std::string_view subject_filter) {
  check_filter("stream_names", subject_filter);
  return names_impl(Ref<BusCore>(&core_of(core_, "stream_names")), "STREAM.NAMES", "streams", std::string(subject_filter),
                    ErrorContext{.operation = "stream_names", .subject = std::string(subject_filter)});
}

Task<std::vector<StreamInfo>> NatsBus::streams(std::string_view subject_filter) {
  check_filter("streams", subject_filter);
  return streams_impl(Ref<BusCore>(&core_of(core_, "streams")), std::string(subject_filter));
}

Task<std::vector<std::string>> NatsBus::consumer_names(std::string_view stream) {
  detail::check("consumer_names", "stream", stream, detail::name_problem(stream));
  return names_impl(Ref<BusCore>(&core_of(core_, "consumer_names")), "CONSUMER.NAMES." + std::string(stream), "consumers", std::string(),
                    ErrorContext{.operation = "consumer_names", .stream = std::string(stream)});
}

Task<std::vector<ConsumerInfo>> NatsBus::consumers(std::string_view stream) {
  detail::check("consumers", "stream", stream, detail::name_problem(stream));
  return consumers_impl(Ref<BusCore>(&core_of(core_, "consumers")), std::string(stream));
}

Task<AccountInfo> NatsBus::account_info() { return account_info_impl(Ref<BusCore>(&core_of(core_, "account_info"))); }

}  // namespace natbus
