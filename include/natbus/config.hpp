// natbus configuration: NatsConfig mirrors the Python library's NatsConfig, field for field and
// default for default, followed by the options a C++ service adds.
//
//   natbus::NatsConfig cfg{
//       .server = "127.0.0.1:4222", .username = "nats-user", .password = "changeme",
//       .name = "orders-svc", .stream_create = true, .stream_name = "TEST_STREAM",
//       .stream_subjects = {"test.stream"}, .manual_ack = true};
//
// Designated initializers must follow declaration order. NatsConfig is validated when a NatsBus
// is constructed; a bad value throws natbus::ConfigError naming the field.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace natbus {

/// Where a new consumer starts (Python: "all", "last", "new", "by_start_sequence", ...).
enum class DeliverPolicy { all, last, new_, by_start_sequence, by_start_time, last_per_subject };

enum class StorageType { file, memory };
enum class RetentionPolicy { limits, interest, work_queue };
enum class DiscardPolicy { old, new_ };

/// Stream settings used when natbus creates the stream (NatsConfig::stream_create).
/// Zero or -1 means "server default / unlimited".
struct StreamOptions {
  StorageType storage = StorageType::file;  ///< file or memory
  int replicas = 1;                         ///< copies in a cluster (1, 3 or 5)
  std::chrono::nanoseconds max_age{0};      ///< oldest message kept (0: unlimited)
  std::int64_t max_bytes = -1;              ///< bytes kept (-1: unlimited)
  std::int64_t max_msgs = -1;               ///< messages kept (-1: unlimited)
  std::int64_t max_msgs_per_subject = -1;   ///< messages kept per subject (-1: unlimited)
  std::int32_t max_msg_size = -1;           ///< largest message accepted (-1: the server's limit)
  /// Server-side Nats-Msg-Id deduplication window (0: the server's default, 2 minutes).
  std::chrono::nanoseconds duplicate_window{0};
  RetentionPolicy retention = RetentionPolicy::limits;  ///< limits, interest or work_queue
  DiscardPolicy discard = DiscardPolicy::old;           ///< what goes when a limit is reached
};

/// TLS settings. A `tls://` server URL, or any file set here, turns TLS on. The server's
/// certificate is verified unless skip_verify is set (tests only).
struct TlsOptions {
  std::string ca_file{};            ///< PEM file of trusted CAs (default: the system's)
  std::string cert_file{};          ///< client certificate chain (PEM), with key_file
  std::string key_file{};           ///< client private key (PEM)
  std::string expected_hostname{};  ///< name to verify instead of the URL's host
  bool skip_verify = false;         ///< do not verify the server certificate (never in production)
};

/// How long the server waits before it redelivers a message whose handler threw (natbus naks it
/// with a delay): `initial` after the first failed delivery, times `multiplier` after each
/// further one, at most `max`. A failing dependency then costs a few deliveries a minute, not a
/// redelivery storm. `initial` 0: a plain nak, redelivered at once. multiplier 1: a fixed delay.
struct RetryBackoff {
  std::chrono::milliseconds initial{250};  ///< the first delay
  std::chrono::milliseconds max{30000};    ///< the longest delay
  double multiplier = 2.0;                 ///< growth factor per redelivery
};

/// Everything natbus is configured with; the same fields (and NATS_* environment variables) as the Python library. Validated by NatsBus's
/// constructor.
struct NatsConfig {
  // ---- The Python library's fields, in its order and with its defaults ----

  /// One URL or a comma-separated list. "host:port" means "nats://host:port"; schemes nats and
  /// tls (all entries alike). ws/wss are rejected: cnats has no WebSocket transport.
  std::string server = "nats://127.0.0.1:4222";
  std::string username{};  ///< user name (with password)
  std::string password{};  ///< password (never logged or put in error messages)
  /// Connection name shown by the server (and in natbus' logs).
  std::string name{};
  /// Wait between two rounds of reconnect attempts over the servers (plus reconnect_jitter).
  std::chrono::milliseconds reconnect_time_wait{1000};
  /// Rounds of reconnect attempts (each tries every known server once) before the bus gives up
  /// for good (status() closed, consumers end); -1: forever.
  int max_reconnect_attempts = 60;
  /// Create the stream on connect (tolerates "already exists" when it matches).
  bool stream_create = false;
  std::string stream_name{};                   ///< the stream natbus creates or checks at connect (empty: none)
  std::vector<std::string> stream_subjects{};  ///< subjects of that stream
  /// Add the missing stream_subjects to an existing stream.
  bool stream_update_subjects = false;
  /// Default deliver (queue) group of push consumers; empty: none.
  std::string queue_group{};
  /// Create/reconcile durables and bind to them by name (see PushOptions::bind).
  bool bind = true;
  /// Default for handlers: true = the handler acks; false = natbus acks after it returns.
  bool manual_ack = true;
  DeliverPolicy deliver_policy = DeliverPolicy::new_;  ///< where new durables start
  std::chrono::milliseconds ack_wait{30000};           ///< redelivery delay of unacked messages
  int max_ack_pending = 1024;                          ///< unacked messages the server sends a consumer at most
  /// Drop a publish whose x-correlation-id was published within this window (0: off).
  std::chrono::milliseconds dedupe_window{0};
  /// Timeout of JetStream management calls (stream and consumer info, create, delete...).
  std::chrono::milliseconds js_api_timeout{5000};

