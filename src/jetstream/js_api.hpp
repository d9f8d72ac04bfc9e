// JsApi: the JetStream management API ($JS.API.*) of one bus: requests through the bus' Mux
// (no thread blocks), each bounded by NatsConfig::js_api_timeout, answers parsed into
// StreamInfo / ConsumerInfo or mapped to natbus errors (server_errors.hpp). It reaches the
// connection only through its Host, which the bus implements. Loop thread only.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "natbus/config.hpp"
#include "natbus/error.hpp"
#include "natbus/stream_info.hpp"
#include "natbus/task.hpp"
#include "transport/mux.hpp"

namespace natbus::detail {

class JsApi {
 public:
  /// What the API needs from its owner (the bus).
  class Host {
   public:
    /// Completes when a request may go out: waits out a reconnect (bounded by `bound`), then
    /// throws the ClosedError / ConnectionError naming `operation` unless the bus is usable.
    virtual Task<void> js_ready(std::string operation, std::chrono::milliseconds bound) = 0;
    /// The multiplexer requests go through.
    [[nodiscard]] virtual Mux& js_mux() noexcept = 0;

   protected:
    Host() = default;
    Host(const Host&) = default;
    Host& operator=(const Host&) = default;
    ~Host() = default;
  };

  struct Settings {
    std::string domain;                       // NatsConfig::js_domain
    std::chrono::milliseconds timeout{5000};  // NatsConfig::js_api_timeout
    std::string default_stream;               // NatsConfig::stream_name
    std::string inbox_prefix;                 // NatsConfig::inbox_prefix
  };

  JsApi(Host& host, Settings settings) : host_(host), s_(std::move(settings)) {}

  /// "$JS.API.<suffix>", or "$JS.<domain>.API.<suffix>" with a domain.
  [[nodiscard]] std::string api_subject(std::string_view suffix) const;
  /// A new unique subject under the inbox prefix (push consumers' deliver subjects).
  [[nodiscard]] std::string new_inbox() const;
  /// One API request; returns the parsed answer or throws the mapped error.
  Task<nlohmann::json> request(std::string subject, std::string body, ErrorContext context);
  /// One request whose answer is a message, not JSON (direct get); the transport errors mapped
  /// as request()'s (no responders: JetStreamNotEnabledError).
  Task<MsgPtr> request_msg(std::string subject, std::string body, ErrorContext context);

  Task<StreamInfo> stream_info(std::string stream);
  Task<ConsumerInfo> consumer_info(std::string stream, std::string consumer);
  Task<void> delete_consumer(std::string stream, std::string consumer);
  Task<void> delete_stream(std::string stream);
  Task<void> purge_stream(std::string stream);
  // Management beyond the basics (js_manage.cpp).
  Task<std::uint64_t> purge_stream(std::string stream, std::string subject, std::uint64_t keep, std::uint64_t sequence);
  Task<void> delete_message(std::string stream, std::uint64_t sequence, bool secure_erase);
  /// Every entry of the paged list `api` ("STREAM.NAMES", "CONSUMER.LIST.<stream>", ...) under
  /// `key` ("streams", "consumers"), `subject` the filter (when not empty).
  Task<std::vector<nlohmann::json>> list_all(std::string api, std::string key, std::string subject, ErrorContext context);
  Task<AccountInfo> account_info();
  /// The stored message at `sequence`, or the last one on `last_subject` (when not empty): by
  /// direct get when the stream allows it, the STREAM.MSG.GET API otherwise. It carries the
  /// stored subject, headers and data, plus Nats-Stream, Nats-Sequence, Nats-Time-Stamp and
  /// Nats-Subject headers (what a direct get answers with).
  Task<MsgPtr> get_message(std::string stream, std::uint64_t sequence, std::string last_subject);
  /// STREAM.CREATE (or STREAM.UPDATE with `update`) of `name` with the configuration `body`
  /// (stream_config_json's); the new state.
  Task<StreamInfo> put_stream(bool update, std::string name, std::string body);
  /// Creates or checks a stream (connect's bootstrap and NatsBus::create_stream): missing
  /// subjects are added with `add_missing`, reported otherwise.
  Task<StreamInfo> ensure_stream(std::string name, std::vector<std::string> subjects, StreamOptions options, bool create, bool add_missing);
  /// Stream for a subscription: `given`, else NatsConfig::stream_name, else the one stream whose
  /// subjects cover `subject`.
  Task<std::string> resolve_stream(std::string given, std::string subject, std::string op);
  /// Account info round trip: throws JetStreamNotEnabledError when nothing answers.
  Task<void> check_enabled();

 private:
  Host& host_;
  Settings s_;
  // Streams' allow_direct as last seen (stream_info keeps it current): get_message's choice.
  std::unordered_map<std::string, bool> allow_direct_;
};

/// The configuration as the server's STREAM.CREATE / STREAM.UPDATE take it (checked before).
nlohmann::json stream_config_json(const StreamConfig& config);
ConsumerInfo parse_consumer_info(nlohmann::json j);
StreamInfo parse_stream_info(nlohmann::json j);

}  // namespace natbus::detail
