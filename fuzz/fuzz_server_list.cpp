// libFuzzer: NatsConfig.server parsing and URL redaction never crash, and a redacted URL never
// keeps the user info.
#include <cstddef>
#include <cstdint>
#include <string>

#include "natbus/config.hpp"
#include "natbus/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  try {
    const auto servers = natbus::parse_server_list(input);
    for (const auto& s : servers) {
      if (s.rfind("nats://", 0) != 0 && s.rfind("tls://", 0) != 0) __builtin_trap();  // normalized
    }
  } catch (const natbus::ConfigError& e) {
    // The message quotes the input, but never a password given as user:password@. (Only
    // alphanumeric passwords are checked: others could coincide with the message's own text.)
    std::string what = e.what();
    const std::string prefix = "natbus: config: NatsConfig.server: ";
    if (what.rfind(prefix, 0) == 0) what.erase(0, prefix.size());
    const auto scheme = input.find("://");
    const std::size_t auth = scheme == std::string::npos ? 0 : scheme + 3;
    const auto at = input.rfind('@');
    const auto colon = input.find(':', auth);
    if (at != std::string::npos && colon != std::string::npos && colon < at) {
      const std::string password = input.substr(colon + 1, at - colon - 1);
      bool alnum = password.size() >= 6;
      for (char c : password) alnum = alnum && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
      if (alnum && what.find(password + "@") != std::string::npos) __builtin_trap();  // shown as user info
    }
  }
  (void)natbus::redact_url(input);
  return 0;
}
