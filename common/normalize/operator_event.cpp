#include "common/normalize/operator_event.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <map>
#include <stdexcept>
#include <tuple>

#include "common/decode/json.hpp"
#include "common/normalize/canonicalize.hpp"
#include "common/normalize/event_id.hpp"
#include "common/normalize/timestamp.hpp"
#include "common/util/utf8.hpp"

namespace meter {
namespace {

std::string sha256_hex(std::string_view input) {
  EventId digest{};
  unsigned int length = 0;
  if (EVP_Digest(input.data(), input.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length != digest.size()) {
    throw std::runtime_error("sha256 failed in OpenSSL");
  }
  return to_hex(digest);
}

void append_optional_decimal(std::string& out, const std::optional<Decimal>& value) {
  if (!value) {
    out += "null";
    return;
  }
  // A string, not a JSON number: the text is the exact canonical decimal.
  append_json_string(out, value->text());
}

// A canonical timestamp text, as format_timestamp writes it.
Result<std::int64_t> canonical_timestamp(const JsonValue* value, std::string_view key) {
  const std::string* text = value != nullptr ? value->string() : nullptr;
  if (text == nullptr) return Error{std::string(key) + " is missing or not a string"};
  auto parsed = parse_timestamp(*text, TimestampFormat::rfc3339);
  if (!parsed || format_timestamp(parsed->ms) != *text) {
    return Error{std::string(key) + " is not a canonical timestamp"};
  }
  return parsed->ms;
}

Result<std::optional<Decimal>> canonical_decimal(const JsonValue* value, std::string_view key) {
  if (value == nullptr) return Error{std::string(key) + " is missing"};
  if (value->is_null()) return std::optional<Decimal>();
  const std::string* text = value->string();
  if (text == nullptr) return Error{std::string(key) + " is not a string or null"};
  auto parsed = Decimal::parse(*text);
  if (!parsed || parsed->text() != *text) {
    return Error{std::string(key) + " is not a canonical decimal"};
  }
  return std::optional<Decimal>(std::move(*parsed));
}

Result<std::string> text_member(const JsonValue& object, std::string_view key) {
  const JsonValue* value = object.find(key);
  if (value == nullptr || value->string() == nullptr) {
    return Error{std::string(key) + " is missing or not a string"};
  }
  return *value->string();
}

}  // namespace

std::string OperatorEvent::identity() const {
  std::string input(kMeterReplaced);
  input += '\0';
  input += device_id;
  input += '\0';
  input += metric_type;
  input += '\0';
  input += format_timestamp(at_ms);
  return sha256_hex(input);
}

bool OperatorEvent::same_content(const OperatorEvent& other) const {
  return std::tie(device_id, metric_type, at_ms, old_final, new_initial, withdrawn) ==
         std::tie(other.device_id, other.metric_type, other.at_ms, other.old_final,
                  other.new_initial, other.withdrawn);
}

std::string encode_operator_event(const OperatorEvent& event) {
  // Keys in byte order, no spaces: one text per event, easy to compare.
  std::string out = "{\"at\":\"";
  out += format_timestamp(event.at_ms);
  out += "\",\"device_id\":";
  append_json_string(out, event.device_id);
  out += ",\"event\":\"";
  out += kMeterReplaced;
  out += "\",\"identity\":\"";
  out += event.identity();
  out += "\",\"metric_type\":";
  append_json_string(out, event.metric_type);
  out += ",\"new_initial\":";
  append_optional_decimal(out, event.new_initial);
  out += ",\"old_final\":";
  append_optional_decimal(out, event.old_final);
  out += ",\"recorded_at\":\"";
  out += format_timestamp(event.recorded_ms);
  out += "\",\"withdrawn\":";
  out += event.withdrawn ? "true" : "false";
  out += '}';
  return out;
}

Result<OperatorEvent> parse_operator_event(std::string_view payload) {
  auto parsed = parse_json(payload);
  if (!parsed) return Error{"not JSON: " + parsed.error().message};
  if (parsed->object() == nullptr) return Error{"not a JSON object"};
  const JsonValue& object = *parsed;
  auto kind = text_member(object, "event");
  if (!kind) return kind.error();
  if (*kind != kMeterReplaced) return Error{"unknown event '" + *kind + "'"};
  OperatorEvent event;
  auto device = text_member(object, "device_id");
  if (!device) return device.error();
  if (auto problem = device_id_problem(*device)) return Error{"device_id " + *problem};
  event.device_id = std::move(*device);
  auto metric = text_member(object, "metric_type");
  if (!metric) return metric.error();
  if (metric->empty()) return Error{"metric_type is empty"};
  event.metric_type = std::move(*metric);
  auto at = canonical_timestamp(object.find("at"), "at");
  if (!at) return at.error();
  event.at_ms = *at;
  auto recorded = canonical_timestamp(object.find("recorded_at"), "recorded_at");
  if (!recorded) return recorded.error();
  event.recorded_ms = *recorded;
  auto old_final = canonical_decimal(object.find("old_final"), "old_final");
  if (!old_final) return old_final.error();
  event.old_final = std::move(*old_final);
  auto new_initial = canonical_decimal(object.find("new_initial"), "new_initial");
  if (!new_initial) return new_initial.error();
  event.new_initial = std::move(*new_initial);
  const JsonValue* withdrawn = object.find("withdrawn");
  if (withdrawn == nullptr || withdrawn->boolean() == nullptr) {
    return Error{"withdrawn is missing or not true/false"};
  }
  event.withdrawn = *withdrawn->boolean();
  auto identity = text_member(object, "identity");
  if (!identity) return identity.error();
  if (*identity != event.identity()) {
    return Error{"identity does not match device_id, metric_type and at"};
  }
  return event;
}

std::vector<OperatorEvent> latest_operator_events(const std::vector<OperatorEvent>& records) {
  std::map<std::string, const OperatorEvent*> latest;
  for (const OperatorEvent& record : records) {
    auto& slot = latest[record.identity()];
    if (slot == nullptr || record.seq >= slot->seq) slot = &record;
  }
  std::vector<OperatorEvent> out;
  out.reserve(latest.size());
  for (const auto& [identity, record] : latest) out.push_back(*record);
  std::sort(out.begin(), out.end(), [](const OperatorEvent& a, const OperatorEvent& b) {
    return std::tie(a.device_id, a.metric_type, a.at_ms) <
           std::tie(b.device_id, b.metric_type, b.at_ms);
  });
  return out;
}

std::optional<std::string> device_id_problem(std::string_view device_id) {
  if (device_id.empty()) return "is empty";
  if (device_id.size() > kMaxDeviceIdBytes) {
    return "is longer than " + std::to_string(kMaxDeviceIdBytes) + " bytes";
  }
  if (!is_valid_utf8(device_id)) return "is not valid UTF-8";
  for (const char c : device_id) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "contains a control character";
  }
  return std::nullopt;
}

}  // namespace meter
