// Subscribing: the options of push_subscribe, pull_subscribe and ephemeral_push_subscribe
// resolved against NatsConfig and validated (InvalidArgument naming the field), then the
// consumer ensured and its subscription started; and the message streams over them.
#include <algorithm>

#include <fmt/format.h>

#include "base/validate.hpp"
#include "bus/bus_core.hpp"
#include "bus/ordered.hpp"
#include "jetstream/consumer.hpp"
#include "jetstream/stream.hpp"
#include "message/msg_impl.hpp"

namespace natbus {

using detail::BusCore;
using detail::core_of;
using detail::Ref;

namespace {

struct Resolved {
  detail::ConsumerSpec spec;
  bool manual_ack = true;
  int max_concurrency = 1;
  std::string dead_letter_subject;
  RetryBackoff retry_backoff{};
  std::vector<std::chrono::milliseconds> retry_backoff_steps;
};

/// The redelivery backoff of a subscription: its own, else NatsConfig's; validated, copied.
template <class O>
void resolve_backoff(const NatsConfig& cfg, std::string_view op, const O& o, Resolved& r) {
  if constexpr (requires { o.retry_backoff; }) {
    r.retry_backoff = o.retry_backoff.value_or(cfg.retry_backoff);
    if (!o.retry_backoff_steps.empty()) {
      r.retry_backoff_steps.assign(o.retry_backoff_steps.begin(), o.retry_backoff_steps.end());
    } else if (!o.retry_backoff.has_value()) {
      r.retry_backoff_steps = cfg.retry_backoff_steps;
    }
  } else {
    r.retry_backoff = cfg.retry_backoff;
    r.retry_backoff_steps = cfg.retry_backoff_steps;
  }
  if (auto p = detail::backoff_problem(r.retry_backoff, r.retry_backoff_steps); !p.empty()) {
    throw InvalidArgument(fmt::format("retry_backoff: {}", p), ErrorContext{.operation = std::string(op)});
  }
}

template <class O>
void resolve_dead_letter(const NatsConfig& cfg, std::string_view op, const O& o, Resolved& r) {
  const std::string_view dlq = o.dead_letter_subject.empty() ? std::string_view(cfg.dead_letter_subject) : o.dead_letter_subject;
  if (!dlq.empty()) detail::check(op, "dead_letter_subject", dlq, detail::subject_problem(dlq, false));
  r.dead_letter_subject = std::string(dlq);
}

/// Durations the server and natbus' timers compute with (pull expiry, heartbeats).
void require_at_most_a_day(std::string_view op, std::string_view field, std::chrono::milliseconds d) {
  if (d > std::chrono::hours(24)) {
    throw InvalidArgument(fmt::format("{} must be at most 24 h, got {} ms", field, d.count()), ErrorContext{.operation = std::string(op)});
  }
}

template <class Rep, class Period>
void require_positive(std::string_view op, std::string_view field, std::chrono::duration<Rep, Period> d) {
  if (d.count() <= 0) {
    throw InvalidArgument(
        fmt::format("{} must be positive, got {} ms", field, std::chrono::duration_cast<std::chrono::milliseconds>(d).count()),
        ErrorContext{.operation = std::string(op)});
  }
}

void require_concurrency(std::string_view op, int n) {
  if (n < 1) throw InvalidArgument(fmt::format("max_concurrency must be >= 1, got {}", n), ErrorContext{.operation = std::string(op)});
}

/// The options every consumer kind shares, resolved against NatsConfig and validated.
template <class O>
void common_spec(const NatsConfig& cfg, std::string_view op, std::string_view subject, const O& o, Resolved& r) {
  auto& s = r.spec;
  s.op = std::string(op);
  detail::check(op, "subject", subject, detail::subject_problem(subject, true));
  s.filter_subject = std::string(subject);
  if (!o.stream.empty()) detail::check(op, "stream", o.stream, detail::name_problem(o.stream));
  s.stream = std::string(o.stream);
  r.manual_ack = o.manual_ack.value_or(cfg.manual_ack);
  s.ack_wait = o.ack_wait.value_or(cfg.ack_wait);
  require_positive(op, "ack_wait", s.ack_wait);
  require_concurrency(op, o.max_concurrency);
  r.max_concurrency = o.max_concurrency;
  resolve_backoff(cfg, op, o, r);
}

void resolve_durable_fields(const NatsConfig& cfg, std::string_view op, std::string_view durable, const auto& o, Resolved& r) {
  auto& s = r.spec;
  if (durable.empty()) {
    throw InvalidArgument("durable is required (name the consumer, e.g. {.durable = \"orders\"})",
                          ErrorContext{.operation = std::string(op)});
  }
  detail::check(op, "durable", durable, detail::name_problem(durable));
  s.durable = std::string(durable);
  s.reconcile = o.bind.value_or(cfg.bind);
  s.deliver_policy = o.deliver_policy.value_or(cfg.deliver_policy);
  s.max_ack_pending = o.max_ack_pending.value_or(cfg.max_ack_pending);
  if (s.max_ack_pending == 0 || s.max_ack_pending < -1) {
    throw InvalidArgument(fmt::format("max_ack_pending must be positive or -1, got {}", s.max_ack_pending),
                          ErrorContext{.operation = std::string(op)});
  }
  s.max_deliver = o.max_deliver.value_or(-1);
  if (s.max_deliver == 0 || s.max_deliver < -1) {
    throw InvalidArgument(fmt::format("max_deliver must be >= 1 or -1 (unlimited), got {}", s.max_deliver),
                          ErrorContext{.operation = std::string(op)});
  }
  s.start_sequence = o.start_sequence;
  s.start_time = o.start_time;
  if (s.deliver_policy == DeliverPolicy::by_start_sequence && s.start_sequence == 0) {
    throw InvalidArgument("deliver_policy by_start_sequence needs start_sequence >= 1", ErrorContext{.operation = std::string(op)});
  }
  if (s.deliver_policy == DeliverPolicy::by_start_time && s.start_time.time_since_epoch().count() == 0) {
    throw InvalidArgument("deliver_policy by_start_time needs start_time", ErrorContext{.operation = std::string(op)});
  }
}

/// PushOptions/PullOptions::consumer, validated and copied into the spec. `batch` and
/// `expires` are the pull requests natbus will send (0: push).
void resolve_settings(std::string_view op, const ConsumerSettings& c, bool push, int batch, std::chrono::milliseconds expires,
                      Resolved& r) {
  auto& s = r.spec;
  const auto bad = [op](std::string message) { return InvalidArgument(std::move(message), ErrorContext{.operation = std::string(op)}); };
  for (const auto d : c.backoff) {
    if (d.count() <= 0 || d > std::chrono::hours(24)) {
      throw bad(fmt::format("consumer.backoff: every delay must be positive and at most 24 h, got {} ms", d.count()));
    }
  }
  if (!c.backoff.empty() && (s.max_deliver == -1 || static_cast<std::size_t>(s.max_deliver) <= c.backoff.size())) {
    throw bad(
        fmt::format("consumer.backoff has {} delays: max_deliver must be greater than that, got {}", c.backoff.size(), s.max_deliver));
  }
  s.backoff.assign(c.backoff.begin(), c.backoff.end());
  if (c.inactive_threshold.count() < 0)
    throw bad(fmt::format("consumer.inactive_threshold must not be negative, got {} ms", c.inactive_threshold.count()));
  if (c.inactive_threshold.count() > 0) s.inactive_threshold = c.inactive_threshold;
  s.description = std::string(c.description);
  s.headers_only = c.headers_only;
  s.memory_storage = c.memory_storage;
  if (c.replicas < 0 || c.replicas > 5) throw bad(fmt::format("consumer.replicas must be 0 (the stream's) to 5, got {}", c.replicas));
  s.replicas = c.replicas;
  if (c.sample_frequency < 0 || c.sample_frequency > 100) {
    throw bad(fmt::format("consumer.sample_frequency is a percentage (0-100), got {}", c.sample_frequency));
  }
  s.sample_frequency = c.sample_frequency;
  if (!push && c.rate_limit_bps > 0) throw bad("consumer.rate_limit_bps is for push consumers; a pull consumer's pace is its requests");
  s.rate_limit_bps = c.rate_limit_bps;
  if (push && (c.max_waiting != 0 || c.max_request_batch != 0 || c.max_request_expires.count() != 0 || c.max_request_max_bytes != 0)) {
    throw bad("consumer.max_waiting and max_request_* are for pull consumers");
  }
  if (c.max_waiting < 0 || c.max_request_batch < 0 || c.max_request_expires.count() < 0 || c.max_request_max_bytes < 0) {
    throw bad("consumer.max_waiting and max_request_* must not be negative");
  }
  // natbus' own pull requests must fit the limits, or the server refuses every one of them.
  if (c.max_waiting == 1) throw bad("consumer.max_waiting must be at least 2 (natbus keeps two pull requests waiting)");
  if (c.max_request_batch > 0 && batch > c.max_request_batch) {
    throw bad(fmt::format("batch ({}) is above consumer.max_request_batch ({})", batch, c.max_request_batch));
  }
  if (c.max_request_expires.count() > 0 && expires > c.max_request_expires) {
    throw bad(fmt::format("expires ({} ms) is above consumer.max_request_expires ({} ms)", expires.count(), c.max_request_expires.count()));
  }
  s.max_waiting = c.max_waiting;
  s.max_request_batch = c.max_request_batch;
  s.max_request_expires = c.max_request_expires;
  s.max_request_max_bytes = c.max_request_max_bytes;
}

detail::DeliverySettings delivery_of(Resolved& r) {
  detail::DeliverySettings s;
  s.manual_ack = r.manual_ack;
  s.max_concurrency = r.max_concurrency;
  s.dead_letter_subject = std::move(r.dead_letter_subject);
  s.retry_backoff = r.retry_backoff;
  s.retry_backoff_steps = std::move(r.retry_backoff_steps);
  return s;
}

Task<Subscription> push_impl(Ref<BusCore> bus, std::unique_ptr<detail::HandlerBase> handler, Resolved r) {
  bus->ensure_open(r.spec.op);
  r.spec.stream = co_await bus->js().resolve_stream(r.spec.stream, r.spec.filter_subject, r.spec.op);
  if (!r.spec.durable.empty()) {
    if (detail::SubCore* existing = bus->find_durable(r.spec.stream, r.spec.durable)) {
      // A second handler on the same durable would never see a message (the server delivers
      // each once to the deliver subject): say so instead of keeping the first one silently.
      ErrorContext ctx;
      ctx.operation = r.spec.op;
      ctx.stream = r.spec.stream;
      ctx.durable = r.spec.durable;
      throw InvalidArgument(fmt::format("durable \"{}\" on stream \"{}\" is already subscribed in this process{}: keep the first "
                                        "Subscription (raise its max_concurrency for more parallel handlers) or close it first",
                                        r.spec.durable, r.spec.stream,
                                        existing->queue().empty() ? std::string() : fmt::format(" (queue \"{}\")", existing->queue())),
                            std::move(ctx));
    }
  }
  detail::DeliverySettings settings = delivery_of(r);
  auto core = Ref<detail::PushCore>::adopt(new detail::PushCore(bus.get(), std::move(handler), std::move(settings)));
  co_await core->start(std::move(r.spec));
  co_return Subscription(detail::kLibrary, core.get());
}

Task<Subscription> pull_impl(Ref<BusCore> bus, std::unique_ptr<detail::HandlerBase> handler, Resolved r, int batch,
                             std::chrono::milliseconds expires, std::chrono::milliseconds heartbeat) {
  bus->ensure_open(r.spec.op);
  r.spec.stream = co_await bus->js().resolve_stream(r.spec.stream, r.spec.filter_subject, r.spec.op);
  detail::DeliverySettings settings = delivery_of(r);
  auto core = Ref<detail::PullCore>::adopt(new detail::PullCore(bus.get(), std::move(handler), std::move(settings)));
  co_await core->start(std::move(r.spec), batch, expires, heartbeat);
  co_return Subscription(detail::kLibrary, core.get());
}

Task<PullSubscription> pull_fetch_impl(Ref<BusCore> bus, Resolved r, int batch, std::chrono::milliseconds expires,
                                       std::chrono::milliseconds heartbeat) {
  bus->ensure_open(r.spec.op);
  r.spec.stream = co_await bus->js().resolve_stream(r.spec.stream, r.spec.filter_subject, r.spec.op);
  auto core = Ref<detail::PullCore>::adopt(new detail::PullCore(bus.get(), nullptr));  // fetch: the caller acks
  co_await core->start(std::move(r.spec), batch, expires, heartbeat);
  co_return PullSubscription(detail::kLibrary, core.get());
}

Resolved resolve_pull(const NatsConfig& cfg, std::string_view op, std::string_view subject, const PullOptions& o,
                      std::chrono::milliseconds& heartbeat) {
  Resolved r;
  common_spec(cfg, op, subject, o, r);
  resolve_durable_fields(cfg, op, o.durable, o, r);
  resolve_dead_letter(cfg, op, o, r);
  r.spec.push = false;
  if (o.batch < 1) throw InvalidArgument(fmt::format("batch must be >= 1, got {}", o.batch), ErrorContext{.operation = std::string(op)});
  require_positive(op, "expires", o.expires);
  require_at_most_a_day(op, "expires", o.expires);
  require_at_most_a_day(op, "idle_heartbeat", o.idle_heartbeat);
  if (o.idle_heartbeat.count() < 0) {
    throw InvalidArgument(fmt::format("idle_heartbeat must not be negative, got {} ms", o.idle_heartbeat.count()),
                          ErrorContext{.operation = std::string(op)});
  }
  resolve_settings(op, o.consumer, false, o.batch, o.expires, r);
  heartbeat = o.idle_heartbeat;
  if (heartbeat.count() == 0 && o.expires >= std::chrono::milliseconds(200)) {
    heartbeat = std::min<std::chrono::milliseconds>(std::chrono::seconds(5), o.expires * 2 / 5);
  }
  if (heartbeat.count() > 0 && heartbeat * 2 > o.expires) {
    throw InvalidArgument(
        fmt::format("idle_heartbeat ({} ms) must be at most half of expires ({} ms)", heartbeat.count(), o.expires.count()),
        ErrorContext{.operation = std::string(op)});
  }
  return r;
}

}  // namespace

Task<Subscription> NatsBus::push_subscribe_erased(std::string_view subject, detail::HandlerPtr owned, const PushOptions& o) {
  std::unique_ptr<detail::HandlerBase> handler(owned.release());
  const std::string_view op = "push_subscribe";
  BusCore& core = core_of(core_, op);
  const NatsConfig& cfg = core.config();
  Resolved r;
  common_spec(cfg, op, subject, o, r);
  resolve_durable_fields(cfg, op, o.durable, o, r);
  resolve_dead_letter(cfg, op, o, r);
  r.spec.push = true;
  r.spec.queue = std::string(o.queue.value_or(std::string_view(cfg.queue_group)));
  if (!r.spec.queue.empty()) detail::check(op, "queue", r.spec.queue, detail::queue_problem(r.spec.queue));
  if (o.idle_heartbeat.count() < 0) {
    throw InvalidArgument(fmt::format("idle_heartbeat must not be negative, got {} ms", o.idle_heartbeat.count()),
                          ErrorContext{.operation = std::string(op)});
  }
  require_at_most_a_day(op, "idle_heartbeat", o.idle_heartbeat);
  if (o.flow_control && o.idle_heartbeat.count() == 0) {
    throw InvalidArgument("flow_control needs idle_heartbeat", ErrorContext{.operation = std::string(op)});
  }
  if (!r.spec.queue.empty() && (o.flow_control || o.idle_heartbeat.count() > 0)) {
    throw InvalidArgument("a queue group cannot use idle_heartbeat or flow_control", ErrorContext{.operation = std::string(op)});
  }
  r.spec.idle_heartbeat = o.idle_heartbeat;
  r.spec.flow_control = o.flow_control;
  resolve_settings(op, o.consumer, true, 0, std::chrono::milliseconds(0), r);
  r.spec.bind_timeout = o.bind_timeout.value_or(cfg.bind_timeout);
  if (r.spec.bind_timeout.count() < 0) {
    throw InvalidArgument(fmt::format("bind_timeout must not be negative, got {} ms", r.spec.bind_timeout.count()),
                          ErrorContext{.operation = std::string(op)});
  }
  return push_impl(Ref<BusCore>(&core), std::move(handler), std::move(r));
}

Task<Subscription> NatsBus::pull_subscribe_erased(std::string_view subject, detail::HandlerPtr owned, const PullOptions& o) {
  std::unique_ptr<detail::HandlerBase> handler(owned.release());
  const std::string_view op = "pull_subscribe";
  BusCore& core = core_of(core_, op);
  std::chrono::milliseconds heartbeat{0};
  Resolved r = resolve_pull(core.config(), op, subject, o, heartbeat);
  return pull_impl(Ref<BusCore>(&core), std::move(handler), std::move(r), o.batch, o.expires, heartbeat);
}

Task<PullSubscription> NatsBus::pull_subscribe(std::string_view subject, const PullOptions& o) {
  const std::string_view op = "pull_subscribe";
  BusCore& core = core_of(core_, op);
  std::chrono::milliseconds heartbeat{0};
  Resolved r = resolve_pull(core.config(), op, subject, o, heartbeat);
  return pull_fetch_impl(Ref<BusCore>(&core), std::move(r), o.batch, o.expires, heartbeat);
}

Task<Subscription> NatsBus::ephemeral_subscribe_erased(std::string_view subject, detail::HandlerPtr owned, const EphemeralOptions& o) {
  std::unique_ptr<detail::HandlerBase> handler(owned.release());
  const std::string_view op = "ephemeral_push_subscribe";
  BusCore& core = core_of(core_, op);
  const NatsConfig& cfg = core.config();
  Resolved r;
  common_spec(cfg, op, subject, o, r);
  r.spec.push = true;
  r.spec.reconcile = false;
  r.spec.deliver_policy = o.deliver_policy;
  r.spec.max_ack_pending = cfg.max_ack_pending;
  require_positive(op, "inactive_threshold", o.inactive_threshold);
  r.spec.inactive_threshold = o.inactive_threshold;
  if (!o.queue.empty()) detail::check(op, "queue", o.queue, detail::queue_problem(o.queue));
  r.spec.queue = std::string(o.queue);
  if (r.spec.deliver_policy == DeliverPolicy::by_start_sequence || r.spec.deliver_policy == DeliverPolicy::by_start_time) {
    throw InvalidArgument("ephemeral consumers support deliver policies all, last, new and last_per_subject",
                          ErrorContext{.operation = std::string(op)});
  }
  return push_impl(Ref<BusCore>(&core), std::move(handler), std::move(r));
}

namespace {

Task<Subscription> ordered_impl(Ref<BusCore> bus, detail::HandlerPtr owned, detail::ConsumerSpec spec) {
  std::unique_ptr<detail::HandlerBase> handler(owned.release());
  bus->ensure_open(spec.op);
  spec.stream = co_await bus->js().resolve_stream(spec.stream, spec.filter_subject, spec.op);
  auto core = Ref<detail::OrderedCore>::adopt(new detail::OrderedCore(bus.get(), std::move(handler)));
  co_await core->start(std::move(spec));
  co_return Subscription(detail::kLibrary, core.get());
}

}  // namespace

namespace detail {

ConsumerSpec ordered_spec(std::string_view op, std::string_view subject, const OrderedOptions& o) {
  ConsumerSpec s;
  s.op = std::string(op);
  check(op, "subject", subject, subject_problem(subject, true));
  s.filter_subject = std::string(subject);
  if (!o.stream.empty()) check(op, "stream", o.stream, name_problem(o.stream));
  s.stream = std::string(o.stream);
  s.deliver_policy = o.deliver_policy;
  s.start_sequence = o.start_sequence;
  s.start_time = o.start_time;
  const auto bad = [op](std::string message) { return InvalidArgument(std::move(message), ErrorContext{.operation = std::string(op)}); };
  if (s.deliver_policy == DeliverPolicy::by_start_sequence && s.start_sequence == 0) {
    throw bad("deliver_policy by_start_sequence needs start_sequence >= 1");
  }
  if (s.deliver_policy != DeliverPolicy::by_start_sequence && s.start_sequence != 0) {
    throw bad(fmt::format("start_sequence {} needs deliver_policy by_start_sequence", s.start_sequence));
  }
  if (s.deliver_policy == DeliverPolicy::by_start_time && s.start_time.time_since_epoch().count() == 0) {
    throw bad("deliver_policy by_start_time needs start_time");
  }
  if (s.deliver_policy != DeliverPolicy::by_start_time && s.start_time.time_since_epoch().count() != 0) {
    throw bad("start_time needs deliver_policy by_start_time");
  }
  if (o.idle_heartbeat < std::chrono::milliseconds(100) || o.idle_heartbeat > std::chrono::hours(24)) {
    throw bad(fmt::format("idle_heartbeat must be between 100 ms and 24 h, got {} ms", o.idle_heartbeat.count()));
  }
  s.idle_heartbeat = o.idle_heartbeat;
  s.headers_only = o.headers_only;
  return s;
}

Task<OrderedStream> open_ordered(Ref<BusCore> bus, ConsumerSpec spec, std::size_t buffer) {
  auto ch = new_channel(*bus, spec.op, buffer);
  // Built before the co_await: no temporaries with destructors inside it (GCC 12).
  Task<MessageStream> opening = make_stream(ordered_impl(bus, stream_handler(ch), std::move(spec)), ch);
  MessageStream stream = co_await std::move(opening);
  const auto* oc = static_cast<const OrderedCore*>(sub_core_of(stream.subscription()));
  co_return OrderedStream{std::move(stream), oc->initial_pending()};
}

}  // namespace detail

Task<MessageStream> NatsBus::ordered_messages(std::string_view subject, const OrderedOptions& options, std::size_t buffer) {
  const std::string_view op = "ordered_messages";
  BusCore& core = core_of(core_, op);
  auto ch = detail::new_channel(core, op, buffer);
  return detail::make_stream(ordered_impl(Ref<BusCore>(&core), detail::stream_handler(ch), detail::ordered_spec(op, subject, options)), ch);
}

Task<MessageStream> NatsBus::messages(std::string_view subject, const PushOptions& options, std::size_t buffer) {
  detail::require_manual_ack(options.manual_ack, "messages");
  auto ch = detail::new_channel(core_of(core_, "messages"), "messages", buffer);
  PushOptions o = options;
  o.manual_ack = true;
  o.max_concurrency = 1;
  return detail::make_stream(push_subscribe_erased(subject, detail::stream_handler(ch), o), ch);
}

Task<MessageStream> NatsBus::pull_messages(std::string_view subject, const PullOptions& options, std::size_t buffer) {
  detail::require_manual_ack(options.manual_ack, "pull_messages");
  auto ch = detail::new_channel(core_of(core_, "pull_messages"), "pull_messages", buffer);
  PullOptions o = options;
  o.manual_ack = true;
  o.max_concurrency = 1;
  return detail::make_stream(pull_subscribe_erased(subject, detail::stream_handler(ch), o), ch);
}

}  // namespace natbus
