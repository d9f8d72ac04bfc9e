// BlockingBus: a NatsBus on a LoopThread, with blocking and future-returning calls for any
// thread. Each call posts one Submission to the loop (LoopThread::submit); the NatsBus object
// is created, used and destroyed on the loop thread only.
#include "natbus/blocking_bus.hpp"

#include <condition_variable>
#include <mutex>

#include <fmt/format.h>

#include "bus/bus_core.hpp"
#include "message/msg_impl.hpp"
#include "natbus/error.hpp"

namespace natbus {
namespace detail {

void detach_from_bus(ReceivedMessage& m) noexcept {
  MsgImpl* impl = impl_of(m);
  if (impl == nullptr || impl->bus == nullptr) return;
  impl->bus->ack_release();  // the loop's object: released here, on the loop
  impl->bus = nullptr;
}

class PublishPermits {
 public:
  explicit PublishPermits(std::size_t limit) noexcept : free_(limit) {}
  void acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return free_ > 0; });
    --free_;
  }
  void release() noexcept {
    {
      std::lock_guard lock(mu_);
      ++free_;
    }
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::size_t free_;
};

namespace {

/// Gives its permit back when destroyed (with the submitted work, on the loop; or unrun).
class Permit {
 public:
  explicit Permit(std::shared_ptr<PublishPermits> p) noexcept : p_(std::move(p)) {}
  Permit(Permit&& o) noexcept = default;
  Permit& operator=(Permit&&) = delete;
  Permit(const Permit&) = delete;
  Permit& operator=(const Permit&) = delete;
  ~Permit() {
    if (p_) p_->release();
  }

 private:
  std::shared_ptr<PublishPermits> p_;
};

Task<PubAck> publish_on(NatsBus& bus, BusMessage msg) { co_return co_await bus.publish(std::move(msg)); }

Task<void> publish_core_on(NatsBus& bus, BusMessage msg) { co_await bus.publish_core(std::move(msg)); }

Task<ReceivedMessage> request_on(NatsBus& bus, BusMessage msg, std::chrono::milliseconds timeout) {
  ReceivedMessage reply = co_await bus.request(std::move(msg), timeout);
  detach_from_bus(reply);
  co_return reply;
}

Task<void> flush_on(NatsBus& bus, std::chrono::milliseconds timeout) { co_await bus.flush(timeout); }

Task<void> connect_on(std::unique_ptr<NatsBus>& slot, NatsConfig config) {
  slot = std::make_unique<NatsBus>(std::move(config));
  co_await slot->connect();
}

Task<void> close_on(std::unique_ptr<NatsBus>& slot) {
  if (!slot) co_return;
  co_await slot->close();
  slot.reset();
}

}  // namespace
}  // namespace detail

BlockingBus::BlockingBus(NatsConfig config, const LoopThreadOptions& options) : loop_(options) {
  const auto limit = static_cast<std::size_t>(std::max(1, config.max_pending_publishes));
  permits_ = std::make_shared<detail::PublishPermits>(limit);
  try {
    loop_.submit([this, c = std::move(config)]() mutable { return detail::connect_on(bus_, std::move(c)); }).get();
  } catch (...) {
    // A bus that failed to connect is destroyed on its loop before the thread stops.
    loop_.submit([this]() { return detail::close_on(bus_); }).wait();
    throw;
  }
}

BlockingBus::~BlockingBus() {
  if (loop_.on_loop_thread()) return;  // destroyed by its own work: LoopThread's destructor copes
  try {
    close();
  } catch (...) {  // a destructor must not throw; close() logged what went wrong
  }
  loop_.stop();
}

NatsBus* BlockingBus::checked(const char* operation) {
  if (loop_.on_loop_thread()) {
    throw Error(errc::invalid_argument,
                "called on the bus's own loop thread, where it would wait for itself: use the NatsBus (co_await) there",
                ErrorContext{.operation = std::string("BlockingBus::") + operation});
  }
  if (!bus_ || loop_.stopped()) throw ClosedError("the bus is closed", ErrorContext{.operation = std::string("BlockingBus::") + operation});
  return bus_.get();
}

PubAck BlockingBus::publish(BusMessage msg) {
  NatsBus* bus = checked("publish");
  return loop_.submit([bus, m = std::move(msg)]() mutable { return detail::publish_on(*bus, std::move(m)); }).get();
}

std::future<PubAck> BlockingBus::publish_async(BusMessage msg) {
  NatsBus* bus = checked("publish_async");
  permits_->acquire();
  detail::Permit permit(permits_);
  return loop_.submit([bus, m = std::move(msg), p = std::move(permit)]() mutable { return detail::publish_on(*bus, std::move(m)); });
}

void BlockingBus::publish_core(BusMessage msg) {
  NatsBus* bus = checked("publish_core");
  loop_.submit([bus, m = std::move(msg)]() mutable { return detail::publish_core_on(*bus, std::move(m)); }).get();
}

ReceivedMessage BlockingBus::request(BusMessage msg, std::chrono::milliseconds timeout) {
  NatsBus* bus = checked("request");
  return loop_.submit([bus, m = std::move(msg), timeout]() mutable { return detail::request_on(*bus, std::move(m), timeout); }).get();
}

void BlockingBus::flush(std::chrono::milliseconds timeout) {
  NatsBus* bus = checked("flush");
  loop_.submit([bus, timeout]() { return detail::flush_on(*bus, timeout); }).get();
}

void BlockingBus::close() {
  if (loop_.stopped()) return;
  if (loop_.on_loop_thread()) {
    throw Error(errc::invalid_argument, "called on the bus's own loop thread: co_await the NatsBus's close() there",
                ErrorContext{.operation = "BlockingBus::close"});
  }
  loop_.submit([this]() { return detail::close_on(bus_); }).get();
}

ConnectionStatus BlockingBus::status() {
  if (loop_.stopped()) return ConnectionStatus::closed;
  return loop_.submit([this]() -> Task<ConnectionStatus> { co_return bus_ ? bus_->status() : ConnectionStatus::closed; }).get();
}

MetricsSnapshot BlockingBus::metrics() {
  NatsBus* bus = checked("metrics");
  return loop_.submit([bus]() -> Task<MetricsSnapshot> { co_return bus->metrics(); }).get();
}

}  // namespace natbus
