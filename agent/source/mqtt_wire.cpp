// Over 600 lines: one codec, both MQTT versions side by side, to be read against the two specs.
#include "agent/source/mqtt_wire.hpp"

#include <array>
#include <cstdio>
#include <stdexcept>
#include <utility>

// References: MQTT Version 3.1.1 (OASIS Standard, 29 October 2014) and MQTT
// Version 5.0 (OASIS Standard, 7 March 2019); section numbers below are theirs.

namespace meter::agent::mqtt_wire {

namespace {

// Packet types (2.2.1).
constexpr int kConnect = 1;
constexpr int kConnack = 2;
constexpr int kPublish = 3;
constexpr int kPuback = 4;
constexpr int kPubrec = 5;
constexpr int kPubrel = 6;
constexpr int kPubcomp = 7;
constexpr int kSubscribe = 8;
constexpr int kSuback = 9;
constexpr int kUnsubscribe = 10;
constexpr int kUnsuback = 11;
constexpr int kPingreq = 12;
constexpr int kPingresp = 13;
constexpr int kDisconnect = 14;
constexpr int kAuth = 15;

// The largest Remaining Length four bytes can carry (1.5.5 / 2.2.3).
constexpr std::uint32_t kMaxVariableInteger = 268'435'455;
constexpr std::size_t kMaxString = 65'535;

// A consumed prefix is erased only once it is this large and more than half
// of the buffer, so each byte is moved a bounded number of times.
constexpr std::size_t kCompactThreshold = 64 * 1024;

const char* packet_name(int type) {
  static constexpr std::array<const char*, 16> kNames = {"reserved packet type 0",
                                                         "CONNECT",
                                                         "CONNACK",
                                                         "PUBLISH",
                                                         "PUBACK",
                                                         "PUBREC",
                                                         "PUBREL",
                                                         "PUBCOMP",
                                                         "SUBSCRIBE",
                                                         "SUBACK",
                                                         "UNSUBSCRIBE",
                                                         "UNSUBACK",
                                                         "PINGREQ",
                                                         "PINGRESP",
                                                         "DISCONNECT",
                                                         "AUTH"};
  return kNames.at(static_cast<std::size_t>(type) & 0x0F);
}

std::string hex_byte(unsigned value) {
  std::array<char, 8> text{};
  std::snprintf(text.data(), text.size(), "0x%02X", value);
  return text.data();
}

Error packet_error(int type, const std::string& message) {
  return Error{std::string(packet_name(type)) + ": " + message};
}

void check_version(int protocol_version) {
  // A version other than these is a programming error of the caller.
  if (protocol_version != kMqtt311 && protocol_version != kMqtt5) {
    throw std::invalid_argument("MQTT protocol version must be 4 (3.1.1) or 5, not " +
                                std::to_string(protocol_version));
  }
}

// ---- writing ----

void put_u16(std::string& out, std::uint16_t value) {
  out.push_back(static_cast<char>(value >> 8));
  out.push_back(static_cast<char>(value & 0xFF));
}

void put_u32(std::string& out, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((value >> shift) & 0xFF));
  }
}

void put_variable_integer(std::string& out, std::size_t value) {
  // The options are validated config and packets stay small, so a value past
  // the four-byte limit is a caller's bug, not bad input.
  if (value > kMaxVariableInteger) throw std::length_error("MQTT packet too large to encode");
  do {
    auto digit = static_cast<std::uint8_t>(value % 128);
    value /= 128;
    if (value > 0) digit |= 0x80;
    out.push_back(static_cast<char>(digit));
  } while (value > 0);
}

void put_string(std::string& out, std::string_view text) {
  if (text.size() > kMaxString) {
    throw std::length_error(
        "MQTT string longer than 65535 bytes: " + std::string(text.substr(0, 32)) + "...");
  }
  put_u16(out, static_cast<std::uint16_t>(text.size()));
  out.append(text);
}

