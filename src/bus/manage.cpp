// NatsBus' JetStream management beyond create/info/delete (purge with options, delete_message,
// listings, account_info): arguments checked here, before any round trip; the API calls are
// JsApi's (jetstream/js_manage.cpp).
#include <fmt/format.h>

#include "base/key.hpp"
#include "base/ref.hpp"
#include "base/validate.hpp"
#include "bus/bus_core.hpp"
#include "message/msg_impl.hpp"
#include "natbus/bus.hpp"
#include "natbus/stream_info.hpp"

namespace natbus {

using detail::BusCore;
using detail::core_of;
using detail::Ref;

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

void check_filter(std::string_view op, std::string_view subject) {
  if (!subject.empty()) detail::check(op, "subject", subject, detail::subject_problem(subject, true));
}

}  // namespace

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
