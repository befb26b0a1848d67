// A message exactly as the source received it, and what the normalizer made
// of one that produced no measurement. The raw log (common/buffer/) keeps both.
#pragma once

#include <cstdint>
#include <string>

namespace meter {

// A message exactly as received.
struct RawMessage {
  std::string topic;
  std::string payload;  // bytes, not necessarily text
  int qos = 1;
  bool retained = false;
  bool dup = false;              // MQTT DUP: a redelivery of a message the broker sent before
  std::int64_t received_ms = 0;  // gateway clock, UTC
};

// A raw message that produced no measurement, and why.
struct RawOutcome {
  std::int64_t seq = 0;
  std::string kind;  // "decode_error" | "ignored"
  std::string reason;
};

// Outcomes of one kind with the same topic and reason, counted (`meter-agent status`).
struct RawOutcomeGroup {
  std::string topic;
  std::string reason;
  std::int64_t count = 0;
  std::int64_t last_seq = 0;
};

}  // namespace meter
