// The cnats bridge's vocabulary: one owner per cnats handle type, taken the instant a call
// returns NATS_OK, and the translation of natsStatus into natbus::Error.
// This is the only header that includes nats.h; nothing under include/natbus/ does.
#pragma once

#include <nats/nats.h>

#include <memory>
#include <string>
#include <string_view>

#include "natbus/error.hpp"

#ifdef NATBUS_HAVE_NATSMSG_CREATE
// cnats' internal constructor behind natsMsg_Create (msg.h; exported from libnats with this
// signature since v2.6). Given a pre-encoded header block (hdrLen > 0) it marks the message so
// that publishing copies the block as is instead of re-encoding a header map. CMake checks
// that the library exports it (NATBUS_HAVE_NATSMSG_CREATE); without it natbus falls back to
// natsMsgHeader_Add.
extern "C" natsStatus natsMsg_create(natsMsg** newMsg, const char* subject, int subjLen, const char* reply, int replyLen, const char* buf,
                                     int bufLen, int hdrLen);
#endif

namespace natbus::detail {

/// Frees a message on this thread (cnats.cpp: natsMsg_free when the library exports it).
struct NatsMsgDeleter {
  void operator()(natsMsg* m) const noexcept;
};
struct NatsOptionsDeleter {
  void operator()(natsOptions* o) const noexcept { natsOptions_Destroy(o); }
};
struct NatsSubDeleter {
  void operator()(natsSubscription* s) const noexcept { natsSubscription_Destroy(s); }
};
struct NatsConnDeleter {
  void operator()(natsConnection* c) const noexcept { natsConnection_Destroy(c); }
};
struct JsMetaDeleter {
  void operator()(jsMsgMetaData* m) const noexcept { jsMsgMetaData_Destroy(m); }
};

using MsgPtr = std::unique_ptr<natsMsg, NatsMsgDeleter>;
using OptionsPtr = std::unique_ptr<natsOptions, NatsOptionsDeleter>;
using SubPtr = std::unique_ptr<natsSubscription, NatsSubDeleter>;
using ConnPtr = std::unique_ptr<natsConnection, NatsConnDeleter>;
using JsMetaPtr = std::unique_ptr<jsMsgMetaData, JsMetaDeleter>;

/// cnats' last error text for `status` on this thread, if it belongs to that status (the
/// thread-local text is not cleared on success, so stale text is ignored).
std::string last_error_text(natsStatus status);

/// Builds the natbus::Error subclass that matches a cnats status.
[[noreturn]] void throw_status(natsStatus status, ErrorContext context, std::string_view what = {});
/// Same, as an exception_ptr (for completions on the loop).
std::exception_ptr status_error(natsStatus status, ErrorContext context, std::string_view what = {});

/// Throws when `status` is not NATS_OK.
inline void check_status(natsStatus status, const char* operation) {
  if (status != NATS_OK) throw_status(status, ErrorContext{.operation = operation});
}

}  // namespace natbus::detail