std::string packet(std::uint8_t first_byte, std::string_view body) {
  std::string out;
  out.reserve(body.size() + 5);
  out.push_back(static_cast<char>(first_byte));
  put_variable_integer(out, body.size());
  out.append(body);
  return out;
}

// ---- reading ----

// A cursor over one packet's bytes. Every read checks the bytes are there.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  std::size_t remaining() const { return bytes_.size() - position_; }
  bool empty() const { return remaining() == 0; }

  bool read_byte(std::uint8_t& out) {
    if (remaining() < 1) return false;
    out = static_cast<std::uint8_t>(bytes_[position_++]);
    return true;
  }
  bool read_u16(std::uint16_t& out) {
    if (remaining() < 2) return false;
    out = static_cast<std::uint16_t>((byte_at(0) << 8) | byte_at(1));
    position_ += 2;
    return true;
  }
  bool read_u32(std::uint32_t& out) {
    if (remaining() < 4) return false;
    out = (byte_at(0) << 24) | (byte_at(1) << 16) | (byte_at(2) << 8) | byte_at(3);
    position_ += 4;
    return true;
  }
  // 1.5.5: at most four bytes, and (MQTT 5, [MQTT-1.5.5-1]) the shortest form.
  bool read_variable_integer(std::uint32_t& out, bool minimal) {
    std::uint32_t value = 0;
    for (int index = 0; index < 4; ++index) {
      std::uint8_t digit = 0;
      if (!read_byte(digit)) return false;
      value |= static_cast<std::uint32_t>(digit & 0x7F) << (7 * index);
      if ((digit & 0x80) == 0) {
        if (minimal && index > 0 && digit == 0) return false;
        out = value;
        return true;
      }
    }
    return false;
  }
  // A UTF-8 string or binary data: a two-byte length, then the bytes (1.5.3/1.5.4).
  bool read_string(std::string_view& out) {
    std::uint16_t length = 0;
    if (remaining() < 2) return false;
    const std::size_t start = position_;
    (void)read_u16(length);
    if (remaining() < length) {
      position_ = start;
      return false;
    }
    out = bytes_.substr(position_, length);
    position_ += length;
    return true;
  }
  std::string_view take(std::size_t count) {
    auto part = bytes_.substr(position_, count);
    position_ += part.size();
    return part;
  }
  std::string_view rest() { return take(remaining()); }

 private:
  std::uint32_t byte_at(std::size_t index) const {
    return static_cast<std::uint8_t>(bytes_[position_ + index]);
  }

  std::string_view bytes_;
  std::size_t position_ = 0;
};

// ---- MQTT 5 properties (2.2.2.2) ----

enum class PropertyType { byte, two_byte, four_byte, variable_integer, text, binary, text_pair };

struct PropertySpec {
  PropertyType type;
  unsigned allowed_in;  // bit (1 << packet type) per packet a server may send it in
  bool repeatable;
};

constexpr unsigned bit(int type) { return 1U << static_cast<unsigned>(type); }
constexpr unsigned kAcknowledgements = bit(kPuback) | bit(kPubrec) | bit(kPubrel) | bit(kPubcomp);

// Property ids are 0x01..0x2A; ids not listed (and those only a client sends)
// are unknown here. The server-sent packet lists follow table 2-4, except
// Session Expiry Interval in DISCONNECT, which a server must not send
// ([MQTT-3.14.2-2]).
constexpr std::size_t kPropertyIds = 0x2B;

