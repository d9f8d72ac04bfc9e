// natbus writes exactly what tests/wire_vectors.json says the Python library writes, reads
// what other clients write, and reads its own messages back (no server: cnats messages are
// built in memory).
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <set>

#include "message/gzip.hpp"
#include "message/msg_impl.hpp"
#include "support/wire_vectors.hpp"
#include "transport/cnats.hpp"

using natbus::BusMessage;
using natbus::ReceivedMessage;
using nlohmann::json;
using namespace natbus::testing;

namespace {

/// A ReceivedMessage over an in-memory cnats message with exactly these headers and bytes.
ReceivedMessage received(const std::string& subject, const std::vector<std::pair<std::string, std::string>>& headers,
                         const std::string& payload) {
  if (nats_Open(-1) != NATS_OK) throw std::runtime_error("nats_Open failed");  // cnats' GC frees messages
  natsMsg* m = nullptr;
  if (natsMsg_Create(&m, subject.c_str(), nullptr, payload.data(), static_cast<int>(payload.size())) != NATS_OK) {
    throw std::runtime_error("natsMsg_Create failed");
  }
  for (const auto& [k, v] : headers) natsMsgHeader_Add(m, k.c_str(), v.c_str());
  return ReceivedMessage(natbus::detail::kLibrary, new natbus::detail::MsgImpl(natbus::detail::MsgPtr(m), nullptr));
}

std::vector<std::pair<std::string, std::string>> header_pairs(const BusMessage& m) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [k, v] : m.headers()) out.emplace_back(k, v);
  return out;
}

std::vector<std::pair<std::string, std::string>> vector_headers(const json& v) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& h : v.at("headers")) out.emplace_back(h.at(0).get<std::string>(), h.at(1).get<std::string>());
  return out;
}

}  // namespace

TEST(WireVectors, FileIsVersionOneAndCoversEveryConstructorAndOption) {
  const json& v = wire_vectors();
  EXPECT_EQ(v.at("version"), 1);
  std::set<std::string> ctors, options;
  for (const auto& w : v.at("write")) {
    ctors.insert(w.at("constructor").get<std::string>());
    for (const auto& [k, _] : w.at("options").items()) options.insert(k);
  }
  EXPECT_EQ(ctors, (std::set<std::string>{"from_json", "from_text", "from_bytes"}));
  for (const char* o :
       {"sender", "correlation_id", "headers", "content_type", "compress", "reply_on", "final_to", "message_type", "trace_id", "msg_id"}) {
    EXPECT_TRUE(options.contains(o)) << "no write vector uses option " << o;
  }
  EXPECT_GE(v.at("read").size(), 8U);
}

TEST(WireVectors, NatbusWritesWhatThePythonLibraryWrites) {
  for (const auto& v : wire_vectors().at("write")) {
    const std::string name = v.at("name").get<std::string>();
    const BusMessage m = build_write_vector(v, "vectors." + name);
    EXPECT_EQ(m.subject(), "vectors." + name);
    const auto fails = check_written(v, header_pairs(m), m.payload());
    EXPECT_TRUE(fails.empty()) << "write vector " << name << ":" << join_failures(fails);
  }
}

TEST(WireVectors, NatbusReadsWhatOtherClientsWrite) {
  for (const auto& v : wire_vectors().at("read")) {
    const std::string name = v.at("name").get<std::string>();
    std::string payload = vector_payload(v.at("payload"));
    if (flag(v, "gzip")) payload = natbus::detail::gzip_compress(payload);
    const ReceivedMessage m = received("vectors." + name, vector_headers(v), payload);
    const auto fails = check_received(v, m);
    EXPECT_TRUE(fails.empty()) << "read vector " << name << ":" << join_failures(fails);
  }
}

TEST(WireVectors, NatbusReadsBackWhatItWrites) {
  for (const auto& v : wire_vectors().at("write")) {
    const std::string name = v.at("name").get<std::string>();
    const BusMessage sent = build_write_vector(v, "vectors." + name);
    const ReceivedMessage got = received(std::string(sent.subject()), header_pairs(sent), std::string(sent.payload()));
    EXPECT_EQ(got.content_type(), sent.content_type()) << name;
    EXPECT_EQ(got.content_encoding(), sent.content_encoding()) << name;
    EXPECT_EQ(got.trace_id(), sent.trace_id()) << name;
    EXPECT_EQ(got.correlation_id(), sent.correlation_id()) << name;
    EXPECT_EQ(got.sender(), sent.sender()) << name;
    EXPECT_EQ(got.sent_at(), sent.sent_at()) << name;
    EXPECT_EQ(got.message_type(), sent.message_type()) << name;
    EXPECT_EQ(got.reply_on(), sent.reply_on()) << name;
    EXPECT_EQ(got.final_to(), sent.final_to()) << name;
    EXPECT_EQ(got.msg_id(), sent.msg_id()) << name;
    const json& p = v.at("payload");
    if (p.contains("json")) {
      EXPECT_EQ(got.as_json(), p["json"]) << name;
    } else {
      EXPECT_EQ(got.payload(), vector_payload(p)) << name;
    }
  }
}
