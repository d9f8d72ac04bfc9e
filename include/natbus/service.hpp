// NATS services (ADR-32, nats.go's `micro`): request handlers that the NATS tooling discovers
// (`nats micro ls`, `$SRV.PING`), describes ($SRV.INFO) and monitors ($SRV.STATS).
//
//   auto on_price = [](natbus::ReceivedMessage& m) -> natbus::Task<nlohmann::json> {
//     if (m.payload_text().empty()) throw natbus::ServiceError(400, "empty request");
//     co_return nlohmann::json{{"price", 12.5}};
//   };
//   natbus::ServiceConfig cfg{.name = "prices", .version = "1.0.0"};
//   natbus::Service svc = co_await bus.add_service(cfg);
//   co_await svc.add_endpoint("get", on_price);                        // subject "get", queue "q"
//   natbus::ServiceGroup v1 = svc.add_group("prices.v1");
//   co_await v1.add_endpoint("quote", on_price);                       // "prices.v1.quote"
//
// A handler returns the reply body: JSON (Task<nlohmann::json>, needs <natbus/json.hpp>) or
// bytes (Task<std::string>). One that throws answers with the Nats-Service-Error and
// Nats-Service-Error-Code headers (ServiceError's code, 500 for any other exception) and an
// x-error header for natbus requesters, and counts as an error. Every reply carries the
// request's x-correlation-id and x-trace-id. Call everything on the bus' loop, like NatsBus.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "natbus/bus.hpp"
#include "natbus/error.hpp"
#include "natbus/message.hpp"
#include "natbus/task.hpp"

namespace natbus {

/// add_service(): what the service is. The `name` is its kind, shared by every instance.
/// Plain views (trivially destructible, so safe as a temporary inside co_await under GCC 12):
/// natbus copies everything before add_service() returns.
///   const natbus::Header meta[] = {{"region", "eu"}};  // or a std::vector<natbus::Header>
///   co_await bus.add_service({.name = "prices", .version = "1.0.0", .metadata = meta});
struct ServiceConfig {
  std::string_view name{};             ///< A-Z, a-z, 0-9, '-' and '_'
  std::string_view version{};          ///< semantic version, e.g. "1.0.0"
  std::string_view description{};      ///< for humans
  std::span<const Header> metadata{};  ///< free-form, reported by PING, INFO and STATS
  std::string_view queue_group = "q";  ///< queue group of every endpoint (unless a group or endpoint overrides it)
  bool no_queue_group = false;         ///< true: every instance gets every request (no queue group)
};

/// add_endpoint(): where and how an endpoint listens (plain views, copied, like ServiceConfig).
struct EndpointOptions {
  std::string_view subject{};          ///< default: the endpoint's name (after the group's prefix)
  std::string_view queue_group{};      ///< default: the group's, else the service's
  bool no_queue_group = false;         ///< true: a plain subscription
  std::span<const Header> metadata{};  ///< reported by INFO
  int max_concurrency = 1;             ///< requests handled at the same time (1: in order)
};

/// One endpoint, as INFO reports it.
struct EndpointInfo {
  std::string name{};                             ///< the endpoint's name
  std::string subject{};                          ///< the subject it listens on (group prefix included)
  std::string queue_group{};                      ///< empty without a queue group
  std::map<std::string, std::string> metadata{};  ///< EndpointOptions::metadata
};

/// One endpoint's counters, as STATS reports them.
struct EndpointStats {
  std::string name{};                                   ///< the endpoint's name
  std::string subject{};                                ///< the subject it listens on
  std::string queue_group{};                            ///< empty without a queue group
  std::uint64_t num_requests = 0;                       ///< requests handled (errors included)
  std::uint64_t num_errors = 0;                         ///< handlers that threw
  std::string last_error{};                             ///< "<code>:<description>" of the last one (empty: none)
  std::chrono::nanoseconds processing_time{0};          ///< total time in the handler
  std::chrono::nanoseconds average_processing_time{0};  ///< processing_time / num_requests
};

/// What INFO answers.
struct ServiceInfo {
  std::string name{};                             ///< ServiceConfig::name
  std::string id{};                               ///< this instance's id
  std::string version{};                          ///< ServiceConfig::version
  std::string description{};                      ///< ServiceConfig::description
  std::map<std::string, std::string> metadata{};  ///< ServiceConfig::metadata
  std::vector<EndpointInfo> endpoints{};          ///< in the order they were added
};

/// What STATS answers.
struct ServiceStats {
  std::string name{};                               ///< ServiceConfig::name
  std::string id{};                                 ///< this instance's id
  std::string version{};                            ///< ServiceConfig::version
  std::map<std::string, std::string> metadata{};    ///< ServiceConfig::metadata
  std::chrono::system_clock::time_point started{};  ///< when add_service() completed
  std::vector<EndpointStats> endpoints{};           ///< in the order they were added
};

/// A callable taking ReceivedMessage& and returning Task<std::string>: an endpoint handler whose
/// reply is these bytes. (Task<nlohmann::json> handlers are ServeHandler, as for serve().)
template <class H>
concept BytesEndpointHandler = std::invocable < std::decay_t<H>
&, ReceivedMessage& > &&std::same_as<std::invoke_result_t<std::decay_t<H>&, ReceivedMessage&>, Task<std::string>>;

namespace detail {
class ServiceCore;

/// Type-erased endpoint handler: the reply body, or an exception.
class EndpointHandlerBase {
 public:
  virtual ~EndpointHandlerBase() = default;
  virtual Task<std::string> invoke(ReceivedMessage& msg) = 0;
  /// True when the body is JSON (the reply says content-type application/json).
  [[nodiscard]] virtual bool json() const noexcept = 0;