constexpr std::array<std::optional<PropertySpec>, kPropertyIds> make_property_specs() {
  using T = PropertyType;
  std::array<std::optional<PropertySpec>, kPropertyIds> specs{};
  specs[0x01] = PropertySpec{T::byte, bit(kPublish), false};             // payload format indicator
  specs[0x02] = PropertySpec{T::four_byte, bit(kPublish), false};        // message expiry interval
  specs[0x03] = PropertySpec{T::text, bit(kPublish), false};             // content type
  specs[0x08] = PropertySpec{T::text, bit(kPublish), false};             // response topic
  specs[0x09] = PropertySpec{T::binary, bit(kPublish), false};           // correlation data
  specs[0x0B] = PropertySpec{T::variable_integer, bit(kPublish), true};  // subscription identifier
  specs[0x11] = PropertySpec{T::four_byte, bit(kConnack), false};        // session expiry interval
  specs[0x12] = PropertySpec{T::text, bit(kConnack), false};      // assigned client identifier
  specs[0x13] = PropertySpec{T::two_byte, bit(kConnack), false};  // server keep alive
  specs[0x15] = PropertySpec{T::text, bit(kConnack) | bit(kAuth), false};  // authentication method
  specs[0x16] = PropertySpec{T::binary, bit(kConnack) | bit(kAuth), false};  // authentication data
  specs[0x1A] = PropertySpec{T::text, bit(kConnack), false};                 // response information
  specs[0x1C] = PropertySpec{T::text, bit(kConnack) | bit(kDisconnect), false};  // server reference
  specs[0x1F] = PropertySpec{T::text,                                            // reason string
                             bit(kConnack) | kAcknowledgements | bit(kSuback) | bit(kUnsuback) |
                                 bit(kDisconnect) | bit(kAuth),
                             false};
  specs[0x21] = PropertySpec{T::two_byte, bit(kConnack), false};   // receive maximum
  specs[0x22] = PropertySpec{T::two_byte, bit(kConnack), false};   // topic alias maximum
  specs[0x23] = PropertySpec{T::two_byte, bit(kPublish), false};   // topic alias
  specs[0x24] = PropertySpec{T::byte, bit(kConnack), false};       // maximum QoS
  specs[0x25] = PropertySpec{T::byte, bit(kConnack), false};       // retain available
  specs[0x26] = PropertySpec{T::text_pair, 0xFFFFU, true};         // user property
  specs[0x27] = PropertySpec{T::four_byte, bit(kConnack), false};  // maximum packet size
  specs[0x28] = PropertySpec{T::byte, bit(kConnack), false};  // wildcard subscription available
  specs[0x29] = PropertySpec{T::byte, bit(kConnack), false};  // subscription identifiers available
  specs[0x2A] = PropertySpec{T::byte, bit(kConnack), false};  // shared subscription available
  return specs;
}

constexpr auto kPropertySpecs = make_property_specs();

std::optional<PropertySpec> property_spec(std::uint8_t id) {
  if (id >= kPropertySpecs.size()) return std::nullopt;
  return kPropertySpecs[id];
}

struct Property {
  std::uint8_t id = 0;
  std::uint32_t number = 0;  // byte, two-byte, four-byte and variable integers
  std::string_view text;     // strings and binary data
};

