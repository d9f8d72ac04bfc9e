// natbus metrics: counters and latency histograms for publishing and per subscription, read
// as a snapshot (NatsBus::metrics()) or as Prometheus text (NatsBus::prometheus_metrics()).
// Recording costs a few increments and two clock reads per message.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace natbus {

/// A latency histogram in seconds with fixed upper bounds (Prometheus style, not cumulative
/// here: counts[i] is the number of observations in (bounds[i-1], bounds[i]], the last entry
/// the observations above the last bound).
struct Histogram {
  /// upper bounds of the buckets, in seconds
  static constexpr std::array<double, 14> kBounds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                  0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   5.0};
  /// observations per bucket (the last: above every bound)
  std::array<std::uint64_t, kBounds.size() + 1> counts{};
  std::uint64_t count = 0;  ///< observations
  double sum = 0;           ///< seconds

  /// Adds one observation.
  void observe(double seconds) noexcept {
    std::size_t i = 0;
    while (i < kBounds.size() && seconds > kBounds[i]) ++i;
    ++counts[i];
    ++count;
    sum += seconds;
  }
  /// The upper bound of the bucket holding quantile q (0..1); +inf past the last bound.
  [[nodiscard]] double quantile_bound(double q) const noexcept;
};

/// JetStream publishing (publish, publish_async and what is built on them).
struct PublishMetrics {
  std::uint64_t published = 0;   ///< sent to the server
  std::uint64_t acked = 0;       ///< PubAck received (duplicates included)
  std::uint64_t duplicates = 0;  ///< PubAck said duplicate (or dedupe_window dropped it)
  std::uint64_t failed = 0;      ///< error, timeout or no stream
  std::uint64_t in_flight = 0;   ///< waiting for their PubAck now
  Histogram ack_seconds;         ///< publish to PubAck
};

/// One subscription (push, pull, stream, core, serve).
struct SubscriptionMetrics {
  std::string subject;               ///< the subject (filter) subscribed to
  std::string stream;                ///< the stream (empty for core subscriptions)
  std::string durable;               ///< the durable consumer (empty: ephemeral or core)
  std::string queue;                 ///< the queue group (empty: none)
  std::uint64_t delivered = 0;       ///< messages handed to the handler
  std::uint64_t redelivered = 0;     ///< of those, deliveries after the first (JetStream)
  std::uint64_t handler_errors = 0;  ///< handlers that threw
  std::uint64_t in_flight = 0;       ///< handlers running now
  /// Messages dropped because the subscription's queue was full (a slow consumer; JetStream
  /// redelivers them after ack_wait, core NATS loses them).
  std::uint64_t dropped = 0;
  Histogram handler_seconds;  ///< handler duration
};

/// A snapshot of a bus's counters (NatsBus::metrics()).
struct MetricsSnapshot {
  std::string name;                                ///< NatsConfig::name
  PublishMetrics publish;                          ///< publishing
  std::uint64_t acks = 0;                          ///< +ACK sent
  std::uint64_t naks = 0;                          ///< -NAK sent (redelivery asked for)
  std::uint64_t terms = 0;                         ///< +TERM sent (never redelivered)
  std::uint64_t in_progress = 0;                   ///< +WPI sent (ack_wait extended)
  std::vector<SubscriptionMetrics> subscriptions;  ///< the live ones
};

/// Prometheus text exposition (version 0.0.4) of a snapshot; metric names start with natbus_.
std::string to_prometheus(const MetricsSnapshot& snapshot);

}  // namespace natbus
