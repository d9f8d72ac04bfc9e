// NATS services (ADR-32): NatsBus::add_service, Service, ServiceGroup. Built on core
// subscriptions: three for discovery ($SRV.<verb>, $SRV.<verb>.<name>, $SRV.<verb>.<name>.<id>)
// and one per endpoint, each in its queue group.
#include "natbus/service.hpp"

#include <fmt/format.h>

#include <memory>
#include <regex>

#include "base/ref.hpp"
#include "base/util.hpp"
#include "base/validate.hpp"
#include "bus/bus_core.hpp"
#include "core/core_sub.hpp"
#include "natbus/json.hpp"

namespace natbus {

namespace detail {

namespace {

constexpr std::string_view kApiPrefix = "$SRV";
constexpr std::string_view kPingType = "io.nats.micro.v1.ping_response";
constexpr std::string_view kInfoType = "io.nats.micro.v1.info_response";
constexpr std::string_view kStatsType = "io.nats.micro.v1.stats_response";

bool valid_name(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

bool valid_semver(std::string_view v) {
  // semver.org's suggested expression.
  static const std::regex re(
      R"(^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$)");
  return std::regex_match(v.begin(), v.end(), re);
}

nlohmann::json metadata_json(const std::map<std::string, std::string>& m) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [k, v] : m) out[k] = v;
  return out;
}

}  // namespace

struct EndpointState {
  EndpointInfo info{};
  std::uint64_t num_requests = 0;
  std::uint64_t num_errors = 0;
  std::string last_error{};
  std::chrono::nanoseconds processing_time{0};
};

namespace {
/// The metadata of a config or options, owned (a name given twice: the last value).
std::map<std::string, std::string> metadata_of(std::span<const Header> list) {
  std::map<std::string, std::string> out;
  for (const Header& h : list) out[std::string(h.name)] = std::string(h.value);
  return out;
}
}  // namespace

/// What add_service() was given, owned.
struct OwnedConfig {
  std::string name;
  std::string version;
  std::string description;
  std::map<std::string, std::string> metadata;
  std::string queue_group;  // empty: none
};

/// One service instance. Touched only on the loop thread. The endpoint and discovery handlers
/// hold references to it; shutdown() drops the subscriptions (and so those handlers).
class ServiceCore final : public RefCounted {
 public:
  ServiceCore(Ref<BusCore> bus, const ServiceConfig& cfg)
      : bus_(std::move(bus)),
        cfg_{.name = std::string(cfg.name),
             .version = std::string(cfg.version),
             .description = std::string(cfg.description),
             .metadata = metadata_of(cfg.metadata),
             .queue_group = cfg.no_queue_group ? std::string() : std::string(cfg.queue_group)},
        id_(random_token(22)) {}

  [[nodiscard]] BusCore& bus() const noexcept { return *bus_; }
  [[nodiscard]] const OwnedConfig& config() const noexcept { return cfg_; }
  [[nodiscard]] const std::string& id() const noexcept { return id_; }
  [[nodiscard]] bool stopped() const noexcept {
    return stopped_ || bus_->state() == BusCore::State::closing || bus_->state() == BusCore::State::closed;
  }
  std::chrono::system_clock::time_point started{};
  std::vector<EndpointState> endpoints;
  std::vector<Subscription> endpoint_subs;
  std::vector<Subscription> discovery_subs;

