// MQTT 3.1.1 and MQTT 5 packets for the batched ingest connection
// (agent/source/batched_source.hpp): the packets it sends, encoded, and a
// parser for what a broker sends it. Pure: bytes in, values or bytes out.
// Everything from the broker is hostile until checked; a malformed packet is
// an error (the connection is closed), never a crash, an over-read or an
// unbounded allocation (tests/fuzz/fuzz_mqtt_wire.cpp).
//
// Only what a subscriber that acknowledges QoS 1 needs: CONNECT without a
// will, SUBSCRIBE at one QoS, UNSUBSCRIBE, PUBACK, PINGREQ, DISCONNECT out;
// CONNACK, PUBLISH (QoS 0 and 1: the subscriptions ask for QoS 1, so a broker
// never sends QoS 2), SUBACK, UNSUBACK, PINGRESP, DISCONNECT (MQTT 5) in.
// No topic aliases are offered, so a PUBLISH that uses one is an error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/util/result.hpp"

namespace meter::agent::mqtt_wire {

inline constexpr int kMqtt311 = 4;
inline constexpr int kMqtt5 = 5;

struct ConnectOptions {
  int protocol_version = kMqtt311;  // kMqtt311 or kMqtt5
  std::string client_id;
  bool clean_start = false;  // 3.1.1: clean session
  std::uint16_t keepalive_s = 30;
  std::optional<std::string> username;
  std::optional<std::string> password;  // sent only with a username in 3.1.1
  // MQTT 5 only (properties; 0: the property is not sent):
  std::uint32_t session_expiry_s = 0;
  std::uint16_t receive_maximum = 0;
  std::uint32_t maximum_packet_size = 0;
};

std::string encode_connect(const ConnectOptions& options);
// Each filter at `qos` (0 or 1). MQTT 5 subscription options are the defaults.
std::string encode_subscribe(int protocol_version, std::uint16_t packet_id,
                             const std::vector<std::string>& filters, int qos);
std::string encode_unsubscribe(int protocol_version, std::uint16_t packet_id,
                               const std::vector<std::string>& filters);
// Success; the shortest form (MQTT 5: no reason code, no properties).
std::string encode_puback(int protocol_version, std::uint16_t packet_id);
std::string encode_pingreq();
// MQTT 5: reason 0 (normal), with a Session Expiry Interval property when
// `session_expiry_s` is set (0 ends the session at the broker).
std::string encode_disconnect(int protocol_version,
                              std::optional<std::uint32_t> session_expiry_s = std::nullopt);

// ---- from the broker ----

struct Connack {
  bool session_present = false;
  int reason_code = 0;  // 3.1.1: the return code (0 accepted); MQTT 5: the reason code
  // MQTT 5 properties the connection must honour (unset: not sent).
  std::optional<std::uint16_t> receive_maximum;
  std::optional<std::uint32_t> maximum_packet_size;
  std::optional<std::uint16_t> server_keepalive;
  std::optional<std::string> assigned_client_id;
  std::string reason_string;
};

struct Publish {
  std::string topic;    // bytes as sent (a broker checks UTF-8 on the way in)
  std::string payload;  // bytes
  int qos = 0;          // 0 or 1
  bool retain = false;
  bool dup = false;
  std::uint16_t packet_id = 0;  // 0 for QoS 0
};

struct Suback {
  std::uint16_t packet_id = 0;
  std::vector<int> reason_codes;  // one per filter: granted QoS, or >= 0x80 refused
};

struct Unsuback {
  std::uint16_t packet_id = 0;
  std::vector<int> reason_codes;  // MQTT 5 only (3.1.1 has none)
};

// PUBACK, PUBREC, PUBREL or PUBCOMP: a subscriber that publishes nothing gets
// none; parsed so that the connection can say what arrived.
struct Acknowledgement {
  int type = 0;  // the packet type, 4..7
  std::uint16_t packet_id = 0;
};

struct Pingresp {};

struct Disconnect {  // MQTT 5: the broker closes the connection, and why
  int reason_code = 0;
  std::string reason_string;
};

using Packet =
    std::variant<Connack, Publish, Suback, Unsuback, Acknowledgement, Pingresp, Disconnect>;

// Splits the broker's byte stream into packets. `feed` appends bytes; `next`
// returns the next whole packet, nothing while more bytes are needed, or an
// error: malformed (length, flags, strings, properties), a packet type a
// server must not send, QoS 2 or 3, a packet larger than `max_packet_size`.
// After an error the parser stays failed: the connection must be closed.
// Cost stays linear in the bytes fed (consumed bytes are dropped in bulk).
class Parser {
 public:
  Parser(int protocol_version, std::size_t max_packet_size);
  void feed(std::string_view bytes);
  Result<std::optional<Packet>> next();
  // Bytes fed and not yet returned as packets.
  std::size_t buffered() const { return buffer_.size() - offset_; }

 private:
  int protocol_version_;
  std::size_t max_packet_size_;
  std::string buffer_;
  std::size_t offset_ = 0;
  std::optional<Error> failed_;
};

// What a CONNACK's code means, for the log ("not authorized", ...).
std::string connack_reason_text(int protocol_version, int code);

}  // namespace meter::agent::mqtt_wire
