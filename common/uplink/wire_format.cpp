#include "common/uplink/wire_format.hpp"

#include "common/decode/json.hpp"
#include "common/normalize/timestamp.hpp"

namespace meter {
namespace {

// The central refuses a decode_error over 4096 characters; the agent's reasons
// are shorter, but a reason quoting a payload could grow: cut it (on a UTF-8
// boundary) rather than have the raw event rejected.
constexpr std::size_t kMaxDecodeErrorBytes = 4000;

std::string cut_utf8(const std::string& text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  std::size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end) + "...";
}

void append_raw(std::string& out, const UplinkRawEvent& raw) {
  const auto& m = raw.message;
  out += "{\"seq\":";
  out += std::to_string(raw.seq);
  out += ",\"topic\":";
  append_json_string(out, m.topic);
  out += ",\"payload\":\"";
  out += base64_encode(m.payload);
  out += "\",\"qos\":";
  out += std::to_string(m.qos);
  out += m.retained ? ",\"retained\":true" : ",\"retained\":false";
  out += m.dup ? ",\"dup\":true" : ",\"dup\":false";
  out += ",\"received_at\":\"";
  out += format_timestamp(m.received_ms);
  out += "\",\"decode_error\":";
  if (raw.decode_error) {
    append_json_string(out, cut_utf8(*raw.decode_error, kMaxDecodeErrorBytes));
  } else {
    out += "null";
  }
  out += '}';
}

void append_measurement(std::string& out, const UplinkMeasurement& record,
                        std::string_view buffer_id, std::string_view protocol_version) {
  const auto& m = record.measurement;
  out += "{\"event_id\":\"";
  out += m.event_id;
  out += "\",\"device_id\":";
  append_json_string(out, m.device_id);
  out += ",\"metric_type\":";
  append_json_string(out, m.metric_type);
  out += ",\"timestamp\":\"";
  out += format_timestamp(m.timestamp_ms);
  out += "\",\"value\":";
  out += m.value;  // canonical decimal text is a JSON number
  out += ",\"unit\":";
  append_json_string(out, m.unit);
  out += ",\"delta\":";
  out += m.delta ? *m.delta : std::string("null");
  if (protocol_version != kProtocolVersion1) {
    // Version 2: the reading the delta is measured from; null with the delta.
    out += ",\"delta_from\":";
    if (m.delta && m.delta_from_ms) {
      out += '"';
      out += format_timestamp(*m.delta_from_ms);
      out += '"';
    } else {
      out += "null";
    }
  }
  out += ",\"flags\":[";
  bool first = true;
  for (auto name : flag_names(m.flags)) {  // sorted by name
    if (!first) out += ',';
    first = false;
    out += '"';
    out += name;
    out += '"';
  }
  out += "],\"revision\":";
  out += std::to_string(m.revision);
  out += ",\"raw\":{\"buffer_id\":\"";
  out += buffer_id;
  out += "\",\"seq\":";
  out += std::to_string(m.raw_seq);
  out += "}}";
}

const JsonValue* member(const JsonValue& object, std::string_view key) {
  return object.object() ? object.find(key) : nullptr;
}

std::optional<std::int64_t> integer_of(const JsonValue* value) {
  if (value == nullptr || value->number() == nullptr) return std::nullopt;
  const auto& text = value->number()->text;
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::size_t i = text[0] == '-' ? 1 : 0;
  if (i == text.size()) return std::nullopt;
  for (std::size_t j = i; j < text.size(); ++j) {
    if (text[j] < '0' || text[j] > '9') return std::nullopt;
  }
  return std::stoll(text);
}

std::string string_of(const JsonValue* value) {
  return value != nullptr && value->string() != nullptr ? *value->string() : std::string();
}

// Fills `results[index]` from one outcome object when `matches` accepts it.
template <class Matches>
void read_outcomes(const JsonValue* array, std::vector<RecordResult>& results, Matches matches) {
  if (array == nullptr || array->array() == nullptr) return;
  for (const auto& entry : *array->array()) {
    const auto index = integer_of(member(entry, "index"));
    if (!index || *index < 0 || *index >= static_cast<std::int64_t>(results.size())) continue;
    auto& result = results[static_cast<std::size_t>(*index)];
    if (result.outcome != RecordOutcome::missing) continue;  // the first answer counts
    if (!matches(entry, static_cast<std::size_t>(*index))) continue;
    const auto outcome = string_of(member(entry, "outcome"));
    if (outcome == "stored" || outcome == "duplicate" || outcome == "superseded") {
      result.outcome = RecordOutcome::confirmed;
    } else if (outcome == "rejected") {
      result.outcome = RecordOutcome::rejected;
      result.reason = string_of(member(entry, "reason"));
      if (result.reason.empty()) result.reason = "unspecified";
      result.detail = string_of(member(entry, "detail"));
    }
  }
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == bytes.size()) {
    const unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::size_t encoded_size(const UplinkRawEvent& raw) {
  std::string out;
  append_raw(out, raw);
  return out.size() + 1;
}

std::size_t encoded_size(const UplinkMeasurement& measurement) {
  std::string out;
  append_measurement(out, measurement, "00000000-0000-0000-0000-000000000000", kProtocolVersion);
  return out.size() + 1;
}

std::size_t estimated_size(const UplinkRawEvent& raw) {
  return 190 + raw.message.topic.size() + (raw.message.payload.size() + 2) / 3 * 4 +
         (raw.decode_error ? raw.decode_error->size() : 0);
}

std::size_t estimated_size(const UplinkMeasurement& measurement) {
  const auto& m = measurement.measurement;
  return 340 + m.device_id.size() + m.metric_type.size() + m.value.size() + m.unit.size() +
         (m.delta ? m.delta->size() : 0) + 24 * flag_names(m.flags).size();
}

std::string encode_batch(const UplinkEnvelope& envelope, const UplinkBatch& batch) {
  std::string out;
  out.reserve(256 + batch.raw_events.size() * 300 + batch.measurements.size() * 330);
  out += "{\"protocol_version\":\"";
  out += envelope.protocol_version;
  out += "\",\"gateway_id\":";
  append_json_string(out, envelope.gateway_id);
  out += ",\"buffer_id\":";
  append_json_string(out, envelope.buffer_id);
  out += ",\"sent_at\":\"";
  out += format_timestamp(envelope.sent_at_ms);
  out += "\",\"backlog\":{\"records\":";
  out += std::to_string(batch.backlog_records);
  out += ",\"oldest_received_at\":";
  if (batch.oldest_received_ms) {
    out += '"';
    out += format_timestamp(*batch.oldest_received_ms);
    out += '"';
  } else {
    out += "null";
  }
  out += "},\"raw_events\":[";
  for (std::size_t i = 0; i < batch.raw_events.size(); ++i) {
    if (i != 0) out += ',';
    append_raw(out, batch.raw_events[i]);
  }
  out += "],\"measurements\":[";
  for (std::size_t i = 0; i < batch.measurements.size(); ++i) {
    if (i != 0) out += ',';
    append_measurement(out, batch.measurements[i], envelope.buffer_id, envelope.protocol_version);
  }
  out += "]}";
  return out;
}

Result<IngestResponse> parse_ingest_response(std::string_view body, const UplinkBatch& batch,
                                             std::string_view protocol_version) {
  auto parsed = parse_json(body);
  if (!parsed) return Error{"the central's response is not JSON: " + parsed.error().message};
  if (parsed->object() == nullptr) return Error{"the central's response is not a JSON object"};
  if (string_of(parsed->find("protocol_version")) != protocol_version) {
    return Error{"the central's response has protocol_version other than \"" +
                 std::string(protocol_version) + "\" (the version sent)"};
  }
  IngestResponse response;
  response.raw_events.resize(batch.raw_events.size());
  response.measurements.resize(batch.measurements.size());
  read_outcomes(parsed->find("raw_events"), response.raw_events,
                [&](const JsonValue& entry, std::size_t index) {
                  return integer_of(member(entry, "seq")) == batch.raw_events[index].seq;
                });
  read_outcomes(parsed->find("measurements"), response.measurements,
                [&](const JsonValue& entry, std::size_t index) {
                  const auto& sent = batch.measurements[index].measurement;
                  return string_of(member(entry, "event_id")) == sent.event_id &&
                         integer_of(member(entry, "revision")) == sent.revision;
                });
  return response;
}

IngestError parse_ingest_error(std::string_view body) {
  IngestError error;
  auto parsed = parse_json(body);
  if (!parsed || parsed->object() == nullptr) return error;
  error.error = string_of(parsed->find("error"));
  error.detail = string_of(parsed->find("detail"));
  return error;
}

}  // namespace meter
