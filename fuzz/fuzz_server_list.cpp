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
      // The same characters may also stand elsewhere in the input, where the message may quote
      // them (also lowercased, as a bad scheme): only an unambiguous password is checked.
      auto count = [](const std::string& hay, const std::string& needle) {
        std::size_t n = 0;
        for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
        return n;
      };
      auto lower = [](std::string t) {
        for (auto& c : t) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
        return t;
      };
      const std::string shown = password + "@";
      const bool unambiguous = count(input, shown) == 1 && count(lower(input), lower(shown)) == 1;
      if (alnum && unambiguous && what.find(shown) != std::string::npos) __builtin_trap();  // shown as user info
    }
  }
  (void)natbus::redact_url(input);
  return 0;
}
