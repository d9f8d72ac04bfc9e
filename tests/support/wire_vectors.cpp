#include "support/wire_vectors.hpp"

#include <fmt/format.h>

#include <fstream>
#include <functional>
#include <initializer_list>
#include <regex>
#include <stdexcept>

#include "message/gzip.hpp"
#include "natbus/error.hpp"

namespace natbus::testing {

using nlohmann::json;

const json& wire_vectors() {
  static const json vectors = [] {
    std::ifstream in(NATBUS_WIRE_VECTORS);
    if (!in) throw std::runtime_error("cannot read " NATBUS_WIRE_VECTORS);
    return json::parse(in);
  }();
  return vectors;
}

const json& wire_vector(std::string_view section, std::string_view name) {
  for (const auto& v : wire_vectors().at(std::string(section))) {
    if (v.at("name").get<std::string>() == name) return v;
  }
  throw std::runtime_error(fmt::format("no {} vector named {}", section, name));
}

std::string from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) throw std::runtime_error("odd hex length");
  std::string out;
  for (std::size_t i = 0; i < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

std::string to_hex(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) out += fmt::format("{:02x}", c);
  return out;
}

std::string vector_payload(const json& payload) {
  if (payload.contains("json")) return payload["json"].dump();
  if (payload.contains("text")) return payload["text"].get<std::string>();
  return from_hex(payload.at("hex").get<std::string>());
}

namespace {

using Make = std::function<BusMessage(const MessageOptions&)>;

// MessageOptions::headers is an initializer_list (call sites write them inline); a named list
// keeps the backing array alive for the call.
BusMessage with_headers(MessageOptions o, const std::vector<Header>& h, const Make& make) {
  switch (h.size()) {
    case 0:
      return make(o);
    case 1: {
      std::initializer_list<Header> il{h[0]};
      o.headers = il;
      return make(o);
    }
    case 2: {
      std::initializer_list<Header> il{h[0], h[1]};
      o.headers = il;
      return make(o);
    }
    case 3: {
      std::initializer_list<Header> il{h[0], h[1], h[2]};
      o.headers = il;
      return make(o);
    }
    default:
      throw std::runtime_error("wire vectors: more than 3 option headers");
  }
}

std::string str(const json& o, const char* key) { return o.contains(key) ? o[key].get<std::string>() : std::string(); }

}  // namespace

BusMessage build_write_vector(const json& v, std::string_view subject) {
  const json& opt = v.at("options");
  // The strings the options view must outlive the constructor call.
  const std::string sender = str(opt, "sender"), corr = str(opt, "correlation_id"), ctype = str(opt, "content_type"),
                    reply_on = str(opt, "reply_on"), final_to = str(opt, "final_to"), mtype = str(opt, "message_type"),
                    trace = str(opt, "trace_id"), msg_id = str(opt, "msg_id");
  std::vector<std::pair<std::string, std::string>> hdr_strings;
  if (opt.contains("headers")) {
    for (const auto& h : opt["headers"]) hdr_strings.emplace_back(h.at(0).get<std::string>(), h.at(1).get<std::string>());
  }
  std::vector<Header> hdrs;
  for (const auto& [k, val] : hdr_strings) hdrs.push_back(Header{k, val});
  MessageOptions o;
  o.sender = sender;
  o.correlation_id = corr;
  o.content_type = ctype;
  o.compress = flag(opt, "compress");
  o.reply_on = reply_on;
  o.final_to = final_to;
  o.message_type = mtype;
  o.trace_id = trace;
  o.msg_id = msg_id;
  const std::string ctor = v.at("constructor").get<std::string>();
  if (ctor == "from_json") {
    const json body = v.at("body");
    return with_headers(o, hdrs, [&](const MessageOptions& mo) { return BusMessage::from_json(subject, body, mo); });
  }
  if (ctor == "from_text") {
    const std::string text = v.at("text").get<std::string>();
    return with_headers(o, hdrs, [&](const MessageOptions& mo) { return BusMessage::from_text(subject, text, mo); });
  }
  if (ctor == "from_bytes") {
    const std::string bytes = from_hex(v.at("hex").get<std::string>());
    return with_headers(o, hdrs, [&](const MessageOptions& mo) { return BusMessage::from_bytes(subject, std::string_view(bytes), mo); });
  }
  throw std::runtime_error("wire vectors: unknown constructor " + ctor);
}

