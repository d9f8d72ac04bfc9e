// Metrics snapshot and Prometheus text exposition.
#include "natbus/metrics.hpp"

#include <fmt/format.h>

#include <limits>

#include "bus/bus_core.hpp"
#include "natbus/bus.hpp"
#include "subscription/subscription.hpp"

namespace natbus {

double Histogram::quantile_bound(double q) const noexcept {
  if (count == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    seen += counts[i];
    if (seen > rank || seen == count) return i < kBounds.size() ? kBounds[i] : std::numeric_limits<double>::infinity();
  }
  return std::numeric_limits<double>::infinity();
}

MetricsSnapshot NatsBus::metrics() const {
  MetricsSnapshot out;
  if (core_ == nullptr) return out;
  const detail::BusCore& core = *core_;
  out.name = core.config().name;
  out.publish = core.counters().publish;
  out.publish.in_flight = core.publisher().in_flight();
  out.acks = core.counters().acks;
  out.naks = core.counters().naks;
  out.terms = core.counters().terms;
  out.in_progress = core.counters().in_progress;
  for (const detail::SubCore* s : core.subscriptions()) {
    SubscriptionMetrics m;
    m.subject = s->subject();
    m.stream = s->stream();
    m.durable = s->durable();
    m.queue = s->queue();
    m.delivered = s->delivered();
    m.redelivered = s->redelivered();
    m.handler_errors = s->handler_errors();
    m.in_flight = static_cast<std::uint64_t>(s->running());
    m.dropped = s->dropped();
    m.handler_seconds = s->handler_seconds();
    out.subscriptions.push_back(std::move(m));
  }
  return out;
}

namespace {

std::string escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void counter(std::string& out, std::string_view name, std::string_view help, std::string_view labels, std::uint64_t v) {
  out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{}{{{}}} {}\n", name, help, name, name, labels, v);
}

void histogram(std::string& out, std::string_view name, std::string_view labels, const Histogram& h) {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < Histogram::kBounds.size(); ++i) {
    cumulative += h.counts[i];
    out += fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, labels, Histogram::kBounds[i], cumulative);
  }
  out += fmt::format("{}_bucket{{{},le=\"+Inf\"}} {}\n", name, labels, h.count);
  out += fmt::format("{}_sum{{{}}} {}\n{}_count{{{}}} {}\n", name, labels, h.sum, name, labels, h.count);
}

}  // namespace

std::string to_prometheus(const MetricsSnapshot& s) {
  std::string out;
  const std::string bus = fmt::format("bus=\"{}\"", escape(s.name));
  counter(out, "natbus_published_total", "JetStream publishes sent", bus, s.publish.published);
  counter(out, "natbus_publish_acked_total", "PubAcks received (duplicates included)", bus, s.publish.acked);
  counter(out, "natbus_publish_duplicates_total", "publishes the server or dedupe_window found to be duplicates", bus,
          s.publish.duplicates);
  counter(out, "natbus_publish_failed_total", "publishes that failed (error, timeout, no stream)", bus, s.publish.failed);
  out += fmt::format(
      "# HELP natbus_publish_in_flight publishes waiting for their PubAck\n# TYPE natbus_publish_in_flight gauge\n"
      "natbus_publish_in_flight{{{}}} {}\n",
      bus, s.publish.in_flight);
  out += "# HELP natbus_publish_ack_seconds time from publish to PubAck\n# TYPE natbus_publish_ack_seconds histogram\n";
  histogram(out, "natbus_publish_ack_seconds", bus, s.publish.ack_seconds);
  out += "# HELP natbus_acknowledgements_total acknowledgements sent, by kind\n# TYPE natbus_acknowledgements_total counter\n";
  for (const auto& [kind, v] :
       {std::pair{"ack", s.acks}, std::pair{"nak", s.naks}, std::pair{"term", s.terms}, std::pair{"in_progress", s.in_progress}}) {
    out += fmt::format("natbus_acknowledgements_total{{{},kind=\"{}\"}} {}\n", bus, kind, v);
  }
  if (s.subscriptions.empty()) return out;
  struct Family {
    const char* name;
    const char* type;
    const char* help;
  };
  const Family families[] = {{"natbus_delivered_total", "counter", "messages handed to the subscription's handler"},
                             {"natbus_redelivered_total", "counter", "deliveries after the first (JetStream redeliveries)"},
                             {"natbus_handler_errors_total", "counter", "handlers that threw"},
                             {"natbus_handlers_in_flight", "gauge", "handlers running now"},
                             {"natbus_dropped_total", "counter", "messages dropped because the subscription's queue was full"},
                             {"natbus_handler_seconds", "histogram", "handler duration"}};
  for (const auto& f : families) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name, f.help, f.name, f.type);
    for (const auto& sub : s.subscriptions) {
      const std::string labels = fmt::format("{},subject=\"{}\",stream=\"{}\",durable=\"{}\",queue=\"{}\"", bus, escape(sub.subject),
                                             escape(sub.stream), escape(sub.durable), escape(sub.queue));
      const std::string_view name = f.name;
      if (name == "natbus_delivered_total") out += fmt::format("{}{{{}}} {}\n", name, labels, sub.delivered);
      if (name == "natbus_redelivered_total") out += fmt::format("{}{{{}}} {}\n", name, labels, sub.redelivered);
      if (name == "natbus_handler_errors_total") out += fmt::format("{}{{{}}} {}\n", name, labels, sub.handler_errors);
      if (name == "natbus_handlers_in_flight") out += fmt::format("{}{{{}}} {}\n", name, labels, sub.in_flight);
      if (name == "natbus_dropped_total") out += fmt::format("{}{{{}}} {}\n", name, labels, sub.dropped);
      if (name == "natbus_handler_seconds") histogram(out, name, labels, sub.handler_seconds);
    }
  }
  return out;
}

}  // namespace natbus
