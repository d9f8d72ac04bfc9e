// The JetStream publishes of one bus that are in flight: the window that bounds them
// (NatsConfig::max_pending_publishes), the wait for all of them to settle, the client-side
// dedupe window, and the subjects a stream has acknowledged (their publishes take the Mux's
// fast lane). Loop thread only; the Publisher owns one, the bus' close() waits on it.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "base/util.hpp"
#include "runtime/loop.hpp"
#include "runtime/wait.hpp"

namespace natbus::detail {

class PublishTracker {
 public:
  /// Publishes sent and not settled (PubAck, error or timeout).
  [[nodiscard]] std::size_t in_flight() const noexcept { return in_flight_; }
  /// Where publishes wait for room in the window.
  [[nodiscard]] WaitList& window() noexcept { return window_; }
  /// Where publish_async_complete() and close() wait for in_flight() to reach 0.
  [[nodiscard]] WaitList& all_settled() noexcept { return all_settled_; }
  void sent() noexcept { ++in_flight_; }
  /// One publish settled: the next waiting one may go, and the last one wakes all_settled().
  void settled(Loop* loop) noexcept {
    --in_flight_;
    if (loop == nullptr) return;
    window_.wake_one(*loop);
    if (in_flight_ == 0) all_settled_.wake_all(*loop);
  }
  /// The bus is closing: every waiter wakes (and sees the state).
  void wake_all(Loop& loop) noexcept {
    all_settled_.wake_all(loop);
    window_.wake_all(loop);
  }

  /// Client-side dedupe_window check: true when a publish with `correlation_id` was acknowledged
  /// within `window`. Only acknowledged publishes count: a failed attempt leaves nothing behind,
  /// so its retry goes out.
  bool published_recently(std::string_view correlation_id, std::chrono::nanoseconds window) {
    const auto now = Clock::now();
    if (now - dedupe_swept_ > window) {
      std::erase_if(dedupe_, [&](const auto& kv) { return now - kv.second > window; });
      dedupe_swept_ = now;
    }
    const auto it = dedupe_.find(correlation_id);
    return it != dedupe_.end() && now - it->second <= window;
  }
  /// The server acknowledged a publish with this correlation id (dedupe_window on).
  void remember_published(std::string correlation_id) { dedupe_.insert_or_assign(std::move(correlation_id), Clock::now()); }

  /// True when a stream has acknowledged a publish to `subject` (and no 503 came since).
  [[nodiscard]] bool stream_known(std::string_view subject) const noexcept {
    return stream_subjects_.find(subject) != stream_subjects_.end();
  }
  void learn_stream_subject(std::string_view subject) {
    if (stream_known(subject)) return;
    if (stream_subjects_.size() >= 4096) stream_subjects_.clear();  // bounded: a service publishing to ever-new subjects
    stream_subjects_.emplace(subject);
  }
  /// Forgets every learned subject; returns how many there were.
  std::size_t forget_stream_subjects() noexcept {
    const std::size_t n = stream_subjects_.size();
    stream_subjects_.clear();
    return n;
  }

 private:
  std::size_t in_flight_ = 0;
  WaitList window_;
  WaitList all_settled_;
  std::unordered_map<std::string, Clock::time_point, StringHash, std::equal_to<>> dedupe_;
  Clock::time_point dedupe_swept_{};
  std::unordered_set<std::string, StringHash, std::equal_to<>> stream_subjects_;
};

}  // namespace natbus::detail
