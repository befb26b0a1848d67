// The batched connection's MQTT codec (agent/source/mqtt_wire.*): what the
// agent sends, byte for byte against the MQTT 3.1.1 and 5.0 specs; what a
// broker sends, parsed the same however the stream is cut; every malformed or
// unexpected packet an error that sticks.
#include <catch2/catch.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "agent/source/mqtt_wire.hpp"

using namespace meter;
using namespace meter::agent::mqtt_wire;

namespace {

std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (int value : values) out.push_back(static_cast<char>(value));
  return out;
}

// ---- a test-only encoder for the broker's side ----

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

std::string u16(unsigned value) {
  return bytes({static_cast<int>(value >> 8), static_cast<int>(value & 0xFF)});
}

std::string u32(std::uint32_t value) { return u16(value >> 16) + u16(value & 0xFFFF); }

std::string text(std::string_view value) {
  return u16(static_cast<unsigned>(value.size())) + std::string(value);
}

std::string properties(const std::string& list) { return variable_integer(list.size()) + list; }

std::string packet(int first_byte, const std::string& body) {
  return std::string(1, static_cast<char>(first_byte)) + variable_integer(body.size()) + body;
}

std::string publish_packet(int version, const Publish& publish,
                           const std::string& property_list = "") {
  const int first = 0x30 | (publish.dup ? 0x08 : 0) | (publish.qos << 1) | (publish.retain ? 1 : 0);
  std::string body = text(publish.topic);
  if (publish.qos > 0) body += u16(publish.packet_id);
  if (version == kMqtt5) body += properties(property_list);
  return packet(first, body + publish.payload);
}

Publish sample_publish(int index) {
  Publish publish;
  publish.topic = "meters/m" + std::to_string(index) + "/energy";
  publish.payload = "{\"kwh\":" + std::to_string(index) + "}";
  publish.payload.push_back('\0');
  publish.payload.push_back(static_cast<char>(0xFF));
  publish.qos = index % 2;
  publish.retain = index % 3 == 0;
  publish.dup = publish.qos == 1 && index % 5 == 0;
  publish.packet_id = static_cast<std::uint16_t>(publish.qos == 1 ? 1 + index % 65535 : 0);
  return publish;
}

void check_same(const Publish& a, const Publish& b) {
  CHECK(a.topic == b.topic);
  CHECK(a.payload == b.payload);
  CHECK(a.qos == b.qos);
  CHECK(a.retain == b.retain);
  CHECK(a.dup == b.dup);
  CHECK(a.packet_id == b.packet_id);
}

// Everything the parser returns from `stream` fed in pieces of `piece` bytes;
// fails the test on an error.
std::vector<Packet> parse_all(int version, const std::string& stream, std::size_t piece,
                              std::size_t max_packet_size = 1 << 20) {
  Parser parser(version, max_packet_size);
  std::vector<Packet> packets;
  for (std::size_t at = 0; at < stream.size(); at += piece) {
    parser.feed(std::string_view(stream).substr(at, piece));
    for (;;) {
      auto next = parser.next();
      REQUIRE(next.ok());
      if (!*next) break;
      packets.push_back(std::move(**next));
    }
  }
  CHECK(parser.buffered() == 0);
  return packets;
}

Packet parse_one(int version, const std::string& stream) {
  auto packets = parse_all(version, stream, stream.size());
  REQUIRE(packets.size() == 1);
  return packets[0];
}

// The parser's error for `stream`, checked to stick.
std::string parse_error(int version, const std::string& stream,
                        std::size_t max_packet_size = 1 << 20) {
  Parser parser(version, max_packet_size);
  parser.feed(stream);
  for (;;) {
    auto next = parser.next();
    if (!next) {
      const std::string message = next.error().message;
      parser.feed(bytes({0xD0, 0x00}));  // a good PINGRESP changes nothing now
      auto again = parser.next();
      REQUIRE_FALSE(again.ok());
      CHECK(again.error().message == message);
      return message;
    }
    if (!*next) {
      FAIL("no error for the stream");
      return "";
    }
  }
}

}  // namespace

// ---- to the broker ----

