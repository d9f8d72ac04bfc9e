// The server's answers about streams, consumers and the account (NatsBus::create_stream,
// stream_info, consumer_info, streams, consumers, account_info), a stream's whole configuration
// (StreamConfig, for create_stream and update_stream), and purge_stream's options.
// They carry the whole answer as JSON, so this header includes nlohmann's.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "natbus/config.hpp"

namespace natbus {

/// A mirror's or a source's progress (StreamInfo::mirror, StreamInfo::sources).
struct StreamSourceInfo {
  std::string name{};                 ///< the stream read from
  std::uint64_t lag = 0;              ///< messages it has that are not copied yet
  std::chrono::nanoseconds active{};  ///< since the last contact with it (-1 ns: none yet)
  std::string error{};                ///< the server's text when copying fails (empty: none)
};

/// Stream state as the server reports it.
struct StreamInfo {
  std::string name{};                        ///< stream name
  std::vector<std::string> subjects{};       ///< subjects it captures
  StorageType storage = StorageType::file;   ///< file or memory
  int replicas = 1;                          ///< copies in a cluster
  std::uint64_t messages = 0;                ///< messages stored
  std::uint64_t bytes = 0;                   ///< bytes stored
  std::uint64_t first_sequence = 0;          ///< first sequence still stored
  std::uint64_t last_sequence = 0;           ///< last sequence stored
  int consumers = 0;                         ///< consumers on the stream
  std::string leader{};                      ///< cluster leader (empty outside a cluster)
  std::string description{};                 ///< the stream's description
  bool sealed = false;                       ///< sealed: no message is added or removed any more
  std::optional<StreamSourceInfo> mirror{};  ///< a mirror's progress (empty: not a mirror)
  std::vector<StreamSourceInfo> sources{};   ///< each source's progress
  nlohmann::json raw{};                      ///< the whole server answer (config included)
};

/// Consumer state as the server reports it.
struct ConsumerInfo {
  std::string stream{};                           ///< stream name
  std::string name{};                             ///< consumer name
  bool push = false;                              ///< a push consumer (else pull)
  std::string deliver_subject{};                  ///< push: where the server delivers
  std::string deliver_group{};                    ///< push: the queue group bound to it
  std::string filter_subject{};                   ///< the subject filter (empty: all)
  bool push_bound = false;                        ///< push: a subscriber is bound
  std::uint64_t num_pending = 0;                  ///< messages not yet delivered
  std::uint64_t num_ack_pending = 0;              ///< delivered, waiting for an ack
  std::uint64_t num_redelivered = 0;              ///< redelivered messages waiting for an ack
  std::uint64_t num_waiting = 0;                  ///< pull: requests waiting on the server
  std::uint64_t delivered_consumer_sequence = 0;  ///< last consumer sequence delivered
  std::uint64_t delivered_stream_sequence = 0;    ///< last stream sequence delivered
  std::uint64_t ack_floor_stream_sequence = 0;    ///< stream sequence below which all is acked
  nlohmann::json raw{};                           ///< the whole server answer (config included)
};

/// Where a mirror or a source starts reading another stream (StreamConfig::mirror, StreamConfig::sources).
/// Plain views, like StreamConfig.
struct StreamSource {
  std::string_view name{};            ///< the stream read from
  std::string_view filter_subject{};  ///< only its messages on this subject (empty: all)
  std::uint64_t start_sequence = 0;   ///< from this sequence (0: its first); not with start_time
  /// From the first message stored at or after this time; not with start_sequence.
  std::optional<std::chrono::system_clock::time_point> start_time{};
  std::string_view domain{};  ///< the JetStream domain it lives in (empty: this one)
};

/// A stream's whole configuration as nats-server 2.9 takes it, for create_stream(config) and
/// update_stream(config). Every field left alone is the server's default, so update_stream
/// sets what is given and resets the rest: start from what the stream has (stream_info) when
/// only one setting should change. Plain views and spans (trivially destructible), so a braced
/// temporary is safe inside co_await under g++ 12; what they point to must live until the call
/// returns its Task (build arrays first):
///   const std::string subjects[] = {"orders.>"};
///   co_await bus.update_stream({.name = "ORDERS", .subjects = subjects, .max_age = 24h});
struct StreamConfig {
  std::string_view name{};                              ///< the stream (no '.', '*', '>', '/', '\\' or space)
  std::span<const std::string> subjects{};              ///< what it captures (none for a mirror)
  std::string_view description{};                       ///< free text, shown by the tools
  RetentionPolicy retention = RetentionPolicy::limits;  ///< limits, interest or work_queue
  DiscardPolicy discard = DiscardPolicy::old;           ///< what goes when a limit is reached
  /// With DiscardPolicy::new_ and max_msgs_per_subject: refuse a new message on a full subject
  /// (instead of only when the whole stream is full).
  bool discard_new_per_subject = false;
  std::int64_t max_msgs = -1;              ///< messages kept (-1: unlimited)
  std::int64_t max_bytes = -1;             ///< bytes kept (-1: unlimited)
  std::chrono::nanoseconds max_age{0};     ///< oldest message kept (0: unlimited)
  std::int64_t max_msgs_per_subject = -1;  ///< messages kept per subject (-1: unlimited)
  std::int32_t max_msg_size = -1;          ///< largest message accepted (-1: the server's limit)
  std::int32_t max_consumers = -1;         ///< consumers allowed (-1: unlimited)
  /// Nats-Msg-Id deduplication window (0: the server's default, 2 minutes; at most max_age).
  std::chrono::nanoseconds duplicate_window{0};
  StorageType storage = StorageType::file;        ///< file or memory (fixed once created)
  int replicas = 1;                               ///< copies in a cluster, 1 to 5
  bool no_ack = false;                            ///< publishes get no acknowledgement
  std::string_view placement_cluster{};           ///< the cluster to place it in (empty: any)
  std::span<const std::string> placement_tags{};  ///< servers it may live on carry these tags
  std::optional<StreamSource> mirror{};           ///< copy this one stream (no subjects, no sources)
  std::span<const StreamSource> sources{};        ///< copy these streams into this one
  bool sealed = false;                            ///< update only: no more adds or removals, ever
  bool deny_delete = false;                       ///< messages cannot be deleted (purge still can)
  bool deny_purge = false;                        ///< the stream cannot be purged
  bool allow_rollup = false;                      ///< Nats-Rollup headers may replace a subject or all
  bool allow_direct = false;                      ///< direct get (get_message without the API)
  bool mirror_direct = false;                     ///< a mirror answers direct gets for its origin
  /// Re-publish each stored message from `republish_source` (a subject filter) to
  /// `republish_destination` (core NATS), with only its headers when `republish_headers_only`.
  std::string_view republish_source{};
  std::string_view republish_destination{};  ///< see republish_source
  bool republish_headers_only = false;       ///< see republish_source
};

/// purge_stream(stream, options): which messages go. Plain views (safe as a temporary in co_await).
struct PurgeOptions {
  std::string_view subject{};  ///< only messages on this subject (wildcards allowed; empty: all)
  std::uint64_t keep = 0;      ///< keep this many of the newest (0: none); not with `sequence`
  std::uint64_t sequence = 0;  ///< remove everything below this sequence (0: no bound); not with `keep`
};

/// The account's JetStream limits (-1: unlimited).
struct AccountLimits {
  std::int64_t max_memory = -1;                ///< bytes of memory storage
  std::int64_t max_storage = -1;               ///< bytes of file storage
  std::int64_t max_streams = -1;               ///< streams
  std::int64_t max_consumers = -1;             ///< consumers
  std::int64_t max_ack_pending = -1;           ///< unacknowledged messages per consumer
  std::int64_t memory_max_stream_bytes = -1;   ///< largest memory stream
  std::int64_t storage_max_stream_bytes = -1;  ///< largest file stream
  bool max_bytes_required = false;             ///< streams must set max_bytes
};

/// The account's JetStream usage and limits (NatsBus::account_info).
struct AccountInfo {
  std::uint64_t memory = 0;      ///< bytes in memory streams
  std::uint64_t storage = 0;     ///< bytes in file streams
  std::uint64_t streams = 0;     ///< streams
  std::uint64_t consumers = 0;   ///< consumers
  std::string domain{};          ///< JetStream domain (empty: none)
  AccountLimits limits{};        ///< what the account may use
  std::uint64_t api_total = 0;   ///< API requests the account made
  std::uint64_t api_errors = 0;  ///< of those, the ones that failed
  nlohmann::json raw{};          ///< the whole server answer
};

}  // namespace natbus