// Reads the property length and the properties, checking each id belongs to
// `type`, its value is whole and legal, and single ones are not repeated;
// `use` sees each property. Returns an error or nothing.
template <class Use>
std::optional<Error> read_properties(Reader& reader, int type, Use&& use) {
  std::uint32_t length = 0;
  if (!reader.read_variable_integer(length, true)) {
    return packet_error(type, "malformed property length");
  }
  if (length > reader.remaining()) {
    return packet_error(type, "property length " + std::to_string(length) + " exceeds the " +
                                  std::to_string(reader.remaining()) + " bytes left");
  }
  Reader properties(reader.take(length));
  std::uint64_t seen = 0;
  while (!properties.empty()) {
    Property property;
    (void)properties.read_byte(property.id);
    const auto spec = property_spec(property.id);
    if (!spec || (spec->allowed_in & bit(type)) == 0) {
      return packet_error(type, "unknown property " + hex_byte(property.id));
    }
    if (!spec->repeatable) {
      const std::uint64_t mask = std::uint64_t{1} << property.id;
      if ((seen & mask) != 0) {
        return packet_error(type, "property " + hex_byte(property.id) + " repeated");
      }
      seen |= mask;
    }
    bool whole = true;
    switch (spec->type) {
      case PropertyType::byte: {
        std::uint8_t value = 0;
        whole = properties.read_byte(value);
        property.number = value;
        // Every byte property a server sends is a 0/1 flag (3.2.2.3, 3.3.2.3.2).
        if (whole && value > 1) {
          return packet_error(type, "property " + hex_byte(property.id) + " has value " +
                                        std::to_string(value) + " (0 or 1 expected)");
        }
        break;
      }
      case PropertyType::two_byte: {
        std::uint16_t value = 0;
        whole = properties.read_u16(value);
        property.number = value;
        break;
      }
      case PropertyType::four_byte:
        whole = properties.read_u32(property.number);
        break;
      case PropertyType::variable_integer:
        whole = properties.read_variable_integer(property.number, true);
        break;
      case PropertyType::text:
      case PropertyType::binary:
        whole = properties.read_string(property.text);
        break;
      case PropertyType::text_pair: {
        std::string_view value;
        whole = properties.read_string(property.text) && properties.read_string(value);
        break;
      }
    }
    if (!whole) {
      return packet_error(type, "property " + hex_byte(property.id) + " is cut short");
    }
    // Values the spec calls a protocol error (3.2.2.3.3, 3.2.2.3.6, 3.3.2.3.8).
    if ((property.id == 0x21 || property.id == 0x27 || property.id == 0x0B) &&
        property.number == 0) {
      return packet_error(type, "property " + hex_byte(property.id) + " is 0");
    }
    if (auto error = use(property)) return error;
  }
  return std::nullopt;
}

std::optional<Error> no_use(const Property& /*property*/) { return std::nullopt; }

// ---- the packets ----

Result<Packet> parse_connack(int version, std::string_view body) {
  Reader reader(body);
  Connack connack;
  std::uint8_t flags = 0;
  std::uint8_t code = 0;
  if (!reader.read_byte(flags) || !reader.read_byte(code)) {
    return packet_error(kConnack, "remaining length " + std::to_string(body.size()) +
                                      " too short for the flags and the reason code");
  }
  if ((flags & 0xFE) != 0) {
    return packet_error(kConnack, "reserved acknowledge flags set (" + hex_byte(flags) + ")");
  }
  connack.session_present = (flags & 0x01) != 0;
  connack.reason_code = code;
  // [MQTT-3.2.2-4] (3.1.1) and [MQTT-3.2.2-6] (5): a refusal has no session.
  if (code != 0 && connack.session_present) {
    return packet_error(kConnack, "session present with a refusal (" + hex_byte(code) + ")");
  }
  if (version == kMqtt5) {
    auto error = read_properties(reader, kConnack, [&](const Property& property) {
      switch (property.id) {
        case 0x21:
          connack.receive_maximum = static_cast<std::uint16_t>(property.number);
          break;
        case 0x27:
          connack.maximum_packet_size = property.number;
          break;
        case 0x13:
          connack.server_keepalive = static_cast<std::uint16_t>(property.number);
          break;
        case 0x12:
          connack.assigned_client_id = std::string(property.text);
          break;
        case 0x1F:
          connack.reason_string = std::string(property.text);
          break;
        default:
          break;  // checked, and nothing the connection acts on
      }
      return std::optional<Error>();
    });
    if (error) return *error;
  }
  if (!reader.empty()) {
    return packet_error(kConnack, std::to_string(reader.remaining()) + " bytes after the end");
  }
  return Packet(std::move(connack));
}