TEST_CASE("mqtt wire: CONNECT byte for byte (3.1.1 and 5)", "[mqtt_wire]") {
  ConnectOptions options;
  options.client_id = "c1";
  options.clean_start = true;
  options.keepalive_s = 60;
  options.username = "u";
  options.password = "p";
  // 3.1.1 3.1: protocol name, level 4, flags user|password|clean, keepalive.
  CHECK(encode_connect(options) ==
        bytes({0x10, 0x14, 0x00, 0x04, 'M', 'Q',  'T',  'T', 0x04, 0xC2, 0x00,
               0x3C, 0x00, 0x02, 'c',  '1', 0x00, 0x01, 'u', 0x00, 0x01, 'p'}));

  SECTION("3.1.1: a password without a user name is not sent") {
    options.username.reset();
    options.clean_start = false;
    CHECK(encode_connect(options) == bytes({0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x00,
                                            0x00, 0x3C, 0x00, 0x02, 'c', '1'}));
  }
  SECTION("5: the properties that are set, then the payload") {
    options.protocol_version = kMqtt5;
    options.username.reset();
    options.password.reset();
    options.keepalive_s = 30;
    options.session_expiry_s = 3600;
    options.receive_maximum = 100;
    options.maximum_packet_size = 1048576;
    CHECK(encode_connect(options) == bytes({0x10, 0x1C, 0x00, 0x04, 'M',  'Q',  'T',  'T',  0x05,
                                            0x02, 0x00, 0x1E,  // variable header
                                            0x0D, 0x11, 0x00, 0x00, 0x0E, 0x10, 0x21, 0x00, 0x64,
                                            0x27, 0x00, 0x10, 0x00, 0x00, 0x00, 0x02, 'c',  '1'}));
  }
  SECTION("5: no properties; a password alone is allowed") {
    options.protocol_version = kMqtt5;
    options.username.reset();
    options.clean_start = false;
    CHECK(encode_connect(options) ==
          bytes({0x10, 0x12, 0x00, 0x04, 'M',  'Q', 'T', 'T',  0x05, 0x40,
                 0x00, 0x3C, 0x00, 0x00, 0x02, 'c', '1', 0x00, 0x01, 'p'}));
  }
}

TEST_CASE("mqtt wire: SUBSCRIBE, UNSUBSCRIBE, PUBACK, PINGREQ, DISCONNECT byte for byte",
          "[mqtt_wire]") {
  const std::vector<std::string> filters = {"a/b", "#"};
  CHECK(encode_subscribe(kMqtt311, 10, filters, 1) ==
        bytes({0x82, 0x0C, 0x00, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x01, 0x00, 0x01, '#', 0x01}));
  CHECK(encode_subscribe(kMqtt5, 10, filters, 0) ==
        bytes({0x82, 0x0D, 0x00, 0x0A, 0x00, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x00, 0x01, '#',
               0x00}));
  CHECK(encode_unsubscribe(kMqtt311, 11, {"a/b"}) ==
        bytes({0xA2, 0x07, 0x00, 0x0B, 0x00, 0x03, 'a', '/', 'b'}));
  CHECK(encode_unsubscribe(kMqtt5, 11, {"a/b"}) ==
        bytes({0xA2, 0x08, 0x00, 0x0B, 0x00, 0x00, 0x03, 'a', '/', 'b'}));
  CHECK(encode_puback(kMqtt311, 0x1234) == bytes({0x40, 0x02, 0x12, 0x34}));
  CHECK(encode_puback(kMqtt5, 0x1234) == bytes({0x40, 0x02, 0x12, 0x34}));
  CHECK(encode_pingreq() == bytes({0xC0, 0x00}));
  CHECK(encode_disconnect(kMqtt311) == bytes({0xE0, 0x00}));
  CHECK(encode_disconnect(kMqtt311, 60) == bytes({0xE0, 0x00}));
  CHECK(encode_disconnect(kMqtt5) == bytes({0xE0, 0x00}));
  CHECK(encode_disconnect(kMqtt5, 0) ==
        bytes({0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00}));
  CHECK(encode_disconnect(kMqtt5, 0x01020304) ==
        bytes({0xE0, 0x07, 0x00, 0x05, 0x11, 0x01, 0x02, 0x03, 0x04}));

  // A remaining length of 205 takes two bytes: 0xCD 0x01 (2.2.3).
  const auto long_subscribe = encode_subscribe(kMqtt311, 1, {std::string(200, 'x')}, 1);
  CHECK(long_subscribe.size() == 3 + 205);
  CHECK(long_subscribe.substr(0, 3) == bytes({0x82, 0xCD, 0x01}));
}

