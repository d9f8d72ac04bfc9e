// FrameScanner: where whole server-to-client protocol frames end, fed in arbitrary pieces.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "frame_guard.hpp"

using natbus::detail::FrameScanner;

namespace {

const std::string kStream =
    "INFO {\"server_id\":\"x\"}\r\n"
    "PING\r\n"
    "MSG a.b 1 5\r\nhello\r\n"
    "HMSG a.b 2 _INBOX.r 12 17\r\nNATS/1.0\r\n\r\nworld\r\n"
    "+OK\r\n"
    "msg\ta 3\t0\r\n\r\n"
    "-ERR 'Unknown Subject'\r\n"
    "PONG\r\n";

/// Ends of the frames in kStream.
std::vector<std::size_t> frame_ends() {
  std::vector<std::size_t> ends;
  for (const char* f : {"PING\r\n", "MSG a.b", "HMSG", "+OK", "msg\t", "-ERR", "PONG"}) ends.push_back(kStream.find(f));
  ends.push_back(kStream.size());
  return ends;
}

}  // namespace

TEST(FrameScanner, CompleteStopsAtTheLastWholeFrameWhateverThePieces) {
  const auto ends = frame_ends();
  for (std::size_t piece : {1U, 2U, 3U, 7U, 13U, 64U}) {
    FrameScanner sc;
    for (std::size_t len = 0; len <= kStream.size(); len = std::min(kStream.size() + 1, len + piece)) {
      sc.scan(kStream.data(), len);
      std::size_t want = 0;
      for (std::size_t e : ends) {
        if (e <= len) want = e;
      }
      ASSERT_EQ(sc.complete(), want) << "piece " << piece << " after " << len << " bytes";
      if (len == kStream.size()) break;
    }
    EXPECT_FALSE(sc.passthrough());
  }
}

TEST(FrameScanner, ConsumedKeepsPositionsOnTheRemainingBytes) {
  FrameScanner sc;
  std::string buf = kStream.substr(0, kStream.find("hello") + 2);  // cut inside a payload
  sc.scan(buf.data(), buf.size());
  const std::size_t whole = sc.complete();
  EXPECT_EQ(whole, kStream.find("MSG a.b"));
  buf.erase(0, whole);
  sc.consumed(whole);
  EXPECT_EQ(sc.complete(), 0U);
  buf += kStream.substr(kStream.find("hello") + 2);
  sc.scan(buf.data(), buf.size());
  EXPECT_EQ(sc.complete(), buf.size());
}

TEST(FrameScanner, TrafficThatIsNotTheProtocolPassesThrough) {
  FrameScanner tls;
  const std::string record = "\x17\x03\x03\x00\x10 encrypted bytes";
  tls.scan(record.data(), record.size());
  EXPECT_TRUE(tls.passthrough());
  EXPECT_EQ(tls.complete(), record.size());

  FrameScanner bad_size;
  const std::string msg = "MSG a 1 five\r\nhello\r\n";
  bad_size.scan(msg.data(), msg.size());
  EXPECT_TRUE(bad_size.passthrough());

  FrameScanner endless;
  const std::string line = "INFO " + std::string(FrameScanner::kMaxLine + 1, 'x');
  endless.scan(line.data(), line.size());
  EXPECT_TRUE(endless.passthrough()) << "an endless control line must not hold the stream forever";
}