  [[nodiscard]] ServiceInfo info() const {
    ServiceInfo out{.name = cfg_.name, .id = id_, .version = cfg_.version, .description = cfg_.description, .metadata = cfg_.metadata};
    for (const auto& e : endpoints) out.endpoints.push_back(e.info);
    return out;
  }
  [[nodiscard]] ServiceStats stats() const {
    ServiceStats out{.name = cfg_.name, .id = id_, .version = cfg_.version, .metadata = cfg_.metadata, .started = started};
    for (const auto& e : endpoints) {
      EndpointStats s{.name = e.info.name,
                      .subject = e.info.subject,
                      .queue_group = e.info.queue_group,
                      .num_requests = e.num_requests,
                      .num_errors = e.num_errors,
                      .last_error = e.last_error,
                      .processing_time = e.processing_time};
      if (e.num_requests > 0) s.average_processing_time = e.processing_time / static_cast<std::int64_t>(e.num_requests);
      out.endpoints.push_back(std::move(s));
    }
    return out;
  }
  void reset_stats() noexcept {
    for (auto& e : endpoints) {
      e.num_requests = 0;
      e.num_errors = 0;
      e.last_error.clear();
      e.processing_time = {};
    }
  }

  /// The JSON answer to `verb`, or nothing for a verb ADR-32 does not have.
  [[nodiscard]] std::optional<nlohmann::json> answer(std::string_view verb) const {
    nlohmann::json j{{"name", cfg_.name}, {"id", id_}, {"version", cfg_.version}, {"metadata", metadata_json(cfg_.metadata)}};
    if (verb == "PING") {
      j["type"] = kPingType;
    } else if (verb == "INFO") {
      j["type"] = kInfoType;
      j["description"] = cfg_.description;
      nlohmann::json eps = nlohmann::json::array();
      for (const auto& e : endpoints) {
        eps.push_back({{"name", e.info.name},
                       {"subject", e.info.subject},
                       {"queue_group", e.info.queue_group},
                       {"metadata", metadata_json(e.info.metadata)}});
      }
      j["endpoints"] = std::move(eps);
    } else if (verb == "STATS") {
      j["type"] = kStatsType;
      j["started"] = detail::format_time(started, detail::TimeText::rfc3339_nanos);  // as Go marshals UTC
      nlohmann::json eps = nlohmann::json::array();
      for (const auto& s : stats().endpoints) {
        eps.push_back({{"name", s.name},
                       {"subject", s.subject},
                       {"queue_group", s.queue_group},
                       {"num_requests", s.num_requests},
                       {"num_errors", s.num_errors},
                       {"last_error", s.last_error},
                       {"processing_time", s.processing_time.count()},
                       {"average_processing_time", s.average_processing_time.count()}});
      }
      j["endpoints"] = std::move(eps);
    } else {
      return std::nullopt;
    }
    return j;
  }

  /// Answers `request` with `body` (JSON when `json`), or with the service error headers.
  void respond(const ReceivedMessage& request, std::string_view body, bool json, int code, const std::string& error) {
    const std::string_view reply = request.reply();
    if (reply.empty()) {
      log(LogLevel::warn, "service_no_reply_subject", {{"service", cfg_.name}, {"subject", std::string(request.subject())}});
      return;
    }
    const MessageOptions o = answer_options(request);
    BusMessage answer = error.empty() ? (json ? json_text_message("service", reply, body, o) : BusMessage::from_bytes(reply, body, o))
                                      : BusMessage::from_bytes(reply, std::string_view{}, o);
    if (!error.empty()) {
      const std::string text = header_safe(error);
      answer.set_header("Nats-Service-Error", text);
      answer.set_header("Nats-Service-Error-Code", std::to_string(code));
      answer.set_header("x-error", text);
    }
    try {
      bus_->send_reply(answer, "service");
    } catch (const std::exception& e) {
      log(LogLevel::warn, "service_reply_failed",
          {{"service", cfg_.name}, {"subject", std::string(request.subject())}, {"error", e.what()}});
    }
  }

  /// Drops every subscription (their handlers hold references to this).
  void shutdown() noexcept {
    Ref<ServiceCore> keep(this);
    stopped_ = true;
    auto eps = std::move(endpoint_subs);
    auto disc = std::move(discovery_subs);
    eps.clear();
    disc.clear();
  }
  void mark_stopped() noexcept { stopped_ = true; }