TEST_CASE("mqtt wire: what cannot be encoded is a programming error, not a wrong packet",
          "[mqtt_wire]") {
  CHECK_THROWS_AS(encode_puback(3, 1), std::invalid_argument);
  CHECK_THROWS_AS(Parser(6, 1024), std::invalid_argument);
  CHECK_THROWS_AS(encode_subscribe(kMqtt311, 1, {}, 1), std::invalid_argument);
  CHECK_THROWS_AS(encode_subscribe(kMqtt5, 1, {"a"}, 2), std::invalid_argument);
  ConnectOptions options;
  options.client_id = std::string(65536, 'c');  // one byte over a string's two-byte length
  CHECK_THROWS_AS(encode_connect(options), std::length_error);
  options.client_id = std::string(65535, 'c');
  CHECK(encode_connect(options).size() == 1 + 3 + 10 + 2 + 65535);  // a 3-byte remaining length
}

TEST_CASE("mqtt wire: CONNACK reason texts", "[mqtt_wire]") {
  CHECK(connack_reason_text(kMqtt311, 0) == "accepted");
  CHECK(connack_reason_text(kMqtt311, 4) == "bad user name or password");
  CHECK(connack_reason_text(kMqtt311, 5) == "not authorized");
  CHECK(connack_reason_text(kMqtt311, 0x87) == "reason code 0x87");
  CHECK(connack_reason_text(kMqtt5, 0x87) == "not authorized");
  CHECK(connack_reason_text(kMqtt5, 0x9F) == "connection rate exceeded");
  CHECK(connack_reason_text(kMqtt5, 5) == "reason code 0x05");
  CHECK(connack_reason_text(kMqtt5, 0x8B) == "reason code 0x8B");
}

// ---- from the broker ----

TEST_CASE("mqtt wire: CONNACK", "[mqtt_wire]") {
  auto connack = std::get<Connack>(parse_one(kMqtt311, bytes({0x20, 0x02, 0x01, 0x00})));
  CHECK(connack.session_present);
  CHECK(connack.reason_code == 0);
  connack = std::get<Connack>(parse_one(kMqtt311, bytes({0x20, 0x02, 0x00, 0x05})));
  CHECK_FALSE(connack.session_present);
  CHECK(connack.reason_code == 5);

  const std::string property_list = bytes({0x21}) + u16(20) + bytes({0x27}) + u32(65536) +
                                    bytes({0x13}) + u16(45) + bytes({0x12}) + text("auto-1") +
                                    bytes({0x1F}) + text("welcome") + bytes({0x24, 0x01, 0x26}) +
                                    text("k") + text("v") + bytes({0x22}) + u16(10);
  connack = std::get<Connack>(
      parse_one(kMqtt5, packet(0x20, bytes({0x00, 0x00}) + properties(property_list))));
  CHECK(connack.reason_code == 0);
  CHECK(connack.receive_maximum == std::optional<std::uint16_t>(20));
  CHECK(connack.maximum_packet_size == std::optional<std::uint32_t>(65536));
  CHECK(connack.server_keepalive == std::optional<std::uint16_t>(45));
  CHECK(connack.assigned_client_id == std::optional<std::string>("auto-1"));
  CHECK(connack.reason_string == "welcome");

  connack = std::get<Connack>(parse_one(kMqtt5, bytes({0x20, 0x03, 0x00, 0x87, 0x00})));
  CHECK(connack.reason_code == 0x87);
  CHECK_FALSE(connack.receive_maximum);
  CHECK_FALSE(connack.assigned_client_id);
}

TEST_CASE("mqtt wire: PUBLISH round trips (3.1.1 and 5)", "[mqtt_wire]") {
  for (int version : {kMqtt311, kMqtt5}) {
    for (int index = 0; index < 12; ++index) {
      const auto expected = sample_publish(index);
      check_same(std::get<Publish>(parse_one(version, publish_packet(version, expected))),
                 expected);
    }
    Publish empty_payload;
    empty_payload.topic = "t";
    check_same(std::get<Publish>(parse_one(version, publish_packet(version, empty_payload))),
               empty_payload);
  }
}

