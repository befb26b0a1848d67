// discover's rules (no I/O): which shipped preset fits a message seen on the
// broker, the `metrics:` and `mappings:` block those presets need, and the
// topics none of them decodes, grouped by shape. agent/cli/discover_command.cpp
// listens; this decides.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/util/result.hpp"

namespace meter::agent {

struct SeenMessage {
  std::string topic;
  std::string payload;
};

// Topics of one shape: each level holding a digit is a '+' ("tele/plug1/SENSOR"
// and "tele/plug2/SENSOR" are "tele/+/SENSOR").
struct TopicShape {
  std::string shape;
  std::size_t messages = 0;
  std::string example_topic;
  std::string example_payload;
  std::string reason;  // why nothing fits (the first example's)
};

struct PresetFit {
  std::string preset;
  std::size_t messages = 0;
  std::string example_topic;
};

struct DiscoverReport {
  std::vector<PresetFit> presets;  // in the order of the mappings block
  std::string config_block;        // `metrics:` and `mappings:`, ready to paste
  std::vector<TopicShape> unfitted;
};

// The preset a message looks like it comes from, or "" (by topic shape and
// payload: e.g. a JSON `ENERGY` object on tele/<t>/SENSOR is tasmota).
std::string recognize_preset(const SeenMessage& message);

// The shape a topic is grouped by.
std::string topic_shape(const std::string& topic);

// Recognizes the messages, builds the config block, and checks it: every
// message is decoded with the presets from `presets_dir`; those no mapping
// takes or that fail to decode are `unfitted`.
Result<DiscoverReport> discover(const std::vector<SeenMessage>& messages,
                                const std::string& presets_dir);

}  // namespace meter::agent