 private:
  Ref<BusCore> bus_;
  OwnedConfig cfg_;
  std::string id_;
  bool stopped_ = false;
};

namespace {

/// The discovery subscriptions' handler: PING, INFO and STATS.
class DiscoveryHandler final : public HandlerBase {
 public:
  explicit DiscoveryHandler(Ref<ServiceCore> svc) : svc_(std::move(svc)) {}
  Task<void> invoke(ReceivedMessage& msg) override {
    // $SRV.<verb>[.<name>[.<id>]]
    const std::string_view subject = msg.subject();
    std::string_view verb = subject.substr(std::min(subject.size(), kApiPrefix.size() + 1));
    verb = verb.substr(0, verb.find('.'));
    if (const auto body = svc_->answer(verb)) svc_->respond(msg, body->dump(), true, 0, {});
    co_return;
  }

 private:
  Ref<ServiceCore> svc_;
};

/// An endpoint's handler: runs the user's, times it, counts it, answers.
class EndpointHandler final : public HandlerBase {
 public:
  EndpointHandler(Ref<ServiceCore> svc, std::size_t index, std::unique_ptr<EndpointHandlerBase> user)
      : svc_(std::move(svc)), index_(index), user_(std::move(user)) {}
  Task<void> invoke(ReceivedMessage& msg) override {
    const auto start = std::chrono::steady_clock::now();
    std::string body;
    std::string error;
    int code = 0;
    try {
      body = co_await user_->invoke(msg);
    } catch (const ServiceError& e) {
      code = e.status();
      error = e.message();
    } catch (const std::exception& e) {
      code = 500;
      error = e.what();
    } catch (...) {
      code = 500;
      error = "unknown exception";
    }
    if (code != 0 && error.empty()) error = "handler failed";
    EndpointState& ep = svc_->endpoints[index_];
    ++ep.num_requests;
    ep.processing_time += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start);
    if (code != 0) {
      ++ep.num_errors;
      ep.last_error = fmt::format("{}:{}", code, error);
      // A client error the handler chose to answer (ServiceError below 500) is the service
      // working; anything else is it failing.
      log(code < 500 ? LogLevel::debug : LogLevel::error, "service_handler_error",
          {{"service", svc_->config().name}, {"endpoint", ep.info.name}, {"code", std::to_string(code)}, {"error", error}});
    }
    svc_->respond(msg, body, user_->json(), code, error);
  }

 private:
  Ref<ServiceCore> svc_;
  std::size_t index_;
  std::unique_ptr<EndpointHandlerBase> user_;
};

std::string join_subject(std::string_view prefix, std::string_view tail) {
  if (prefix.empty()) return std::string(tail);
  return fmt::format("{}.{}", prefix, tail);
}

Task<void> add_endpoint_impl(Ref<ServiceCore> svc, std::unique_ptr<EndpointHandlerBase> user, EndpointInfo info, int max_concurrency) {
  const std::size_t index = svc->endpoints.size();
  svc->endpoints.push_back(EndpointState{.info = info});
  std::unique_ptr<HandlerBase> handler(new EndpointHandler(svc, index, std::move(user)));
  Subscription sub;
  try {
    sub = co_await start_core_sub(Ref<BusCore>(&svc->bus()), std::move(handler), info.subject, info.queue_group, max_concurrency,
                                  "add_endpoint", true);
  } catch (...) {
    // Not listening: INFO and STATS must not report it (it is the last one: added on this loop).
    if (svc->endpoints.size() == index + 1) svc->endpoints.pop_back();
    throw;
  }
  if (svc->stopped()) co_return;  // stopped meanwhile: `sub` unsubscribes as it goes
  svc->endpoint_subs.push_back(std::move(sub));
}

Task<Service> add_service_impl(Ref<ServiceCore> svc) {
  const OwnedConfig& cfg = svc->config();
  const std::string subjects[] = {fmt::format("{}.*", kApiPrefix), fmt::format("{}.*.{}", kApiPrefix, cfg.name),
                                  fmt::format("{}.*.{}.{}", kApiPrefix, cfg.name, svc->id())};
  for (const auto& subject : subjects) {
    std::unique_ptr<HandlerBase> handler(new DiscoveryHandler(svc));
    Subscription sub = co_await start_core_sub(Ref<BusCore>(&svc->bus()), std::move(handler), subject, std::string(), 1, "add_service");
    svc->discovery_subs.push_back(std::move(sub));
  }
  svc->started = std::chrono::system_clock::now();
  log(LogLevel::info, "service_started", {{"service", cfg.name}, {"id", svc->id()}, {"version", cfg.version}});
  co_return Service(kLibrary, svc.get());
}

Task<void> stop_impl(Ref<ServiceCore> svc) {
  if (svc->stopped() && svc->endpoint_subs.empty() && svc->discovery_subs.empty()) co_return;
  svc->mark_stopped();
  // Taken out first: the Service may be destroyed (shutdown()) while this waits.
  std::vector<Subscription> endpoints = std::move(svc->endpoint_subs);
  std::vector<Subscription> discovery = std::move(svc->discovery_subs);
  // No new request starts on any endpoint, then those being handled finish and are answered.
  for (auto& sub : endpoints) sub.unsubscribe();
  for (auto& sub : endpoints) co_await sub.close();
  for (auto& sub : discovery) co_await sub.close();
  log(LogLevel::info, "service_stopped", {{"service", svc->config().name}, {"id", svc->id()}});
  svc->shutdown();
}

ServiceCore& live(ServiceCore* core, std::string_view op) {
  if (core == nullptr) throw ClosedError("the service was moved from", ErrorContext{.operation = std::string(op)});
  return *core;
}

}  // namespace

}  // namespace detail

