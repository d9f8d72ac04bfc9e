// Server errors to natbus exceptions (see server_errors.hpp).
#include "jetstream/server_errors.hpp"

#include <string>
#include <utility>

#include <fmt/format.h>

namespace natbus::detail {

void throw_server_error(const nlohmann::json& err, ErrorContext ctx, ServerErrorSource source) {
  const int code = err.value("code", 0);
  const int js = err.value("err_code", 0);
  std::string desc = err.value("description", std::string("unknown error"));
  ctx.js_code = js;
  ctx.api_code = code;
  ctx.server_text = desc;
  if (source == ServerErrorSource::puback) {
    if (code == 503) {
      throw NoStreamError("JetStream is temporarily unavailable for this stream (leader election?): retry with the same msg_id",
                          std::move(ctx));
    }
    throw JetStreamError(desc, std::move(ctx));
  }
  switch (js) {
    case 10059:  // stream not found
    case 10014:  // consumer not found
    case 10037:  // no message found
    case 10043:  // sequence not found (deleting a message that is not there)
      throw NotFoundError(desc, std::move(ctx));
    case 10039:  // JetStream not enabled for account
    case 10076:  // JetStream not enabled
      throw JetStreamNotEnabledError(desc + " (enable JetStream on the server, or for this account)", std::move(ctx));
    case 10065:  // subjects overlap with an existing stream
      throw JetStreamError(desc + ": another stream already captures these subjects", std::move(ctx));
    default:
      break;
  }
  if (code == 404) throw NotFoundError(desc, std::move(ctx));
  throw JetStreamError(desc, std::move(ctx));
}

std::exception_ptr pull_status_error(std::string_view code, std::string_view description, ErrorContext ctx) {
  ctx.server_text = fmt::format("{} {}", code, description);
  if (code == "503") {
    return std::make_exception_ptr(NotFoundError("no JetStream consumer answered the pull request (consumer or stream deleted?)", ctx));
  }
  return std::make_exception_ptr(JetStreamError(fmt::format("pull request refused: {} {}", code, description), ctx));
}

}  // namespace natbus::detail
