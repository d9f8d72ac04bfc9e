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

void send_bytes(natsConnection* nc, std::string_view subject, const char* reply, std::string_view data, std::string_view op) {
  // cnats wants a NUL-terminated subject: on the stack unless it is unusually long.
  char subj_buf[256];
  std::string subj_heap;
  const char* subj = nullptr;
  if (subject.size() < sizeof subj_buf) {
    std::memcpy(subj_buf, subject.data(), subject.size());
    subj_buf[subject.size()] = '\0';
    subj = subj_buf;
  } else {
    subj_heap.assign(subject);
    subj = subj_heap.c_str();
  }
  const natsStatus s = reply == nullptr ? natsConnection_Publish(nc, subj, data.data(), static_cast<int>(data.size()))
                                        : natsConnection_PublishRequest(nc, subj, reply, data.data(), static_cast<int>(data.size()));
  if (s != NATS_OK) throw_status(s, ErrorContext{.operation = std::string(op), .subject = std::string(subject)});
}

void send_message(natsConnection* nc, const BusMessage& msg, const char* reply, std::string_view op) {
  if (msg.wire_headers().empty()) {
    send_bytes(nc, msg.subject(), reply, msg.payload(), op);
    return;
  }
  MsgPtr m = to_nats_msg(msg, reply, op);
  const natsStatus s = natsConnection_PublishMsg(nc, m.get());
  if (s != NATS_OK) throw_status(s, ErrorContext{.operation = std::string(op), .subject = std::string(msg.subject())});
}

}  // namespace natbus::detail