 protected:
  EndpointHandlerBase() = default;
  EndpointHandlerBase(const EndpointHandlerBase&) = default;
  EndpointHandlerBase& operator=(const EndpointHandlerBase&) = default;
};

template <class H>
class EndpointHandlerImpl final : public EndpointHandlerBase {
 public:
  explicit EndpointHandlerImpl(H h) : handler_(std::move(h)) {}
  Task<std::string> invoke(ReceivedMessage& msg) override {
    if constexpr (BytesEndpointHandler<H>) {
      std::string body = co_await std::invoke(handler_, msg);
      co_return body;
    } else {
      auto body = co_await std::invoke(handler_, msg);
      co_return needs_natbus_json_hpp<H>::dump("service endpoint", msg.subject(), body);
    }
  }
  [[nodiscard]] bool json() const noexcept override { return !BytesEndpointHandler<H>; }

 private:
  H handler_;
};

template <class H>
EndpointHandlerBase* make_endpoint_handler(H&& h) {
  using D = std::decay_t<H>;
  static_assert(!(kRejectOwningTemporaryHandlers && std::is_rvalue_reference_v<H&&> && !std::is_trivially_destructible_v<D>),
                "natbus: GCC < 13 destroys a lambda temporary inside co_await twice. Name the handler first: "
                "`auto on_request = [...](natbus::ReceivedMessage& m) -> natbus::Task<nlohmann::json> {...};` then pass "
                "`on_request` (natbus copies it). See README, 'Compiler notes'.");
  return new EndpointHandlerImpl<D>(std::forward<H>(h));
}
}  // namespace detail

/// A subject prefix (and queue group) for endpoints: Service::add_group(). Stays usable after the
/// Service is gone; its add_endpoint() then throws ClosedError.
class ServiceGroup {
 public:
  ServiceGroup(const ServiceGroup& other) noexcept;             ///< Another handle on the same group.
  ServiceGroup& operator=(const ServiceGroup& other) noexcept;  ///< Another handle on the same group.
  ~ServiceGroup();

  /// The endpoint `name` on "<prefix>.<options.subject or name>"; see Service::add_endpoint.
  template <class H>
  requires(ServeHandler<H> || BytesEndpointHandler<H>) Task<void> add_endpoint(std::string_view name, H&& handler,
                                                                               const EndpointOptions& options = {}) {
    return add_endpoint_erased(name, detail::make_endpoint_handler(std::forward<H>(handler)), options);
  }
  /// A group inside this one: prefix "<prefix>.<name>"; `queue_group` empty keeps this group's.
  [[nodiscard]] ServiceGroup add_group(std::string_view name, std::string_view queue_group = {}) const;
  /// The subject prefix.
  [[nodiscard]] const std::string& prefix() const noexcept { return prefix_; }

 private:
  friend class Service;
  ServiceGroup(detail::ServiceCore* core, std::string prefix, std::string queue_group) noexcept;
  Task<void> add_endpoint_erased(std::string_view name, detail::EndpointHandlerBase* handler, const EndpointOptions& options);
  detail::ServiceCore* core_;
  std::string prefix_;
  std::string queue_group_;
};

/// A running service instance (NatsBus::add_service). Destroying it stops taking requests at
/// once; like stop(), every request that had already reached it is still answered.
class [[nodiscard("a Service stops answering when it is destroyed: keep it")]] Service {
 public:
  /// natbus' own code: wraps a service core.
  Service(detail::LibraryKey key, detail::ServiceCore * core) noexcept;
  /// Moves the service (the source becomes empty).
  Service(Service && other) noexcept : core_(std::exchange(other.core_, nullptr)) {}
  Service& operator=(Service&& other) noexcept;  ///< Moves; the service it replaces stops.
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;
  ~Service();

  /// Adds the endpoint `name` (A-Z, a-z, 0-9, '-', '_') on `options.subject` (default: `name`)
  /// and returns once the server has the subscription. Endpoints may be added at any time.
  /// InvalidArgument for a bad name, subject or queue group; ClosedError after stop().
  template <class H>
  requires(ServeHandler<H> || BytesEndpointHandler<H>) Task<void> add_endpoint(std::string_view name, H && handler,
                                                                               const EndpointOptions& options = {}) {
    return add_endpoint_erased(name, detail::make_endpoint_handler(std::forward<H>(handler)), options);
  }
  /// A group whose endpoints listen on "<name>.<subject>" (`name` a subject without '>').
  [[nodiscard]] ServiceGroup add_group(std::string_view name, std::string_view queue_group = {}) const;

  /// This instance's unique id (22 characters), as PING, INFO and STATS report it.
  [[nodiscard]] const std::string& id() const;
  /// The service's name.
  [[nodiscard]] const std::string& name() const;
  /// What INFO answers.
  [[nodiscard]] ServiceInfo info() const;
  /// What STATS answers.
  [[nodiscard]] ServiceStats stats() const;
  /// Zeroes every endpoint's counters.
  void reset_stats();
  /// Stops taking requests (every endpoint unsubscribes), answers those already received (the
  /// running ones and those waiting for a max_concurrency slot), then leaves discovery.
  /// Bounded: waiting requests start within NatsConfig::js_api_timeout + 1 s of the
  /// unsubscribe (later ones are dropped), and each endpoint waits at most drain_timeout.
  Task<void> stop();
  /// True after stop() (or once the bus closed).
  [[nodiscard]] bool stopped() const noexcept;

 private:
  Task<void> add_endpoint_erased(std::string_view name, detail::EndpointHandlerBase * handler, const EndpointOptions& options);
  detail::ServiceCore* core_ = nullptr;
};

}  // namespace natbus
