// W3C trace context: traceparent next to x-trace-id (same trace id), continuation, hooks.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "natbus/json.hpp"
#include "natbus/message.hpp"

using natbus::BusMessage;
using natbus::MessageOptions;
using natbus::TraceContext;

namespace {

std::string no_dashes(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != '-') out.push_back(c);
  }
  return out;
}

const std::regex kTraceparent("^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$");

}  // namespace

TEST(Trace, ByDefaultOnlyXTraceIdAsThePythonLibraryWrites) {
  // No tracing hooks installed and no parent with a span: the Python contract, byte for byte.
  const auto m = BusMessage::from_json("t.a", {{"n", 1}});
  EXPECT_FALSE(m.header("traceparent").has_value());
  EXPECT_EQ(m.trace_id().size(), 36U);
}

TEST(Trace, TraceparentCarriesTheTraceIdOfXTraceIdAndANewSpan) {
  const MessageOptions always{.traceparent = natbus::TraceParent::always};
  const auto a = BusMessage::from_json("t.a", {{"n", 1}}, always);
  const auto b = BusMessage::from_json("t.a", {{"n", 1}}, always);
  const std::string tp(a.header("traceparent").value_or(""));
  ASSERT_TRUE(std::regex_match(tp, kTraceparent)) << tp;
  EXPECT_EQ(tp.substr(3, 32), no_dashes(a.trace_id()));
  EXPECT_EQ(tp.substr(53), "01") << "new traces are sampled";
  EXPECT_NE(std::string(b.header("traceparent").value_or("")).substr(36, 16), tp.substr(36, 16)) << "a new span per message";
}

TEST(Trace, ParentContinuesTheTraceWithItsFlagsAndANewSpan) {
  const auto parent = TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(parent.has_value());
  const auto m = BusMessage::from_text("t.b", "x", {.parent = *parent});  // automatic: the parent has a span
  EXPECT_EQ(m.trace_id(), "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
  const std::string tp(m.header("traceparent").value_or(""));
  ASSERT_TRUE(std::regex_match(tp, kTraceparent)) << tp;
  EXPECT_EQ(tp.substr(3, 32), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_NE(tp.substr(36, 16), "00f067aa0ba902b7") << "the message is a new span, child of the parent";
  EXPECT_EQ(tp.substr(53), "00") << "the parent's sampling decision is kept";
}

TEST(Trace, NoTraceparentWithoutAW3CFormOrWhenAskedNot) {
  using natbus::TraceParent;
  EXPECT_FALSE(
      BusMessage::from_text("t.c", "x", {.trace_id = "trace-7", .traceparent = TraceParent::always}).header("traceparent").has_value())
      << "not a UUID";
  const auto parent = TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  EXPECT_FALSE(BusMessage::from_text("t.c", "x", {.parent = *parent, .traceparent = TraceParent::never}).header("traceparent").has_value());
  EXPECT_FALSE(
      BusMessage::from_text("t.c", "x", {.traceparent = TraceParent::always, .natbus_headers = false}).header("traceparent").has_value());
  EXPECT_FALSE(
      BusMessage::from_text("t.c", "x", {.ensure_trace = false, .traceparent = TraceParent::always}).header("traceparent").has_value());
  // A parent known only by a UUID x-trace-id (a Python sender) continues x-trace-id alone.
  const auto python = TraceContext::from_trace_id("0af76519-16cd-43dd-8448-eb211c80319c");
  const auto cont = BusMessage::from_text("t.c", "x", {.parent = *python});
  EXPECT_EQ(cont.trace_id(), "0af76519-16cd-43dd-8448-eb211c80319c");
  EXPECT_FALSE(cont.header("traceparent").has_value());
  // A given UUID trace id gets its W3C form.
  const auto m = BusMessage::from_text("t.c", "x", {.trace_id = "0AF7651916CD43DD8448EB211C80319C", .traceparent = TraceParent::always});
  EXPECT_EQ(std::string(m.header("traceparent").value_or("")).substr(3, 32), "0af7651916cd43dd8448eb211c80319c");
}

TEST(Trace, TraceContextParsesOnlyValidTraceparents) {
  const auto c = TraceContext::from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(c->span_id_hex(), "b7ad6b7169203331");
  EXPECT_EQ(c->flags, 1);
  EXPECT_EQ(c->trace_uuid(), "0af76519-16cd-43dd-8448-eb211c80319c");
  EXPECT_EQ(c->traceparent(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  for (const char* bad :
       {"", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x"}) {
    EXPECT_FALSE(TraceContext::from_traceparent(bad).has_value()) << bad;
  }
  // A later version may add fields after the four known ones.
  EXPECT_TRUE(TraceContext::from_traceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra").has_value());
  EXPECT_TRUE(TraceContext::from_trace_id("0af76519-16cd-43dd-8448-eb211c80319c").has_value());
  EXPECT_FALSE(TraceContext::from_trace_id("trace-7").has_value());
  EXPECT_FALSE(TraceContext{}.valid());
}

TEST(Trace, InjectHookCanSetTheSpanOfItsProducerSpan) {
  struct Seen {
    int calls = 0;
    std::string subject;
    bool parent_valid = true;
  } seen;
  natbus::TraceHooks hooks;
  hooks.user = &seen;
  hooks.on_inject = [](TraceContext& out, const TraceContext& parent, std::string_view subject, void* user) {
    auto* s = static_cast<Seen*>(user);
    ++s->calls;
    s->subject = std::string(subject);
    s->parent_valid = parent.valid();
    const std::string_view span = "1111222233334444";
    std::copy(span.begin(), span.end(), out.span_id.begin());
  };
  natbus::set_trace_hooks(hooks);
  const auto m = BusMessage::from_json("t.hook", {{"n", 1}});
  natbus::set_trace_hooks({});
  EXPECT_EQ(seen.calls, 1);
  EXPECT_EQ(seen.subject, "t.hook");
  EXPECT_FALSE(seen.parent_valid) << "a new trace has no parent";
  EXPECT_EQ(std::string(m.header("traceparent").value_or("")).substr(36, 16), "1111222233334444") << "installed hooks turn traceparent on";
  const auto after = BusMessage::from_json("t.hook", {{"n", 2}});
  EXPECT_EQ(seen.calls, 1) << "hooks removed";
  EXPECT_FALSE(after.header("traceparent").has_value());
}
