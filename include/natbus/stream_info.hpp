// The server's answers about streams and consumers (NatsBus::create_stream, stream_info,
// consumer_info). They carry the whole answer as JSON, so this header includes nlohmann's.
#pragma once

#include <cstdint>
#include <string>
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

}  // namespace natbus
