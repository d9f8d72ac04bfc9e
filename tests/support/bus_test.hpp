// Helpers shared by the integration tests.
#pragma once

#include <nats/nats.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "natbus/natbus.hpp"
#include "support/nats_server.hpp"

namespace natbus::testing {

/// True in ASan/TSan builds, where RSS and heap figures say nothing about natbus.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif

/// A NatsConfig pointing at `server` (with its credentials), quick timeouts for tests.
inline NatsConfig config_for(const NatsServer& server) {
  NatsConfig c;
  c.server = server.url();
  c.username = server.options().user;
  c.password = server.options().password;
  c.token = server.options().token;
  c.name = "natbus-test";
  c.js_api_timeout = std::chrono::seconds(5);
  c.drain_timeout = std::chrono::seconds(10);
  return c;
}

/// config_for(server) with natbus creating the stream `stream` on `subjects` at connect.
inline NatsConfig stream_config(const NatsServer& server, const std::string& stream, const std::string& subjects) {
  NatsConfig c = config_for(server);
  c.stream_create = true;
  c.stream_name = stream;
  c.stream_subjects = {subjects};
  return c;
}

/// stream_config() with new durables starting at the first message (the tests publish before
/// they subscribe).
inline NatsConfig consume_config(const NatsServer& server, const std::string& stream, const std::string& subjects) {
  NatsConfig c = stream_config(server, stream, subjects);
  c.deliver_policy = natbus::DeliverPolicy::all;
  return c;
}

/// Publishes n JetStream messages to `subject` whose text bodies count from `first`.
inline Task<void> publish_n(NatsBus& bus, const std::string& subject, int n, int first = 0) {
  for (int i = first; i < first + n; ++i) {
    auto msg = BusMessage::from_text(subject, std::to_string(i));
    co_await bus.publish(std::move(msg));
  }
}

/// Polls `pred` every 10 ms on the loop until it holds or `timeout` passes; returns whether it
/// holds (checked once more at the deadline).
template <class P>
Task<bool> eventually(P pred, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) co_return pred();
    co_await natbus::sleep(std::chrono::milliseconds(10));
  }
  co_return true;
}

/// Collects every log line natbus emits while alive (and restores the default sink).
class LogCapture {
 public:
  LogCapture() : level_(natbus::log_level()) {
    natbus::set_log_level(natbus::LogLevel::debug);
    natbus::set_log_sink([this](const natbus::LogRecord& r) {
      std::lock_guard lock(mu_);
      lines_.push_back(natbus::format_log_line(r));
      events_.emplace_back(r.event);
    });
  }
  ~LogCapture() {
    natbus::set_log_sink({});
    natbus::set_log_level(level_);
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  [[nodiscard]] std::vector<std::string> lines() const {
    std::lock_guard lock(mu_);
    return lines_;
  }
  [[nodiscard]] bool has_event(const std::string& e) const {
    std::lock_guard lock(mu_);
    for (const auto& x : events_) {
      if (x == e) return true;
    }
    return false;
  }
  [[nodiscard]] std::string all() const {
    std::string out;
    for (const auto& l : lines()) out += l + "\n";
    return out;
  }

 private:
  natbus::LogLevel level_;
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
  std::vector<std::string> events_;
};

/// A plain cnats subscriber (not natbus) for checking what is really on the wire.
class RawSubscriber {
 public:
  RawSubscriber(const NatsServer& server, const std::string& subject) {
    natsOptions* o = nullptr;
    natsOptions_Create(&o);
    natsOptions_SetURL(o, server.url().c_str());
    if (!server.options().user.empty()) natsOptions_SetUserInfo(o, server.options().user.c_str(), server.options().password.c_str());
    if (natsConnection_Connect(&nc_, o) != NATS_OK) throw HarnessError("RawSubscriber: cannot connect");
    natsOptions_Destroy(o);
    natsConnection_SubscribeSync(&sub_, nc_, subject.c_str());
    natsConnection_Flush(nc_);
  }
  ~RawSubscriber() {
    natsSubscription_Destroy(sub_);
    natsConnection_Destroy(nc_);
  }
  RawSubscriber(const RawSubscriber&) = delete;
  RawSubscriber& operator=(const RawSubscriber&) = delete;

  struct Msg {
    std::string subject;
    std::string data;
    std::map<std::string, std::vector<std::string>> headers;
  };
  /// Next message within `timeout_ms` (throws HarnessError when none comes).
  Msg next(int timeout_ms = 5000) {
    natsMsg* m = nullptr;
    if (natsSubscription_NextMsg(&m, sub_, timeout_ms) != NATS_OK) throw HarnessError("RawSubscriber: no message in time");
    Msg out;
    out.subject = natsMsg_GetSubject(m);
    out.data.assign(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m)));
    const char** keys = nullptr;
    int n = 0;
    if (natsMsgHeader_Keys(m, &keys, &n) == NATS_OK) {
      for (int i = 0; i < n; ++i) {
        const char** vals = nullptr;
        int k = 0;
        natsMsgHeader_Values(m, keys[i], &vals, &k);
        for (int j = 0; j < k; ++j) out.headers[keys[i]].emplace_back(vals[j]);
        free(static_cast<void*>(vals));
      }
      free(static_cast<void*>(keys));
    }
    natsMsg_Destroy(m);
    return out;
  }
  natsConnection* connection() const { return nc_; }
  natsSubscription* subscription() const { return sub_; }

 private:
  natsConnection* nc_ = nullptr;
  natsSubscription* sub_ = nullptr;
};

}  // namespace natbus::testing