Result<Packet> parse_publish(int version, std::uint8_t flags, std::string_view body) {
  Publish publish;
  publish.retain = (flags & 0x01) != 0;
  publish.dup = (flags & 0x08) != 0;
  publish.qos = (flags >> 1) & 0x03;
  if (publish.qos == 3) return packet_error(kPublish, "malformed: QoS 3");
  if (publish.qos == 2) return packet_error(kPublish, "QoS 2 not subscribed");
  // [MQTT-3.3.1-2]: DUP is only for QoS > 0.
  if (publish.qos == 0 && publish.dup) return packet_error(kPublish, "malformed: DUP with QoS 0");
  Reader reader(body);
  std::string_view topic;
  if (!reader.read_string(topic)) {
    return packet_error(
        kPublish, "remaining length " + std::to_string(body.size()) + " too short for the topic");
  }
  // MQTT 5 allows an empty topic only with a Topic Alias, and none is offered.
  if (topic.empty()) return packet_error(kPublish, "empty topic");
  if (publish.qos > 0) {
    if (!reader.read_u16(publish.packet_id)) {
      return packet_error(kPublish, "remaining length " + std::to_string(body.size()) +
                                        " too short for the packet identifier");
    }
    if (publish.packet_id == 0) return packet_error(kPublish, "packet identifier 0");
  }
  if (version == kMqtt5) {
    auto error = read_properties(reader, kPublish, [](const Property& property) {
      if (property.id == 0x23) {
        return std::optional<Error>(
            packet_error(kPublish, "Topic Alias used, but no alias maximum was offered"));
      }
      return std::optional<Error>();
    });
    if (error) return *error;
  }
  publish.topic = std::string(topic);
  publish.payload = std::string(reader.rest());
  return Packet(std::move(publish));
}

Result<Packet> parse_acknowledgement(int version, int type, std::string_view body) {
  Reader reader(body);
  Acknowledgement acknowledgement;
  acknowledgement.type = type;
  if (!reader.read_u16(acknowledgement.packet_id)) {
    return packet_error(type, "remaining length " + std::to_string(body.size()) +
                                  " too short for the packet identifier");
  }
  if (acknowledgement.packet_id == 0) return packet_error(type, "packet identifier 0");
  // MQTT 5 (3.4.2.1, 3.4.2.2.1): the reason code and then the properties may
  // each be left out at the end.
  if (version == kMqtt5 && !reader.empty()) {
    std::uint8_t reason = 0;
    (void)reader.read_byte(reason);
    if (!reader.empty()) {
      if (auto error = read_properties(reader, type, no_use)) return *error;
    }
  }
  if (!reader.empty()) {
    return packet_error(type, std::to_string(reader.remaining()) + " bytes after the end");
  }
  return Packet(acknowledgement);
}

bool valid_suback_code(int version, std::uint8_t code) {
  if (version == kMqtt311) return code <= 2 || code == 0x80;  // 3.9.3
  switch (code) {                                             // 3.9.3 (MQTT 5)
    case 0x00:
    case 0x01:
    case 0x02:
    case 0x80:
    case 0x83:
    case 0x87:
    case 0x8F:
    case 0x91:
    case 0x97:
    case 0x9E:
    case 0xA1:
    case 0xA2:
      return true;
    default:
      return false;
  }
}

bool valid_unsuback_code(std::uint8_t code) {  // 3.11.3 (MQTT 5)
  switch (code) {
    case 0x00:
    case 0x11:
    case 0x80:
    case 0x83:
    case 0x87:
    case 0x8F:
    case 0x91:
      return true;
    default:
      return false;
  }
}

