// `meter-agent try`: what one message would become under the config — the
// mapping that takes it, each reading in canonical form with its event_id, or
// the exact reason it is ignored or fails. Reads the config only: no buffer is
// opened, nothing is stored.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "agent/cli/cli.hpp"
#include "common/config/config.hpp"
#include "common/decode/mapping.hpp"
#include "common/model/flags.hpp"
#include "common/normalize/canonicalize.hpp"
#include "common/normalize/event_id.hpp"
#include "common/normalize/timestamp.hpp"
#include "common/util/clock.hpp"
#include "common/util/quote.hpp"

namespace meter::agent {
namespace {

std::string describe_mapping(const Config& config, const MappingConfig& mapping) {
  std::size_t index = 0;
  while (index < config.mappings.size() && &config.mappings[index] != &mapping) ++index;
  std::string text =
      "mapping " + std::to_string(index + 1) + " (topic filter '" + mapping.topic + "'";
  for (const TopicCondition& condition : mapping.when) {
    text += ", when level " + std::to_string(condition.topic_level) + " matches '" +
            condition.pattern + "'";
  }
  if (!mapping.preset.empty()) text += ", preset '" + mapping.preset + "'";
  return text + ")";
}

}  // namespace

int run_try(const CommandLine& command_line, std::ostream& out, std::ostream& err) {
  if (!command_line.try_topic) {
    err << "meter-agent: try needs --topic TOPIC and --payload TEXT or --file FILE\n";
    return kExitUsage;
  }
  if (command_line.try_payload.has_value() == command_line.try_file.has_value()) {
    err << "meter-agent: try needs exactly one of --payload TEXT and --file FILE\n";
    return kExitUsage;
  }
  auto config = load_config(command_line.config_path);
  if (!config) {
    err << "meter-agent: " << config.error().message << "\n";
    return kExitConfig;
  }
  std::string payload;
  if (command_line.try_payload) {
    payload = *command_line.try_payload;
  } else {
    std::ifstream in(*command_line.try_file, std::ios::binary);
    if (!in) {
      err << "meter-agent: cannot read " << *command_line.try_file << "\n";
      return kExitFailure;
    }
    std::ostringstream text;
    text << in.rdbuf();
    payload = text.str();
  }
  std::int64_t received_ms = SystemClock().now_ms();
  if (command_line.received_at) {
    auto parsed = parse_timestamp(*command_line.received_at, TimestampFormat::rfc3339);
    if (!parsed) {
      err << "meter-agent: --received-at: " << parsed.error().message << "\n";
      return kExitUsage;
    }
    received_ms = parsed->ms;
  }

  const std::string& topic = *command_line.try_topic;
  out << "topic: " << quoted_short(topic, 200, NonAscii::escape) << "\n";
  const MappingConfig* mapping = config->mapping_for(topic);
  if (mapping == nullptr) {
    out << "decode error: no mapping matches topic " << quoted_short(topic, 200, NonAscii::escape)
        << "\n";
    return kExitFailure;
  }
  out << describe_mapping(*config, *mapping) << "\n";
  Result<Decoded> decoded = decode_message(*mapping, topic, payload);
  if (!decoded) {
    out << "decode error: " << decoded.error().message << "\n";
    return kExitFailure;
  }
  if (decoded->ignored_reason) {
    out << "ignored: " << *decoded->ignored_reason << "\n";
    return kExitOk;
  }
  int failed = 0;
  std::size_t index = 0;
  for (const DecodedReading& as_sent : decoded->readings) {
    ++index;
    out << "reading " << index << ": ";
    auto reading = canonicalize(as_sent, *config, mapping->timestamp, received_ms);
    if (!reading) {
      out << "error: " << reading.error().message << " (as sent: device_id '" << as_sent.device_id
          << "', metric_type '" << as_sent.metric_type << "', value '" << as_sent.value
          << "', unit '" << as_sent.unit << "')\n";
      ++failed;
      continue;
    }
    out << "device_id '" << reading->device_id << "', metric_type '" << reading->metric_type
        << "', value " << reading->value.text() << " " << reading->unit << " (sent "
        << as_sent.value << " " << as_sent.unit << (as_sent.rounded ? ", rounded by scale" : "")
        << "), timestamp " << reading->timestamp_text() << ", event_id "
        << to_hex(reading->event_id());
    const std::string flags = join_flags(reading->flags, ',');
    if (!flags.empty()) out << ", flags " << flags;
    out << "\n";
  }
  return failed > 0 ? kExitFailure : kExitOk;
}

}  // namespace meter::agent
