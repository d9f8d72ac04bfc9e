// libFuzzer: a ReceivedMessage built from arbitrary bytes (subject, reply, headers, payload):
// every accessor either works or throws natbus::Error; none crashes.
#include <nats/nats.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "message/msg_impl.hpp"
#include "natbus/error.hpp"
#include "natbus/json.hpp"
#include "natbus/message.hpp"

namespace {
std::string take(std::string_view& in, std::size_t max) {
  std::size_t n = 0;
  if (!in.empty()) {
    n = static_cast<unsigned char>(in.front()) % (max + 1);
    in.remove_prefix(1);
  }
  n = std::min(n, in.size());
  std::string out(in.substr(0, n));
  in.remove_prefix(n);
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  nats_Open(-1);  // messages normally come from a connection, which has opened the library
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string subject = take(in, 40);
  if (subject.empty() || subject.find('\0') != std::string::npos) subject = "fuzz.subject";
  std::string reply = take(in, 120);
  if (reply.find('\0') != std::string::npos) reply.clear();
  const int headers = in.empty() ? 0 : static_cast<unsigned char>(in.front()) % 8;
  std::vector<std::pair<std::string, std::string>> hs;
  for (int i = 0; i < headers; ++i) hs.emplace_back(take(in, 20), take(in, 40));
  const std::string payload(in);

  natsMsg* raw = nullptr;
  if (natsMsg_Create(&raw, subject.c_str(), reply.empty() ? nullptr : reply.c_str(), payload.data(), static_cast<int>(payload.size())) !=
      NATS_OK) {
    return 0;
  }
  for (auto& [k, v] : hs) {
    if (k.empty() || k.find('\0') != std::string::npos || v.find('\0') != std::string::npos) continue;
    natsMsgHeader_Add(raw, k.c_str(), v.c_str());
  }
  natbus::ReceivedMessage m(natbus::detail::kLibrary, new natbus::detail::MsgImpl(natbus::detail::MsgPtr(raw), nullptr));
  (void)m.subject();
  (void)m.reply();
  (void)m.raw_payload();
  (void)m.headers();
  for (auto& [k, v] : hs) {
    (void)m.header(k);
    (void)m.header_values(k);
  }
  (void)m.trace_id();
  (void)m.content_encoding();
  (void)m.metadata();
  (void)m.is_jetstream();
  try {
    (void)m.payload();
    (void)m.as_text();
  } catch (const natbus::Error&) {
  }
  try {
    (void)m.as_json();
  } catch (const natbus::Error&) {
  }
  try {
    (void)m.ack();  // no bus: a clear error, never a crash
  } catch (const natbus::Error&) {
  }
  return 0;
}
