// The one place where what the server says went wrong becomes a natbus exception: the error
// object of a JetStream API answer or of a PubAck, and the status of a pull request.
#pragma once

#include <exception>
#include <string_view>

#include <nlohmann/json.hpp>

#include "natbus/error.hpp"

namespace natbus::detail {

/// What the error object answered.
enum class ServerErrorSource {
  api,     ///< a $JS.API request (stream, consumer management)
  puback,  ///< a JetStream publish
};

/// Throws the exception of a server error object {"code", "err_code", "description"}, with
/// ctx.api_code, js_code and server_text set.
[[noreturn]] void throw_server_error(const nlohmann::json& err, ErrorContext ctx, ServerErrorSource source);

/// The exception of a pull request's status that is an error (not 100, 404, 408), with
/// ctx.server_text set.
std::exception_ptr pull_status_error(std::string_view code, std::string_view description, ErrorContext ctx);

}  // namespace natbus::detail