using detail::Ref;
using detail::ServiceCore;

Task<Service> NatsBus::add_service(const ServiceConfig& config) {
  detail::BusCore& core = detail::core_of(core_, "add_service");
  const auto bad = [](std::string message) { return InvalidArgument(std::move(message), ErrorContext{.operation = "add_service"}); };
  if (!detail::valid_name(config.name)) {
    throw bad(fmt::format("service name '{}' is not valid: use A-Z, a-z, 0-9, '-' and '_'", config.name));
  }
  if (!detail::valid_semver(config.version)) {
    throw bad(fmt::format("version '{}' of service '{}' is not a semantic version (e.g. 1.0.0)", config.version, config.name));
  }
  if (!config.no_queue_group && !config.queue_group.empty()) {
    detail::check("add_service", "queue_group", config.queue_group, detail::queue_problem(config.queue_group));
  }
  core.ensure_open("add_service");
  return detail::add_service_impl(Ref<ServiceCore>::adopt(new ServiceCore(Ref<detail::BusCore>(&core), config)));
}

// ---- Service ----

Service::Service(detail::LibraryKey /*key*/, detail::ServiceCore* core) noexcept : core_(core) {
  if (core_ != nullptr) core_->add_ref();
}

Service& Service::operator=(Service&& other) noexcept {
  if (this != &other) {
    Service old(std::move(*this));
    core_ = std::exchange(other.core_, nullptr);
  }
  return *this;
}

Service::~Service() {
  if (core_ == nullptr) return;
  core_->shutdown();
  core_->release();
}

const std::string& Service::id() const { return detail::live(core_, "Service::id").id(); }
const std::string& Service::name() const { return detail::live(core_, "Service::name").config().name; }
ServiceInfo Service::info() const { return detail::live(core_, "Service::info").info(); }
ServiceStats Service::stats() const { return detail::live(core_, "Service::stats").stats(); }
void Service::reset_stats() { detail::live(core_, "Service::reset_stats").reset_stats(); }
bool Service::stopped() const noexcept { return core_ == nullptr || core_->stopped(); }

Task<void> Service::stop() {
  if (core_ == nullptr) return []() -> Task<void> { co_return; }();
  return detail::stop_impl(Ref<ServiceCore>(core_));
}