TEST_CASE("mqtt wire: an MQTT 5 PUBLISH with properties keeps its payload", "[mqtt_wire]") {
  Publish expected = sample_publish(1);
  expected.payload += std::string(300, 'p');  // a two-byte remaining length
  const std::string property_list =
      bytes({0x02}) + u32(3600) +                      // message expiry
      bytes({0x26}) + text("site") + text("berlin") +  // user properties
      bytes({0x26}) + text("site") + text("munich") +  //
      bytes({0x03}) + text("application/json") +       // content type
      bytes({0x0B, 0xC8, 0x01}) +                      // subscription id 200
      bytes({0x0B, 0x07}) +                            // and 7
      bytes({0x01, 0x01}) +                            // payload format UTF-8
      bytes({0x08}) + text("reply/here") + bytes({0x09}) + text("\x01\x02");
  check_same(std::get<Publish>(parse_one(kMqtt5, publish_packet(kMqtt5, expected, property_list))),
             expected);
}

TEST_CASE("mqtt wire: acknowledgements, SUBACK, UNSUBACK, PINGRESP, DISCONNECT", "[mqtt_wire]") {
  for (int version : {kMqtt311, kMqtt5}) {
    for (int type = 4; type <= 7; ++type) {
      const int first = (type << 4) | (type == 6 ? 0x02 : 0x00);
      auto ack = std::get<Acknowledgement>(parse_one(version, bytes({first, 0x02, 0x01, 0x02})));
      CHECK(ack.type == type);
      CHECK(ack.packet_id == 0x0102);
    }
    CHECK(std::holds_alternative<Pingresp>(parse_one(version, bytes({0xD0, 0x00}))));
  }
  // MQTT 5: a reason code, then properties, each optional at the end.
  CHECK(std::get<Acknowledgement>(parse_one(kMqtt5, bytes({0x40, 0x03, 0x00, 0x09, 0x10})))
            .packet_id == 9);
  CHECK(std::get<Acknowledgement>(
            parse_one(kMqtt5, packet(0x50, bytes({0x00, 0x09, 0x80}) +
                                               properties(bytes({0x1F}) + text("no")))))
            .type == 5);

  auto suback = std::get<Suback>(parse_one(kMqtt311, bytes({0x90, 0x04, 0x00, 0x0A, 0x01, 0x80})));
  CHECK(suback.packet_id == 10);
  CHECK(suback.reason_codes == std::vector<int>{1, 0x80});
  suback = std::get<Suback>(parse_one(
      kMqtt5,
      packet(0x90, u16(10) + properties(bytes({0x1F}) + text("ok")) + bytes({0x01, 0x87}))));
  CHECK(suback.packet_id == 10);
  CHECK(suback.reason_codes == std::vector<int>{1, 0x87});

  auto unsuback = std::get<Unsuback>(parse_one(kMqtt311, bytes({0xB0, 0x02, 0x00, 0x0B})));
  CHECK(unsuback.packet_id == 11);
  CHECK(unsuback.reason_codes.empty());
  unsuback =
      std::get<Unsuback>(parse_one(kMqtt5, bytes({0xB0, 0x05, 0x00, 0x0B, 0x00, 0x00, 0x11})));
  CHECK(unsuback.packet_id == 11);
  CHECK(unsuback.reason_codes == std::vector<int>{0x00, 0x11});

  CHECK(std::get<Disconnect>(parse_one(kMqtt5, bytes({0xE0, 0x00}))).reason_code == 0);
  CHECK(std::get<Disconnect>(parse_one(kMqtt5, bytes({0xE0, 0x01, 0x8E}))).reason_code == 0x8E);
  auto disconnect = std::get<Disconnect>(parse_one(
      kMqtt5, packet(0xE0, bytes({0x89}) + properties(bytes({0x1F}) + text("busy") + bytes({0x1C}) +
                                                      text("other:1883")))));
  CHECK(disconnect.reason_code == 0x89);
  CHECK(disconnect.reason_string == "busy");
}

