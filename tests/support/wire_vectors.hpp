// The wire-contract vectors (tests/wire_vectors.json): loading them, building natbus messages
// from "write" vectors, and checking what is on the wire or what a ReceivedMessage returns.
// Every check returns a list of failures (empty: the vector holds) so a test reports them all.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "natbus/json.hpp"
#include "natbus/message.hpp"

namespace natbus::testing {

/// tests/wire_vectors.json, parsed (the path is compiled in).
const nlohmann::json& wire_vectors();
/// The vector named `name` in section `section` ("write" or "read"); throws when missing.
const nlohmann::json& wire_vector(std::string_view section, std::string_view name);

std::string from_hex(std::string_view hex);
std::string to_hex(std::string_view bytes);

/// A vector's "payload" ({"json"}, {"text"} or {"hex"}) as bytes, before any compression.
std::string vector_payload(const nlohmann::json& payload);

/// Builds the BusMessage a "write" vector describes, on `subject`.
BusMessage build_write_vector(const nlohmann::json& vector, std::string_view subject);

/// Checks headers and payload as they are on the wire (payload still compressed) against a
/// "write" vector: the exact header set, value formats, and the payload bytes.
std::vector<std::string> check_written(const nlohmann::json& vector, const std::vector<std::pair<std::string, std::string>>& headers,
                                       std::string_view wire_payload);

/// Checks every ReceivedMessage accessor against a "read" vector's "expect".
std::vector<std::string> check_received(const nlohmann::json& vector, const ReceivedMessage& msg);

/// A boolean member of a vector ("gzip", "text_error"...), false when absent.
bool flag(const nlohmann::json& object, const char* key);

/// Joins failures for a test message.
std::string join_failures(const std::vector<std::string>& failures);

}  // namespace natbus::testing
