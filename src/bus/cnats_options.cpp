// NatsConfig to cnats options (see cnats_options.hpp).
#include "bus/cnats_options.hpp"

#include <fmt/format.h>

#include "base/util.hpp"
#include "base/validate.hpp"

namespace natbus::detail {

bool wants_tls(const NatsConfig& c, const std::vector<std::string>& servers) {
  return servers.front().starts_with("tls://") || !c.tls.ca_file.empty() || !c.tls.cert_file.empty() || c.tls.skip_verify;
}

OptionsPtr make_options(const NatsConfig& c, const std::vector<std::string>& servers, bool tls) {
  natsOptions* raw = nullptr;
  check_status(natsOptions_Create(&raw), "natsOptions_Create");
  OptionsPtr opts(raw);
  std::vector<const char*> urls;
  urls.reserve(servers.size());
  for (const auto& s : servers) urls.push_back(s.c_str());
  check_status(natsOptions_SetServers(raw, urls.data(), static_cast<int>(urls.size())), "natsOptions_SetServers");
  check_status(natsOptions_SetNoRandomize(raw, true), "natsOptions_SetNoRandomize");  // the bus orders them
  if (!c.name.empty()) check_status(natsOptions_SetName(raw, c.name.c_str()), "natsOptions_SetName");
  if (!c.username.empty()) check_status(natsOptions_SetUserInfo(raw, c.username.c_str(), c.password.c_str()), "natsOptions_SetUserInfo");
  if (!c.token.empty()) check_status(natsOptions_SetToken(raw, c.token.c_str()), "natsOptions_SetToken");
  if (!c.credentials_file.empty()) {
    const natsStatus s = natsOptions_SetUserCredentialsFromFiles(raw, c.credentials_file.c_str(), nullptr);
    if (s != NATS_OK) {
      throw ConfigError(fmt::format("NatsConfig.credentials_file {}: {}", quote(c.credentials_file), natsStatus_GetText(s)),
                        ErrorContext{.operation = "connect"});
    }
  }
  if (tls) {
    check_status(natsOptions_SetSecure(raw, true), "natsOptions_SetSecure");
    if (!c.tls.ca_file.empty()) {
      const natsStatus s = natsOptions_LoadCATrustedCertificates(raw, c.tls.ca_file.c_str());
      if (s != NATS_OK) {
        throw ConfigError(fmt::format("NatsConfig.tls.ca_file {}: {}", quote(c.tls.ca_file), last_error_text(s)),
                          ErrorContext{.operation = "connect"});
      }
    }
    if (!c.tls.cert_file.empty()) {
      const natsStatus s = natsOptions_LoadCertificatesChain(raw, c.tls.cert_file.c_str(), c.tls.key_file.c_str());
      if (s != NATS_OK) {
        throw ConfigError(fmt::format("NatsConfig.tls.cert_file/key_file {}: {}", quote(c.tls.cert_file), last_error_text(s)),
                          ErrorContext{.operation = "connect"});
      }
    }
    if (c.tls.skip_verify) check_status(natsOptions_SkipServerVerification(raw, true), "natsOptions_SkipServerVerification");
    if (!c.tls.expected_hostname.empty()) {
      check_status(natsOptions_SetExpectedHostname(raw, c.tls.expected_hostname.c_str()), "natsOptions_SetExpectedHostname");
    }
  }
  check_status(natsOptions_SetTimeout(raw, cnats_ms(c.connect_timeout)), "natsOptions_SetTimeout");
  check_status(natsOptions_SetAllowReconnect(raw, false), "natsOptions_SetAllowReconnect");
  check_status(natsOptions_SetPingInterval(raw, cnats_ms(c.ping_interval)), "natsOptions_SetPingInterval");
  check_status(natsOptions_SetMaxPingsOut(raw, c.max_pings_out), "natsOptions_SetMaxPingsOut");
  // Reads of 64 KiB: a batch of small JetStream messages per read event.
  check_status(natsOptions_SetIOBufSize(raw, 64 * 1024), "natsOptions_SetIOBufSize");
  return opts;
}

}  // namespace natbus::detail