TEST_CASE("mqtt wire: the same packets however the stream is cut", "[mqtt_wire]") {
  for (int version : {kMqtt311, kMqtt5}) {
    std::string stream =
        version == kMqtt5 ? bytes({0x20, 0x03, 0x00, 0x00, 0x00}) : bytes({0x20, 0x02, 0x00, 0x00});
    std::vector<Publish> expected;
    for (int index = 0; index < 300; ++index) {
      expected.push_back(sample_publish(index));
      if (index % 50 == 0) expected.back().payload += std::string(200 + index, 'z');
      stream += publish_packet(version, expected.back(),
                               version == kMqtt5 && index % 2 ? bytes({0x02}) + u32(9) : "");
    }
    stream += bytes({0xD0, 0x00});
    for (std::size_t piece : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7},
                              std::size_t{1000}, stream.size()}) {
      INFO("version " << version << ", pieces of " << piece);
      const auto packets = parse_all(version, stream, piece);
      REQUIRE(packets.size() == expected.size() + 2);
      CHECK(std::holds_alternative<Connack>(packets.front()));
      for (std::size_t index = 0; index < expected.size(); ++index) {
        check_same(std::get<Publish>(packets[index + 1]), expected[index]);
      }
      CHECK(std::holds_alternative<Pingresp>(packets.back()));
    }
  }
}

TEST_CASE("mqtt wire: a long stream in random pieces (consumed bytes are dropped in bulk)",
          "[mqtt_wire]") {
  // About 1.5 MB: the parser erases its consumed prefix several times, with
  // part of a packet after it each time.
  std::string stream;
  std::vector<Publish> expected;
  for (int index = 0; index < 6000; ++index) {
    expected.push_back(sample_publish(index));
    expected.back().payload += std::string(static_cast<std::size_t>(index % 400), 'q');
    stream += publish_packet(kMqtt311, expected.back());
  }
  std::mt19937 random(18);
  Parser parser(kMqtt311, 1 << 16);
  std::size_t received = 0;
  std::size_t at = 0;
  while (at < stream.size()) {
    const std::size_t piece = std::uniform_int_distribution<std::size_t>(1, 20000)(random);
    parser.feed(std::string_view(stream).substr(at, piece));
    at += piece;
    for (;;) {
      auto next = parser.next();
      REQUIRE(next.ok());
      if (!*next) break;
      REQUIRE(received < expected.size());
      check_same(std::get<Publish>(**next), expected[received]);
      ++received;
    }
    CHECK(parser.buffered() < 1 << 16);  // never more than one partial packet
  }
  CHECK(received == expected.size());
  CHECK(parser.buffered() == 0);
}