  // ---- Beyond the Python library ----

  std::string token{};             ///< token authentication
  std::string credentials_file{};  ///< NATS .creds file (JWT + NKey seed)
  TlsOptions tls{};                ///< TLS settings (used when the server URL is tls:// or tls.enabled)
  /// Used when natbus creates the stream.
  StreamOptions stream{};
  std::chrono::milliseconds connect_timeout{2000};  ///< limit of one connection attempt
  /// The client pings this often; after max_pings_out unanswered pings it reconnects.
  std::chrono::milliseconds ping_interval{20000};
  int max_pings_out = 3;  ///< unanswered pings before the connection counts as lost
  /// Try the servers in the order given (default: shuffled, as the official clients do). Servers
  /// the cluster announces are tried after the configured ones.
  bool no_randomize = false;
  /// Up to this much random extra wait between reconnect rounds, so that many clients do not
  /// come back at the same instant; 0 <= jitter <= reconnect_time_wait. -1: automatic (100 ms,
  /// at most half of reconnect_time_wait).
  std::chrono::milliseconds reconnect_jitter{-1};
  /// Unused since natbus opens a fresh connection itself on every reconnect (nothing is buffered
  /// for a dead connection: publishes wait for the next one, up to publish_timeout). Kept so
  /// that existing configurations compile; still validated.
  int reconnect_buffer_size = 8 * 1024 * 1024;
  /// How long a publish waits for its PubAck.
  std::chrono::milliseconds publish_timeout{5000};
  /// publish_async window: at most this many PubAcks outstanding; more suspends the publisher.
  int max_pending_publishes = 4096;
  /// close(): how long in-flight handlers and acks may take before the connection closes anyway.
  std::chrono::milliseconds drain_timeout{30000};
  /// How long push_subscribe retries a durable that is still bound to a vanished subscriber.
  std::chrono::milliseconds bind_timeout{30000};
  /// Largest payload natbus decompresses (gzip); larger is a DecodeError, not an OOM.
  std::size_t max_decompressed_size = std::size_t{64} * 1024 * 1024;
  /// Prefix of natbus' reply subjects (set it when account permissions require it).
  std::string inbox_prefix = "_INBOX";
  /// JetStream domain (empty: none); selects "$JS.<domain>.API".
  std::string js_domain{};
  /// Where a message goes when its handler fails on its last delivery (max_deliver), with its
  /// original headers plus x-dead-letter-reason and friends (empty: nowhere).
  std::string dead_letter_subject{};
  /// Delay before a message whose handler threw is redelivered (subscriptions may override).
  RetryBackoff retry_backoff{};
  /// Explicit delays instead, like the server's consumer `backoff`: the n-th failed delivery
  /// waits retry_backoff_steps[n-1] (the last one repeats). Empty: retry_backoff.
  std::vector<std::chrono::milliseconds> retry_backoff_steps{};
  /// Check for JetStream on connect (and create the stream). false: core NATS only.
  bool jetstream = true;

  /// Reads NATS_SERVER, NATS_USERNAME, NATS_PASSWORD, NATS_TOKEN, NATS_CREDS, NATS_NAME,
  /// NATS_STREAM_NAME, NATS_QUEUE_GROUP (with `prefix` instead of "NATS_") over `base`.
  [[nodiscard]] static NatsConfig from_env(NatsConfig base, std::string_view prefix = "NATS_");
};

/// Checks every field; throws ConfigError naming the first bad one.
void validate(const NatsConfig& config);

/// The normalized server list: "nats://host:port" / "tls://host:port" entries. Throws
/// ConfigError for an empty list, an unknown or mixed scheme, ws/wss, or a bad port.
[[nodiscard]] std::vector<std::string> parse_server_list(std::string_view servers);

/// A URL with any user:password@ part replaced by "***@" (for logs and messages).
[[nodiscard]] std::string redact_url(std::string_view url);

/// Human-readable config with secrets redacted (password, token, URL user info).
[[nodiscard]] std::string to_string(const NatsConfig& config);
std::ostream& operator<<(std::ostream& os, const NatsConfig& config);

[[nodiscard]] std::string_view to_string(DeliverPolicy p) noexcept;
[[nodiscard]] std::string_view to_string(StorageType s) noexcept;

}  // namespace natbus
