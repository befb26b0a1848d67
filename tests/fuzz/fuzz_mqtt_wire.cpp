// libFuzzer target: the batched connection's MQTT parser
// (agent/source/mqtt_wire.cpp) on arbitrary bytes from a "broker", fed in
// pieces of arbitrary sizes as a socket delivers them, under either protocol
// version and a small maximum packet size. It must never crash, never return
// or keep more bytes than it was given, and stay failed once it fails; a
// PUBLISH, SUBACK, UNSUBACK or acknowledgement it returns must come back
// identical after encoding it again and parsing that.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "agent/source/mqtt_wire.hpp"
#include "fuzz_check.hpp"

namespace {

using namespace meter;
using namespace meter::agent::mqtt_wire;

std::string variable_integer(std::size_t value) {
  std::string out;
  do {
    auto digit = static_cast<unsigned char>(value % 128);
    value /= 128;
    if (value > 0) digit |= 0x80;
    out.push_back(static_cast<char>(digit));
  } while (value > 0);
  return out;
}

void put_u16(std::string& out, std::uint16_t value) {
  out.push_back(static_cast<char>(value >> 8));
  out.push_back(static_cast<char>(value & 0xFF));
}

std::string packet(int first_byte, const std::string& body) {
  return std::string(1, static_cast<char>(first_byte)) + variable_integer(body.size()) + body;
}

// The packet in its plainest form (no properties, MQTT 5 property length 0).
std::optional<std::string> encode_again(int version, const Packet& parsed) {
  std::string body;
  if (const auto* publish = std::get_if<Publish>(&parsed)) {
    put_u16(body, static_cast<std::uint16_t>(publish->topic.size()));
    body += publish->topic;
    if (publish->qos > 0) put_u16(body, publish->packet_id);
    if (version == kMqtt5) body.push_back(0);
    body += publish->payload;
    return packet(
        0x30 | (publish->dup ? 0x08 : 0) | (publish->qos << 1) | (publish->retain ? 1 : 0), body);
  }
  if (const auto* suback = std::get_if<Suback>(&parsed)) {
    put_u16(body, suback->packet_id);
    if (version == kMqtt5) body.push_back(0);
    for (int code : suback->reason_codes) body.push_back(static_cast<char>(code));
    return packet(0x90, body);
  }
  if (const auto* unsuback = std::get_if<Unsuback>(&parsed)) {
    put_u16(body, unsuback->packet_id);
    if (version == kMqtt5) body.push_back(0);
    for (int code : unsuback->reason_codes) body.push_back(static_cast<char>(code));
    return packet(0xB0, body);
  }
  if (const auto* ack = std::get_if<Acknowledgement>(&parsed)) {
    put_u16(body, ack->packet_id);
    return packet((ack->type << 4) | (ack->type == 6 ? 0x02 : 0x00), body);
  }
  return std::nullopt;
}

bool same(const Packet& a, const Packet& b) {
  if (a.index() != b.index()) return false;
  if (const auto* x = std::get_if<Publish>(&a)) {
    const auto& y = std::get<Publish>(b);
    return x->topic == y.topic && x->payload == y.payload && x->qos == y.qos &&
           x->retain == y.retain && x->dup == y.dup && x->packet_id == y.packet_id;
  }
  if (const auto* x = std::get_if<Suback>(&a)) {
    const auto& y = std::get<Suback>(b);
    return x->packet_id == y.packet_id && x->reason_codes == y.reason_codes;
  }
  if (const auto* x = std::get_if<Unsuback>(&a)) {
    const auto& y = std::get<Unsuback>(b);
    return x->packet_id == y.packet_id && x->reason_codes == y.reason_codes;
  }
  if (const auto* x = std::get_if<Acknowledgement>(&a)) {
    const auto& y = std::get<Acknowledgement>(b);
    return x->type == y.type && x->packet_id == y.packet_id;
  }
  return true;
}

void check_encodes_again(int version, std::size_t max_packet_size, const Packet& parsed) {
  const auto again = encode_again(version, parsed);
  if (!again) return;
  // The plain form is never longer than what was parsed, so it fits too.
  FUZZ_CHECK(again->size() <= max_packet_size);
  Parser parser(version, max_packet_size);
  parser.feed(*again);
  auto reparsed = parser.next();
  FUZZ_CHECK(reparsed.ok());
  FUZZ_CHECK(reparsed->has_value());
  FUZZ_CHECK(same(parsed, **reparsed));
  FUZZ_CHECK(parser.buffered() == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  // The first byte: the version (bit 7) and the piece size; the second: the
  // maximum packet size. The rest is the stream.
  const int version = (data[0] & 0x80) != 0 ? kMqtt5 : kMqtt311;
  const std::size_t piece = 1 + data[0] % 64;
  const std::size_t max_packet_size = 2 + data[1] * 4;
  const std::string_view stream(reinterpret_cast<const char*>(data + 2), size - 2);
  Parser parser(version, max_packet_size);
  std::size_t fed = 0;
  std::size_t taken = 0;
  bool failed = false;
  while (fed < stream.size()) {
    const auto part = stream.substr(fed, piece);
    parser.feed(part);
    fed += part.size();
    FUZZ_CHECK(parser.buffered() <= fed);
    for (;;) {
      auto next = parser.next();
      if (!next) {
        failed = true;
        break;
      }
      if (!*next) break;
      if (const auto* publish = std::get_if<Publish>(&**next)) {
        taken += publish->topic.size() + publish->payload.size();
        FUZZ_CHECK(taken <= fed);
        FUZZ_CHECK(!publish->topic.empty());
        FUZZ_CHECK(publish->qos == 0 || publish->qos == 1);
        FUZZ_CHECK((publish->qos == 1) == (publish->packet_id != 0));
      }
      check_encodes_again(version, max_packet_size, **next);
    }
    if (failed) {
      // Stays failed, whatever follows.
      const std::size_t kept = parser.buffered();
      parser.feed(stream.substr(fed));
      FUZZ_CHECK(!parser.next().ok());
      FUZZ_CHECK(parser.buffered() == kept);
      return 0;
    }
  }
  FUZZ_CHECK(parser.buffered() <= fed);
  return 0;
}