// SUBACK and UNSUBACK: a packet identifier, MQTT 5 properties, then one code
// per filter (UNSUBACK in 3.1.1: none).
template <class Ack>
Result<Packet> parse_subscription_ack(int version, int type, std::string_view body) {
  Reader reader(body);
  Ack ack;
  if (!reader.read_u16(ack.packet_id)) {
    return packet_error(type, "remaining length " + std::to_string(body.size()) +
                                  " too short for the packet identifier");
  }
  if (ack.packet_id == 0) return packet_error(type, "packet identifier 0");
  if (version == kMqtt5) {
    if (auto error = read_properties(reader, type, no_use)) return *error;
  }
  const bool has_codes = type == kSuback || version == kMqtt5;
  if (!has_codes) {
    if (!reader.empty()) {
      return packet_error(type, std::to_string(reader.remaining()) + " bytes after the end");
    }
    return Packet(std::move(ack));
  }
  if (reader.empty()) return packet_error(type, "no reason codes");
  ack.reason_codes.reserve(reader.remaining());
  std::uint8_t code = 0;
  while (reader.read_byte(code)) {
    const bool valid =
        type == kSuback ? valid_suback_code(version, code) : valid_unsuback_code(code);
    if (!valid) return packet_error(type, "invalid reason code " + hex_byte(code));
    ack.reason_codes.push_back(code);
  }
  return Packet(std::move(ack));
}

Result<Packet> parse_disconnect(std::string_view body) {
  Reader reader(body);
  Disconnect disconnect;
  std::uint8_t reason = 0;
  // 3.14.2.1: no reason code means 0 (normal disconnection).
  if (reader.read_byte(reason)) disconnect.reason_code = reason;
  if (!reader.empty()) {
    auto error = read_properties(reader, kDisconnect, [&](const Property& property) {
      if (property.id == 0x1F) disconnect.reason_string = std::string(property.text);
      return std::optional<Error>();
    });
    if (error) return *error;
  }
  if (!reader.empty()) {
    return packet_error(kDisconnect, std::to_string(reader.remaining()) + " bytes after the end");
  }
  return Packet(std::move(disconnect));
}

// Which packets a server may send, and their fixed-header flags (2.2.2).
std::optional<Error> check_first_byte(int version, std::uint8_t first_byte) {
  const int type = first_byte >> 4;
  const unsigned flags = first_byte & 0x0FU;
  switch (type) {
    case kPublish:
      return std::nullopt;  // the flags are the PUBLISH's own
    case kConnack:
    case kPuback:
    case kPubrec:
    case kPubcomp:
    case kSuback:
    case kUnsuback:
    case kPingresp:
      break;
    case kPubrel:
      if (flags != 0x02)
        return packet_error(type, "reserved flags " + hex_byte(flags) + " (0x02 expected)");
      return std::nullopt;
    case kDisconnect:
      if (version != kMqtt5) return packet_error(type, "a 3.1.1 server never sends DISCONNECT");
      break;
    case kAuth:
      if (version != kMqtt5) return Error{"reserved packet type 15"};
      return packet_error(type, "AUTH not supported (no authentication method was asked for)");
    case 0:
      return Error{"reserved packet type 0"};
    case kConnect:
    case kSubscribe:
    case kUnsubscribe:
    case kPingreq:
    default:
      return packet_error(type, "a server never sends this packet type");
  }
  if (flags != 0) return packet_error(type, "reserved flags " + hex_byte(flags) + " (0 expected)");
  return std::nullopt;
}

Result<Packet> parse_packet(int version, std::uint8_t first_byte, std::string_view body) {
  const int type = first_byte >> 4;
  switch (type) {
    case kConnack:
      return parse_connack(version, body);
    case kPublish:
      return parse_publish(version, first_byte & 0x0F, body);
    case kPuback:
    case kPubrec:
    case kPubrel:
    case kPubcomp:
      return parse_acknowledgement(version, type, body);
    case kSuback:
      return parse_subscription_ack<Suback>(version, type, body);
    case kUnsuback:
      return parse_subscription_ack<Unsuback>(version, type, body);
    case kPingresp:
      if (!body.empty())
        return packet_error(type,
                            "remaining length " + std::to_string(body.size()) + " (0 expected)");
      return Packet(Pingresp{});
    case kDisconnect:
      return parse_disconnect(body);
    default:
      return packet_error(type, "unexpected");  // check_first_byte refused it already
  }
}

}  // namespace

// ---- to the broker ----

