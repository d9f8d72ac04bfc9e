// The server's answers about streams, consumers and the account (NatsBus::create_stream,
// stream_info, consumer_info, streams, consumers, account_info), and purge_stream's options.
// They carry the whole answer as JSON, so this header includes nlohmann's.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "natbus/config.hpp"

namespace natbus {

/// Stream state as the server reports it.
struct StreamInfo {
  std::string name{};                       ///< stream name
  std::vector<std::string> subjects{};      ///< subjects it captures
  StorageType storage = StorageType::file;  ///< file or memory
  int replicas = 1;                         ///< copies in a cluster
  std::uint64_t messages = 0;               ///< messages stored
  std::uint64_t bytes = 0;                  ///< bytes stored
  std::uint64_t first_sequence = 0;         ///< first sequence still stored
  std::uint64_t last_sequence = 0;          ///< last sequence stored
  int consumers = 0;                        ///< consumers on the stream
  std::string leader{};                     ///< cluster leader (empty outside a cluster)
  nlohmann::json raw{};                     ///< the whole server answer
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