std::vector<std::string> check_written(const json& v, const std::vector<std::pair<std::string, std::string>>& headers,
                                       std::string_view wire_payload) {
  std::vector<std::string> fails;
  const json& formats = wire_vectors().at("formats");
  const json& want = v.at("headers");
  for (const auto& h : want) {
    const auto name = h.at(0).get<std::string>();
    const auto value = h.at(1).get<std::string>();
    int found = 0;
    for (const auto& [k, got] : headers) {
      if (k != name) continue;
      ++found;
      if (value.starts_with("@")) {
        const std::regex re(formats.at(value.substr(1)).get<std::string>());
        if (!std::regex_match(got, re)) fails.push_back(fmt::format("{}: '{}' does not match {}", name, got, value));
      } else if (got != value) {
        fails.push_back(fmt::format("{}: '{}', want '{}'", name, got, value));
      }
    }
    if (found != 1) fails.push_back(fmt::format("{}: present {} times, want once (names are written exactly)", name, found));
  }
  // traceparent carries x-trace-id's trace id (dashes removed).
  std::string trace_hex;
  std::string traceparent;
  for (const auto& [k, got] : headers) {
    if (k == "x-trace-id") {
      for (char c : got) {
        if (c != '-') trace_hex.push_back(c);
      }
    }
    if (k == "traceparent") traceparent = got;
  }
  if (!traceparent.empty() && traceparent.substr(3, 32) != trace_hex) {
    fails.push_back(fmt::format("traceparent '{}' does not carry x-trace-id's trace id '{}'", traceparent, trace_hex));
  }
  if (headers.size() != want.size()) {
    std::string all;
    for (const auto& [k, got] : headers) all += k + "=" + got + " ";
    fails.push_back(fmt::format("{} headers on the wire, want {}: {}", headers.size(), want.size(), all));
  }
  std::string payload(wire_payload);
  if (flag(v, "gzip")) {
    if (!payload.starts_with("\x1f\x8b")) fails.push_back("payload is not gzip");
    try {
      std::string out;
      detail::gzip_decompress(payload, 1 << 20, out);
      payload = out;
    } catch (const std::exception& e) {
      fails.push_back(std::string("gunzip: ") + e.what());
    }
  }
  const json& p = v.at("payload");
  if (p.contains("json")) {
    json got = json::parse(payload, nullptr, false);
    if (got != p["json"]) fails.push_back(fmt::format("payload {} is not the JSON {}", payload, p["json"].dump()));
  } else if (payload != vector_payload(p)) {
    fails.push_back(fmt::format("payload {} want {}", to_hex(payload), to_hex(vector_payload(p))));
  }
  return fails;
}

std::vector<std::string> check_received(const json& v, const ReceivedMessage& m) {
  std::vector<std::string> fails;
  const json& e = v.at("expect");
  const std::pair<const char*, std::string_view> accessors[] = {{"content_type", m.content_type()},
                                                                {"content_encoding", m.content_encoding()},
                                                                {"trace_id", m.trace_id()},
                                                                {"correlation_id", m.correlation_id()},
                                                                {"sender", m.sender()},
                                                                {"sent_at", m.sent_at()},
                                                                {"message_type", m.message_type()},
                                                                {"reply_on", m.reply_on()},
                                                                {"final_to", m.final_to()},
                                                                {"msg_id", m.msg_id()}};
  for (const auto& [key, got] : accessors) {
    const std::string want = str(e, key);
    if (got != want) fails.push_back(fmt::format("{}() = '{}', want '{}'", key, got, want));
  }
  if (e.contains("raw_hex") && to_hex(m.raw_payload()) != e["raw_hex"].get<std::string>()) {
    fails.push_back("raw_payload() = " + to_hex(m.raw_payload()));
  }
  if (flag(e, "payload_error")) {
    try {
      (void)m.payload();
      fails.push_back("payload() did not throw DecodeError");
    } catch (const DecodeError& err) {
      if (std::string(err.what()).find(str(v.at("expect"), "content_encoding")) == std::string::npos) {
        fails.push_back(std::string("DecodeError does not name the encoding: ") + err.what());
      }
    }
    return fails;
  }
  try {
    if (e.contains("data_hex")) {
      const auto d = m.data();
      const std::string bytes(reinterpret_cast<const char*>(d.data()), d.size());
      if (to_hex(bytes) != e["data_hex"].get<std::string>()) fails.push_back("data() = " + to_hex(bytes));
    }
    if (e.contains("text")) {
      if (m.as_text() != e["text"].get<std::string>()) fails.push_back(fmt::format("as_text() = '{}'", m.as_text()));
      if (m.payload() != e["text"].get<std::string>()) fails.push_back(fmt::format("payload() = '{}'", m.payload()));
    }
  } catch (const std::exception& err) {
    fails.push_back(std::string("reading the payload threw: ") + err.what());
  }
  if (flag(e, "text_error")) {
    try {
      (void)m.as_text();
      fails.push_back("as_text() accepted bytes that are not UTF-8");
    } catch (const DecodeError&) {
    }
  }
  if (e.contains("json")) {
    try {
      if (m.as_json() != e["json"]) fails.push_back("as_json() = " + m.as_json().dump());
    } catch (const std::exception& err) {
      fails.push_back(std::string("as_json() threw: ") + err.what());
    }
  }
  if (flag(e, "json_error")) {
    try {
      (void)m.as_json();
      fails.push_back("as_json() accepted a payload that is not JSON");
    } catch (const DecodeError&) {
    }
  }
  return fails;
}

bool flag(const json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_boolean() && it->get<bool>();
}

std::string join_failures(const std::vector<std::string>& failures) {
  std::string out;
  for (const auto& f : failures) out += "\n  " + f;
  return out;
}

}  // namespace natbus::testing