std::string encode_connect(const ConnectOptions& options) {
  check_version(options.protocol_version);
  const bool v5 = options.protocol_version == kMqtt5;
  // 3.1.2.9: in 3.1.1 a password needs a user name; MQTT 5 allows it alone.
  const bool send_password = options.password.has_value() && (v5 || options.username.has_value());
  std::uint8_t flags = 0;
  if (options.clean_start) flags |= 0x02;
  if (options.username) flags |= 0x80;
  if (send_password) flags |= 0x40;

  std::string body;
  put_string(body, "MQTT");
  body.push_back(static_cast<char>(options.protocol_version));
  body.push_back(static_cast<char>(flags));
  put_u16(body, options.keepalive_s);
  if (v5) {
    std::string properties;
    if (options.session_expiry_s != 0) {
      properties.push_back(0x11);
      put_u32(properties, options.session_expiry_s);
    }
    if (options.receive_maximum != 0) {
      properties.push_back(0x21);
      put_u16(properties, options.receive_maximum);
    }
    if (options.maximum_packet_size != 0) {
      properties.push_back(0x27);
      put_u32(properties, options.maximum_packet_size);
    }
    put_variable_integer(body, properties.size());
    body += properties;
  }
  put_string(body, options.client_id);
  if (options.username) put_string(body, *options.username);
  if (send_password) put_string(body, *options.password);
  return packet(kConnect << 4, body);
}

std::string encode_subscribe(int protocol_version, std::uint16_t packet_id,
                             const std::vector<std::string>& filters, int qos) {
  check_version(protocol_version);
  if (filters.empty()) throw std::invalid_argument("SUBSCRIBE needs at least one filter");
  if (qos < 0 || qos > 1) throw std::invalid_argument("SUBSCRIBE at QoS 0 or 1 only");
  std::string body;
  put_u16(body, packet_id);
  if (protocol_version == kMqtt5) body.push_back(0);  // no properties
  for (const auto& filter : filters) {
    put_string(body, filter);
    // MQTT 5 options: No Local 0, Retain As Published 0, Retain Handling 0.
    body.push_back(static_cast<char>(qos));
  }
  return packet((kSubscribe << 4) | 0x02, body);
}

std::string encode_unsubscribe(int protocol_version, std::uint16_t packet_id,
                               const std::vector<std::string>& filters) {
  check_version(protocol_version);
  if (filters.empty()) throw std::invalid_argument("UNSUBSCRIBE needs at least one filter");
  std::string body;
  put_u16(body, packet_id);
  if (protocol_version == kMqtt5) body.push_back(0);  // no properties
  for (const auto& filter : filters) put_string(body, filter);
  return packet((kUnsubscribe << 4) | 0x02, body);
}

std::string encode_puback(int protocol_version, std::uint16_t packet_id) {
  check_version(protocol_version);
  // MQTT 5 3.4.2.1: a remaining length of 2 means reason 0x00, no properties.
  std::string body;
  put_u16(body, packet_id);
  return packet(kPuback << 4, body);
}

std::string encode_pingreq() { return std::string("\xC0\x00", 2); }

std::string encode_disconnect(int protocol_version, std::optional<std::uint32_t> session_expiry_s) {
  check_version(protocol_version);
  if (protocol_version == kMqtt311 || !session_expiry_s) {
    // MQTT 5 3.14.2.1: no reason code means 0x00, normal disconnection.
    return std::string("\xE0\x00", 2);
  }
  std::string body;
  body.push_back(0x00);  // normal disconnection
  body.push_back(0x05);  // property length
  body.push_back(0x11);
  put_u32(body, *session_expiry_s);
  return packet(kDisconnect << 4, body);
}

// ---- from the broker ----

Parser::Parser(int protocol_version, std::size_t max_packet_size)
    : protocol_version_(protocol_version), max_packet_size_(max_packet_size) {
  check_version(protocol_version);
}

