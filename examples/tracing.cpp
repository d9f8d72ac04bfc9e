// Trace propagation: W3C traceparent next to x-trace-id, continued by replies and by what a
// handler publishes, and the hooks an OpenTelemetry bridge would use (here they only print).
//   NATS_SERVER=127.0.0.1:4222 ./tracing
#include <natbus/natbus.hpp>

#include <fmt/format.h>

#include <chrono>
#include <string>

namespace {

// A stand-in for an OpenTelemetry bridge: start a span per handler and per published message.
void install_printing_hooks() {
  natbus::TraceHooks hooks;
  hooks.on_inject = [](natbus::TraceContext& out, const natbus::TraceContext& parent, std::string_view subject, void*) {
    // A real bridge starts a producer span (child of `parent`) and copies its span id into out.
    fmt::print("publish {} trace={} span={} parent={}\n", subject, out.trace_id_hex(), out.span_id_hex(), parent.span_id_hex());
  };
  hooks.on_handler_start = [](const natbus::ReceivedMessage& m, const natbus::TraceContext& in, void*) {
    fmt::print("handle  {} trace={} from span={}\n", m.subject(), in.trace_id_hex(), in.span_id_hex());
  };
  hooks.on_handler_end = [](const natbus::ReceivedMessage& m, const natbus::TraceContext&, const std::exception_ptr& error, void*) {
    fmt::print("done    {}{}\n", m.subject(), error ? " (failed)" : "");
  };
  natbus::set_trace_hooks(hooks);  // before any bus starts
}

natbus::Task<int> run_example() {
  using namespace std::chrono_literals;
  const natbus::NatsConfig cfg =
      natbus::NatsConfig::from_env(natbus::NatsConfig{.username = "nats-user", .password = "changeme", .name = "tracing-example"});
  natbus::NatsBus bus{cfg};
  co_await bus.connect();

  // A service step: what it publishes continues the trace of what it handles (`parent`).
  auto enrich = [&](natbus::ReceivedMessage& m) -> natbus::Task<void> {
    co_await bus.publish_core(natbus::BusMessage::from_text("orders.enriched", "enriched", {.parent = m.trace_context()}));
  };
  auto step = co_await bus.subscribe_core("orders.new", enrich);
  // A service answering requests: serve() continues the request's trace by itself.
  auto on_status = [](natbus::ReceivedMessage&) -> natbus::Task<nlohmann::json> { co_return nlohmann::json{{"status", "ok"}}; };
  auto svc = co_await bus.serve("orders.status", on_status);
  auto last = [](natbus::ReceivedMessage& m) -> natbus::Task<void> {
    fmt::print("enriched message: x-trace-id={} traceparent={}\n", m.trace_id(), m.header("traceparent").value_or(""));
    co_return;
  };
  auto sink = co_await bus.subscribe_core("orders.enriched", last);

  co_await bus.publish_core(natbus::BusMessage::from_text("orders.new", "order 42"));
  const nlohmann::json query{{"id", 42}};
  auto ask = natbus::BusMessage::from_json("orders.status", query);
  const natbus::ReceivedMessage answer = co_await bus.request(std::move(ask), 2s);
  fmt::print("reply: x-trace-id={} traceparent={}\n", answer.trace_id(), answer.header("traceparent").value_or(""));
  co_await natbus::sleep(200ms);  // let the enriched message arrive before closing
  co_await bus.close();
  co_return 0;
}

}  // namespace

int main() {
  install_printing_hooks();
  return natbus::run(run_example());
}
