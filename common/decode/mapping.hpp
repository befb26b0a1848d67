// mapping: decodes one MQTT message (topic + payload) into readings as sent,
// the way its mapping in the config says (format seed_json, json or plain;
// config/presets/README.md documents the syntax). Nothing is converted here
// but a reading's `scale` (exact decimal arithmetic, common/decode/scale.hpp):
// values stay the exact text of the payload, units and timestamps are
// normalize's job.
#pragma once

#include <string_view>

#include "common/config/config.hpp"
#include "common/decode/decode.hpp"
#include "common/util/result.hpp"

namespace meter {

// A message that holds no reading is "ignored" (Decoded::ignored_reason), not
// an error, when it is what meters publish besides readings: an empty payload,
// a non-reading word ("online", "nan", ...), or a JSON document in which none
// of the mapping's values is present (Zigbee2MQTT's null for an attribute
// not yet reported, a Tasmota SENSOR message of a device without an energy
// monitor, Shelly's other status components). A payload that is not JSON where
// JSON is expected, a value of the wrong type, or a reading whose device id,
// unit or timestamp cannot be found is a decode error. Never throws.
Result<Decoded> decode_message(const MappingConfig& mapping, std::string_view topic,
                               std::string_view payload);

}  // namespace meter