void Parser::feed(std::string_view bytes) {
  // A failed connection is closed; what follows the error is never read.
  if (failed_) return;
  if (offset_ == buffer_.size()) {
    buffer_.clear();
    offset_ = 0;
  } else if (offset_ > kCompactThreshold && offset_ > buffer_.size() / 2) {
    buffer_.erase(0, offset_);
    offset_ = 0;
  }
  buffer_.append(bytes);
}

Result<std::optional<Packet>> Parser::next() {
  if (failed_) return *failed_;
  const std::string_view available = std::string_view(buffer_).substr(offset_);
  if (available.empty()) return std::optional<Packet>();
  const auto first_byte = static_cast<std::uint8_t>(available[0]);
  auto fail = [this](Error error) -> Result<std::optional<Packet>> {
    failed_ = error;
    return error;
  };
  if (auto error = check_first_byte(protocol_version_, first_byte)) return fail(*error);

  // The Remaining Length, judged as soon as it is known (before the body).
  std::size_t length = 0;
  std::size_t header_size = 0;
  for (std::size_t index = 1;; ++index) {
    if (index > 4) {
      return fail(packet_error(first_byte >> 4, "malformed remaining length (more than 4 bytes)"));
    }
    if (index >= available.size()) return std::optional<Packet>();  // more bytes needed
    const auto digit = static_cast<std::uint8_t>(available[index]);
    length |= static_cast<std::size_t>(digit & 0x7F) << (7 * (index - 1));
    if ((digit & 0x80) == 0) {
      if (protocol_version_ == kMqtt5 && index > 1 && digit == 0) {
        return fail(packet_error(first_byte >> 4, "remaining length not in its shortest form"));
      }
      header_size = index + 1;
      break;
    }
  }
  if (header_size + length > max_packet_size_) {
    return fail(packet_error(first_byte >> 4, "packet of " + std::to_string(header_size + length) +
                                                  " bytes exceeds the maximum of " +
                                                  std::to_string(max_packet_size_)));
  }
  if (available.size() < header_size + length) return std::optional<Packet>();

  auto packet = parse_packet(protocol_version_, first_byte, available.substr(header_size, length));
  offset_ += header_size + length;
  if (!packet) return fail(packet.error());
  return std::optional<Packet>(std::move(*packet));
}

std::string connack_reason_text(int protocol_version, int code) {
  if (protocol_version == kMqtt311) {
    switch (code) {  // 3.2.2.3
      case 0:
        return "accepted";
      case 1:
        return "unacceptable protocol version";
      case 2:
        return "identifier rejected";
      case 3:
        return "server unavailable";
      case 4:
        return "bad user name or password";
      case 5:
        return "not authorized";
      default:
        break;
    }
  } else {
    switch (code) {  // 3.2.2.2
      case 0x00:
        return "success";
      case 0x80:
        return "unspecified error";
      case 0x81:
        return "malformed packet";
      case 0x82:
        return "protocol error";
      case 0x83:
        return "implementation specific error";
      case 0x84:
        return "unsupported protocol version";
      case 0x85:
        return "client identifier not valid";
      case 0x86:
        return "bad user name or password";
      case 0x87:
        return "not authorized";
      case 0x88:
        return "server unavailable";
      case 0x89:
        return "server busy";
      case 0x8A:
        return "banned";
      case 0x8C:
        return "bad authentication method";
      case 0x90:
        return "topic name invalid";
      case 0x95:
        return "packet too large";
      case 0x97:
        return "quota exceeded";
      case 0x99:
        return "payload format invalid";
      case 0x9A:
        return "retain not supported";
      case 0x9B:
        return "QoS not supported";
      case 0x9C:
        return "use another server";
      case 0x9D:
        return "server moved";
      case 0x9F:
        return "connection rate exceeded";
      default:
        break;
    }
  }
  return "reason code " + hex_byte(static_cast<unsigned>(code));
}

}  // namespace meter::agent::mqtt_wire
