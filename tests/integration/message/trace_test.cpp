// Trace propagation against a real server: traceparent next to x-trace-id, continued by serve()
// replies and by what a handler publishes with MessageOptions::parent; foreign traceparents are
// read; the tracing hooks see every handler with its incoming trace.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/bus_test.hpp"

using namespace std::chrono_literals;
using natbus::BusMessage;
using natbus::NatsBus;
using natbus::ReceivedMessage;
using natbus::Task;
using natbus::TraceContext;
using namespace natbus::testing;

namespace {

/// The W3C trace id and span id a received message carries in its traceparent.
struct Seen {
  std::string x_trace_id;
  std::string trace;
  std::string span;
};

Seen seen_of(const ReceivedMessage& m) {
  const std::string tp(m.header("traceparent").value_or(""));
  return {std::string(m.trace_id()), tp.size() == 55 ? tp.substr(3, 32) : "", tp.size() == 55 ? tp.substr(36, 16) : ""};
}

}  // namespace

TEST(Trace, ServeRepliesContinueTheRequestsTrace) {
  NatsServer server;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    Seen request_seen;
    auto on_req = [&](ReceivedMessage& m) -> Task<nlohmann::json> {
      request_seen = seen_of(m);
      co_return nlohmann::json{{"ok", true}};
    };
    auto svc = co_await bus.serve("trace.svc", on_req);
    auto req = BusMessage::from_json("trace.svc", {{"q", 1}}, {.traceparent = natbus::TraceParent::always});
    const std::string trace_uuid(req.trace_id());
    const ReceivedMessage answer = co_await bus.request(std::move(req), 5s);
    const Seen reply = seen_of(answer);
    EXPECT_EQ(request_seen.x_trace_id, trace_uuid);
    EXPECT_EQ(request_seen.trace.size(), 32U);
    EXPECT_EQ(reply.x_trace_id, trace_uuid) << "x-trace-id continues";
    EXPECT_EQ(reply.trace, request_seen.trace) << "traceparent continues the same trace";
    EXPECT_EQ(reply.span.size(), 16U);
    EXPECT_NE(reply.span, request_seen.span) << "the reply is a new span";
    co_await bus.close();
  }());
}

TEST(Trace, HandlersContinueTracesTheyAreGivenAndReadForeignTraceparents) {
  NatsServer server;
  struct HookLog {
    std::vector<std::string> starts;
    std::vector<std::string> ends;
    int errors = 0;
  } hook_log;
  natbus::TraceHooks hooks;
  hooks.user = &hook_log;
  hooks.on_handler_start = [](const ReceivedMessage& m, const TraceContext& in, void* user) {
    static_cast<HookLog*>(user)->starts.push_back(std::string(m.subject()) + "/" + std::string(in.trace_id_hex()));
  };
  hooks.on_handler_end = [](const ReceivedMessage& m, const TraceContext& in, const std::exception_ptr& error, void* user) {
    auto* log = static_cast<HookLog*>(user);
    log->ends.push_back(std::string(m.subject()) + "/" + std::string(in.trace_id_hex()));
    if (error) ++log->errors;
  };
  natbus::set_trace_hooks(hooks);
  std::vector<Seen> out;
  natbus::run([&]() -> Task<void> {
    NatsBus bus{config_for(server)};
    co_await bus.connect();
    // A service step: what it publishes continues the trace of what it handles.
    auto forward = [&](ReceivedMessage m) -> Task<void> {
      co_await bus.publish_core(BusMessage::from_text("trace.out", "step", {.parent = m.trace_context()}));
      if (m.as_text() == "fail") throw std::runtime_error("handler failed on purpose");
    };
    auto record = [&](ReceivedMessage m) -> Task<void> {
      out.push_back(seen_of(m));
      co_return;
    };
    auto s_in = co_await bus.subscribe_core("trace.in", forward);
    auto s_out = co_await bus.subscribe_core("trace.out", record);
    // 1. From natbus: x-trace-id and traceparent (hooks are installed: tracing is on).
    auto first = BusMessage::from_text("trace.in", "one");
    const std::string first_trace(first.trace_id());
    co_await bus.publish_core(std::move(first));
    // 2. From an OpenTelemetry-instrumented client: traceparent only, not sampled.
    auto foreign = BusMessage::from_text("trace.in", "fail", {.natbus_headers = false});
    foreign.set_header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    co_await bus.publish_core(std::move(foreign));
    const bool done = co_await eventually([&] { return out.size() == 2 && hook_log.ends.size() == 4; });
    EXPECT_TRUE(done) << out.size() << " " << hook_log.ends.size();
    if (out.size() == 2) {
      EXPECT_EQ(out[0].x_trace_id, first_trace);
      std::string hex;
      for (char c : first_trace) {
        if (c != '-') hex.push_back(c);
      }
      EXPECT_EQ(out[0].trace, hex);
      EXPECT_EQ(out[1].x_trace_id, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736") << "x-trace-id from the foreign traceparent";
      EXPECT_EQ(out[1].trace, "4bf92f3577b34da6a3ce929d0e0e4736");
      EXPECT_NE(out[1].span, "00f067aa0ba902b7");
    }
    co_await bus.close();
  }());
  natbus::set_trace_hooks({});
  // Every handler run was seen, with the trace it was given, and the failure reported.
  ASSERT_EQ(hook_log.starts.size(), 4U);
  EXPECT_EQ(hook_log.starts, hook_log.ends);
  EXPECT_EQ(hook_log.errors, 1);
  EXPECT_NE(std::find(hook_log.starts.begin(), hook_log.starts.end(), "trace.in/4bf92f3577b34da6a3ce929d0e0e4736"), hook_log.starts.end());
  EXPECT_NE(std::find(hook_log.starts.begin(), hook_log.starts.end(), "trace.out/4bf92f3577b34da6a3ce929d0e0e4736"), hook_log.starts.end());
}
