#include "transport/cnats.hpp"

#include <fmt/format.h>

#ifdef NATBUS_HAVE_NATSMSG_FREE
// cnats' internal destructor (msg.c; exported): frees the message here and now.
// natsMsg_Destroy instead queues it for cnats' garbage-collector thread, which costs a global
// lock, a futex wakeup and a cross-thread free per message. The one case natsMsg_Destroy skips,
// a "no destroy" message, exists only inside cnats' own JetStream subscriptions, which natbus
// does not use. CMake checks the symbol (NATBUS_HAVE_NATSMSG_FREE).
extern "C" void natsMsg_free(void* object);
#endif

namespace natbus::detail {

void NatsMsgDeleter::operator()(natsMsg* m) const noexcept {
#ifdef NATBUS_HAVE_NATSMSG_FREE
  natsMsg_free(m);
#else
  natsMsg_Destroy(m);
#endif
}

std::string last_error_text(natsStatus status) {
  natsStatus last = NATS_OK;
  const char* text = nats_GetLastError(&last);
  if (text == nullptr || last != status) return natsStatus_GetText(status);
  return text;
}

std::exception_ptr status_error(natsStatus status, ErrorContext context, std::string_view what) {
  context.nats_status = static_cast<int>(status);
  if (context.server_text.empty()) context.server_text = last_error_text(status);
  std::string message = what.empty() ? std::string(natsStatus_GetText(status)) : fmt::format("{}: {}", what, natsStatus_GetText(status));
  switch (status) {
    case NATS_TIMEOUT:
      return std::make_exception_ptr(TimeoutError(std::move(message), std::move(context)));
    case NATS_NOT_FOUND:
      return std::make_exception_ptr(NotFoundError(std::move(message), std::move(context)));
    case NATS_CONNECTION_AUTH_FAILED:
    case NATS_NOT_PERMITTED:
      return std::make_exception_ptr(AuthError(std::move(message), std::move(context)));
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_INVALID_SUBSCRIPTION:
      return std::make_exception_ptr(ClosedError(std::move(message), std::move(context)));
    case NATS_NO_SERVER:
    case NATS_IO_ERROR:
    case NATS_SSL_ERROR:
    case NATS_SECURE_CONNECTION_REQUIRED:
    case NATS_SECURE_CONNECTION_WANTED:
    case NATS_STALE_CONNECTION:
      return std::make_exception_ptr(ConnectionError(std::move(message), std::move(context)));
    case NATS_MAX_PAYLOAD:
      return std::make_exception_ptr(PayloadTooLargeError(std::move(message), std::move(context)));
    case NATS_NO_RESPONDERS:
      return std::make_exception_ptr(NoStreamError(std::move(message), std::move(context)));
    case NATS_INVALID_ARG:
    case NATS_INVALID_SUBJECT:
      return std::make_exception_ptr(InvalidArgument(std::move(message), std::move(context)));
    default:
      return std::make_exception_ptr(Error(errc::nats, std::move(message), std::move(context)));
  }
}

void throw_status(natsStatus status, ErrorContext context, std::string_view what) {
  std::rethrow_exception(status_error(status, std::move(context), what));
}

}  // namespace natbus::detail