TEST_CASE("mqtt wire: malformed and unexpected packets are errors, and the parser stays failed",
          "[mqtt_wire]") {
  struct Case {
    int version;
    std::string stream;
    std::string message;  // a part of the error
  };
  const std::vector<Case> cases = {
      // Fixed header.
      {kMqtt311, bytes({0x30, 0x80, 0x80, 0x80, 0x80, 0x01}), "more than 4 bytes"},
      {kMqtt5, bytes({0xD0, 0x80, 0x00}), "shortest form"},
      {kMqtt311, bytes({0x00, 0x00}), "reserved packet type 0"},
      {kMqtt311, bytes({0x10, 0x00}), "CONNECT: a server never sends"},
      {kMqtt311, bytes({0x82, 0x00}), "SUBSCRIBE: a server never sends"},
      {kMqtt5, bytes({0xA2, 0x00}), "UNSUBSCRIBE: a server never sends"},
      {kMqtt311, bytes({0xC0, 0x00}), "PINGREQ: a server never sends"},
      {kMqtt311, bytes({0xE0, 0x00}), "DISCONNECT: a 3.1.1 server never sends"},
      {kMqtt5, bytes({0xF0, 0x00}), "AUTH not supported"},
      {kMqtt311, bytes({0xF0, 0x00}), "reserved packet type 15"},
      {kMqtt311, bytes({0x41, 0x02, 0x00, 0x01}), "PUBACK: reserved flags 0x01"},
      {kMqtt311, bytes({0x60, 0x02, 0x00, 0x01}), "PUBREL: reserved flags 0x00 (0x02 expected)"},
      {kMqtt5, bytes({0x92, 0x03, 0x00, 0x01, 0x00}), "SUBACK: reserved flags"},
      {kMqtt311, bytes({0x28, 0x02, 0x00, 0x00}), "CONNACK: reserved flags"},
      {kMqtt311, bytes({0xD1, 0x00}), "PINGRESP: reserved flags"},
      // PUBLISH.
      {kMqtt311, bytes({0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01}), "QoS 3"},
      {kMqtt5, bytes({0x34, 0x06, 0x00, 0x01, 'a', 0x00, 0x01, 0x00}), "QoS 2 not subscribed"},
      {kMqtt311, bytes({0x38, 0x03, 0x00, 0x01, 'a'}), "DUP with QoS 0"},
      {kMqtt311, bytes({0x32, 0x05, 0x00, 0x01, 'a', 0x00, 0x00}), "PUBLISH: packet identifier 0"},
      {kMqtt311, bytes({0x32, 0x03, 0x00, 0x01, 'a'}), "too short for the packet identifier"},
      {kMqtt311, bytes({0x30, 0x03, 0x00, 0x05, 'a'}),
       "PUBLISH: remaining length 3 too short for the topic"},
      {kMqtt311, bytes({0x30, 0x01, 0x00}), "remaining length 1 too short for the topic"},
      {kMqtt311, bytes({0x30, 0x02, 0x00, 0x00}), "empty topic"},
      {kMqtt5, bytes({0x30, 0x07, 0x00, 0x01, 'a', 0x03, 0x23, 0x00, 0x01}), "Topic Alias"},
      {kMqtt5, bytes({0x30, 0x04, 0x00, 0x01, 'a', 0x01}), "property length 1 exceeds"},
      {kMqtt5, bytes({0x30, 0x03, 0x00, 0x01, 'a'}), "malformed property length"},
      {kMqtt5, bytes({0x30, 0x06, 0x00, 0x01, 'a', 0x02, 0x05, 0x00}), "unknown property 0x05"},
      {kMqtt5, bytes({0x30, 0x07, 0x00, 0x01, 'a', 0x03, 0x21, 0x00, 0x01}),
       "unknown property 0x21"},
      {kMqtt5, bytes({0x30, 0x07, 0x00, 0x01, 'a', 0x02, 0x02, 0x00, 0x00}),
       "property 0x02 is cut short"},
      {kMqtt5, bytes({0x30, 0x08, 0x00, 0x01, 'a', 0x04, 0x01, 0x00, 0x01, 0x01}),
       "property 0x01 repeated"},
      {kMqtt5, bytes({0x30, 0x06, 0x00, 0x01, 'a', 0x02, 0x01, 0x02}), "0 or 1 expected"},
      {kMqtt5, bytes({0x30, 0x06, 0x00, 0x01, 'a', 0x02, 0x0B, 0x00}), "property 0x0B is 0"},
      {kMqtt5, bytes({0x30, 0x07, 0x00, 0x01, 'a', 0x03, 0x0B, 0x80, 0x00}),
       "property 0x0B is cut short"},
      // CONNACK.
      {kMqtt311, bytes({0x20, 0x01, 0x00}), "CONNACK: remaining length 1 too short"},
      {kMqtt311, bytes({0x20, 0x03, 0x00, 0x00, 0x00}), "CONNACK: 1 bytes after the end"},
      {kMqtt311, bytes({0x20, 0x02, 0x02, 0x00}), "reserved acknowledge flags"},
      {kMqtt311, bytes({0x20, 0x02, 0x01, 0x05}), "session present with a refusal"},
      {kMqtt5, bytes({0x20, 0x02, 0x00, 0x00}), "CONNACK: malformed property length"},
      {kMqtt5, bytes({0x20, 0x05, 0x00, 0x00, 0x02, 0x01, 0x00}), "CONNACK: unknown property 0x01"},
      {kMqtt5, bytes({0x20, 0x06, 0x00, 0x00, 0x03, 0x21, 0x00, 0x00}), "property 0x21 is 0"},
      {kMqtt5, bytes({0x20, 0x08, 0x00, 0x00, 0x05, 0x27, 0x00, 0x00, 0x00, 0x00}),
       "property 0x27 is 0"},
      {kMqtt5, bytes({0x20, 0x09, 0x00, 0x00, 0x06, 0x13, 0x00, 0x01, 0x13, 0x00, 0x02}),
       "property 0x13 repeated"},
      {kMqtt5, bytes({0x20, 0x06, 0x00, 0x00, 0x03, 0x12, 0x00, 0x05}),
       "property 0x12 is cut short"},
      // Acknowledgements, SUBACK, UNSUBACK, PINGRESP, DISCONNECT.
      {kMqtt311, bytes({0x40, 0x01, 0x00}), "PUBACK: remaining length 1 too short"},
      {kMqtt311, bytes({0x40, 0x03, 0x00, 0x01, 0x00}), "PUBACK: 1 bytes after the end"},
      {kMqtt311, bytes({0x70, 0x02, 0x00, 0x00}), "PUBCOMP: packet identifier 0"},
      {kMqtt5, bytes({0x50, 0x06, 0x00, 0x01, 0x00, 0x02, 0x02, 0x00}),
       "PUBREC: unknown property 0x02"},
      {kMqtt311, bytes({0x90, 0x02, 0x00, 0x01}), "SUBACK: no reason codes"},
      {kMqtt311, bytes({0x90, 0x03, 0x00, 0x01, 0x87}), "SUBACK: invalid reason code 0x87"},
      {kMqtt5, bytes({0x90, 0x04, 0x00, 0x01, 0x00, 0x03}), "SUBACK: invalid reason code 0x03"},
      {kMqtt311, bytes({0xB0, 0x03, 0x00, 0x01, 0x00}), "UNSUBACK: 1 bytes after the end"},
      {kMqtt5, bytes({0xB0, 0x03, 0x00, 0x01, 0x00}), "UNSUBACK: no reason codes"},
      {kMqtt5, bytes({0xB0, 0x04, 0x00, 0x01, 0x00, 0x02}), "UNSUBACK: invalid reason code 0x02"},
      {kMqtt311, bytes({0xD0, 0x01, 0x00}), "PINGRESP: remaining length 1 (0 expected)"},
      {kMqtt5, bytes({0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00}),
       "DISCONNECT: unknown property 0x11"},
      // An error after good packets.
      {kMqtt311, bytes({0xD0, 0x00, 0x40, 0x02, 0x00, 0x01, 0x36, 0x00}), "QoS 3"},
  };
  for (const auto& bad : cases) {
    INFO("version " << bad.version << ", case expecting \"" << bad.message << "\"");
    CHECK_THAT(parse_error(bad.version, bad.stream), Catch::Contains(bad.message));
  }
  // 3.1.1 has no shortest-form rule: a padded remaining length is accepted.
  CHECK(std::holds_alternative<Pingresp>(parse_one(kMqtt311, bytes({0xD0, 0x80, 0x00}))));
}

TEST_CASE("mqtt wire: a packet over the maximum size is refused from its length alone",
          "[mqtt_wire]") {
  // The fixed header of a 100 MB PUBLISH (remaining length 0x30 << 21).
  const std::string header = bytes({0x30, 0x80, 0x80, 0x80, 0x30});
  Parser parser(kMqtt311, 1 << 20);
  parser.feed(header);
  auto next = parser.next();
  REQUIRE_FALSE(next.ok());
  CHECK_THAT(next.error().message,
             Catch::Contains("PUBLISH: packet of 100663301 bytes exceeds the maximum of 1048576"));
  parser.feed(std::string(4096, 'x'));
  CHECK(parser.buffered() == header.size());
  CHECK_FALSE(parser.next().ok());

  // The maximum counts the whole packet, fixed header included.
  Publish publish;
  publish.topic = "t";
  publish.payload = std::string(100, 'p');
  const auto whole = publish_packet(kMqtt311, publish);
  CHECK(parse_all(kMqtt311, whole, 1, whole.size()).size() == 1);
  CHECK_THAT(parse_error(kMqtt311, whole.substr(0, 2), whole.size() - 1),
             Catch::Contains("exceeds the maximum"));
}