ServiceGroup Service::add_group(std::string_view name, std::string_view queue_group) const {
  ServiceCore& core = detail::live(core_, "add_group");
  return ServiceGroup(&core, "", core.config().queue_group).add_group(name, queue_group);
}

Task<void> Service::add_endpoint_erased(std::string_view name, detail::EndpointHandlerBase* handler, const EndpointOptions& options) {
  std::unique_ptr<detail::EndpointHandlerBase> owned(handler);
  ServiceCore& core = detail::live(core_, "add_endpoint");
  ServiceGroup root(&core, "", core.config().queue_group);
  return root.add_endpoint_erased(name, owned.release(), options);
}

// ---- ServiceGroup ----

ServiceGroup::ServiceGroup(detail::ServiceCore* core, std::string prefix, std::string queue_group) noexcept
    : core_(core), prefix_(std::move(prefix)), queue_group_(std::move(queue_group)) {
  if (core_ != nullptr) core_->add_ref();
}

ServiceGroup::ServiceGroup(const ServiceGroup& other) noexcept : ServiceGroup(other.core_, other.prefix_, other.queue_group_) {}

ServiceGroup& ServiceGroup::operator=(const ServiceGroup& other) noexcept {
  if (this != &other) {
    ServiceGroup copy(other);
    std::swap(core_, copy.core_);
    std::swap(prefix_, copy.prefix_);
    std::swap(queue_group_, copy.queue_group_);
  }
  return *this;
}

ServiceGroup::~ServiceGroup() {
  if (core_ != nullptr) core_->release();
}

ServiceGroup ServiceGroup::add_group(std::string_view name, std::string_view queue_group) const {
  const std::string prefix = detail::join_subject(prefix_, name);
  const ErrorContext ctx{.operation = "add_group", .subject = prefix};
  if (name.empty() || name.find('>') != std::string_view::npos || !detail::subject_problem(prefix, true).empty()) {
    throw InvalidArgument(fmt::format("group name '{}' is not valid: a subject without '>'", name), ctx);
  }
  if (!queue_group.empty()) detail::check("add_group", "queue_group", queue_group, detail::queue_problem(queue_group));
  return ServiceGroup(core_, prefix, queue_group.empty() ? queue_group_ : std::string(queue_group));
}

Task<void> ServiceGroup::add_endpoint_erased(std::string_view name, detail::EndpointHandlerBase* handler, const EndpointOptions& options) {
  std::unique_ptr<detail::EndpointHandlerBase> owned(handler);
  if (core_ == nullptr) throw ClosedError("the service was moved from", ErrorContext{.operation = "add_endpoint"});
  const std::string subject = detail::join_subject(prefix_, options.subject.empty() ? name : options.subject);
  const ErrorContext ctx{.operation = "add_endpoint", .subject = subject};
  if (core_->stopped()) throw ClosedError(fmt::format("service '{}' is stopped", core_->config().name), ctx);
  if (!detail::valid_name(name)) {
    throw InvalidArgument(fmt::format("endpoint name '{}' is not valid: use A-Z, a-z, 0-9, '-' and '_'", name), ctx);
  }
  detail::check("add_endpoint", "subject", subject, detail::subject_problem(subject, true));
  std::string queue;
  if (!options.no_queue_group) {
    queue = options.queue_group.empty() ? queue_group_ : std::string(options.queue_group);
    if (!queue.empty()) detail::check("add_endpoint", "queue_group", queue, detail::queue_problem(queue));
  }
  if (options.max_concurrency < 1) {
    throw InvalidArgument(fmt::format("max_concurrency must be at least 1, got {}", options.max_concurrency), ctx);
  }
  core_->bus().ensure_open("add_endpoint");
  EndpointInfo info{
      .name = std::string(name), .subject = subject, .queue_group = std::move(queue), .metadata = detail::metadata_of(options.metadata)};
  return detail::add_endpoint_impl(Ref<ServiceCore>(core_), std::move(owned), std::move(info), options.max_concurrency);
}

}  // namespace natbus
