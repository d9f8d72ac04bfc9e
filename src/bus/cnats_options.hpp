// The cnats options of one connection attempt, built from NatsConfig.
#pragma once

#include <string>
#include <vector>

#include "natbus/config.hpp"
#include "transport/cnats.hpp"

namespace natbus::detail {

/// True when the connections use TLS (a tls:// URL, or TLS files or skip_verify configured).
bool wants_tls(const NatsConfig& c, const std::vector<std::string>& servers);

/// Options of one connection attempt to `servers`. cnats' own reconnect is off: a connection
/// that dies is closed for good, and the bus' supervisor opens a fresh one (a fresh parser,
/// nats.c#1007).
OptionsPtr make_options(const NatsConfig& c, const std::vector<std::string>& servers, bool tls);

}  // namespace natbus::detail
