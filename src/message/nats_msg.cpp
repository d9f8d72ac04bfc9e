// BusMessage -> natsMsg (nats_msg.hpp).
#include "message/nats_msg.hpp"

#include <cstring>
#include <string>

namespace natbus::detail {

MsgPtr to_nats_msg(const BusMessage& msg, const char* reply, std::string_view op) {
  natsMsg* raw = nullptr;
  const std::string_view subject = msg.subject();
#ifdef NATBUS_HAVE_NATSMSG_CREATE
  // The message is already encoded as it goes on the wire: hand cnats the header block as is
  // (one allocation, one copy; cnats sends a pre-encoded block without re-encoding it).
  const std::string_view wire(msg.wire_headers().data(), msg.wire_size());
  const std::size_t reply_len = reply == nullptr ? 0 : std::strlen(reply);
  const natsStatus s = natsMsg_create(&raw, subject.data(), static_cast<int>(subject.size()), reply, static_cast<int>(reply_len),
                                      wire.data(), static_cast<int>(wire.size()), static_cast<int>(msg.wire_headers().size()));
  if (s != NATS_OK) throw_status(s, ErrorContext{.operation = std::string(op), .subject = std::string(subject)});
  return MsgPtr(raw);
#else
  const std::string subj(subject);
  const auto payload = msg.payload();
  natsStatus s = natsMsg_Create(&raw, subj.c_str(), reply, payload.data(), static_cast<int>(payload.size()));
  if (s != NATS_OK) throw_status(s, ErrorContext{.operation = std::string(op), .subject = subj});
  MsgPtr m(raw);
  for (const auto& [k, v] : msg.headers()) {
    s = natsMsgHeader_Add(raw, std::string(k).c_str(), std::string(v).c_str());
    if (s != NATS_OK) throw_status(s, ErrorContext{.operation = std::string(op), .subject = subj}, "setting a header");
  }
  return m;
#endif
}

}  // namespace natbus::detail
