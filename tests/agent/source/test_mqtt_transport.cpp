// The batched ingest connection's byte stream against a real mosquitto,
// speaking MQTT 3.1.1 bytes written out by hand.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <stdexcept>
#include <string>

#include "agent/source/mqtt_transport.hpp"
#include "support/mosquitto.hpp"
#include "support/test_pki.hpp"

using namespace meter;
using namespace meter::agent;
using namespace meter::test;
using namespace std::chrono_literals;

namespace {

// One PKI for the whole file: making it runs openssl seven times.
const TestPki& pki() {
  static const TestPki made;
  return made;
}

// The remaining length of an MQTT packet (MQTT 3.1.1 section 2.2.3).
std::string remaining_length(std::size_t length) {
  std::string encoded;
  do {
    auto digit = static_cast<unsigned char>(length % 128);
    length /= 128;
    if (length > 0) digit |= 0x80;
    encoded += static_cast<char>(digit);
  } while (length > 0);
  return encoded;
}

std::string with_length(std::string_view text) {
  return std::string{static_cast<char>(text.size() >> 8), static_cast<char>(text.size() & 0xff)} +
         std::string(text);
}

// CONNECT, MQTT 3.1.1, clean session, keep alive 30 s, an empty client id
// (the broker assigns one).
const std::string kConnect("\x10\x0c\x00\x04MQTT\x04\x02\x00\x1e\x00\x00", 14);
// CONNACK: session present 0, return code 0 (accepted).
const std::string kConnectionAccepted("\x20\x02\x00\x00", 4);

std::string subscribe(std::string_view topic) {
  const std::string body = std::string("\x00\x01", 2) + with_length(topic) + std::string(1, '\0');
  return "\x82" + remaining_length(body.size()) + body;
}

std::string publish_at_most_once(std::string_view topic, std::string_view payload) {
  const std::string body = with_length(topic) + std::string(payload);
  return "\x30" + remaining_length(body.size()) + body;
}

MqttConfig plain_config(int port, std::string host = "127.0.0.1") {
  MqttConfig mqtt;
  mqtt.host = std::move(host);
  mqtt.port = port;
  return mqtt;
}

MqttConfig tls_config(int port, const std::string& ca_file, std::string host = "127.0.0.1") {
  auto mqtt = plain_config(port, std::move(host));
  mqtt.tls.enabled = true;
  mqtt.tls.ca_file = ca_file;
  return mqtt;
}

// Reads until `count` bytes are there, an error, or `timeout`.
Result<std::string> read_bytes(MqttTransport& transport, std::size_t count,
                               std::chrono::milliseconds timeout) {
  std::string into;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (into.size() < count && std::chrono::steady_clock::now() < deadline) {
    auto read = transport.read(into, count - into.size(), 100ms);
    if (!read) return read.error();
  }
  return into;
}

// CONNECT, then the broker's CONNACK.
void require_accepted(MqttTransport& transport) {
  REQUIRE(transport.write(kConnect, 5s).ok());
  auto answer = read_bytes(transport, kConnectionAccepted.size(), 5s);
  INFO((answer ? "" : answer.error().message));
  REQUIRE(answer.ok());
  REQUIRE(*answer == kConnectionAccepted);
}

std::unique_ptr<MqttTransport> require_connected(const MqttConfig& mqtt) {
  auto connected = MqttTransport::connect(mqtt, 5s);
  INFO((connected ? "" : connected.error().message));
  REQUIRE(connected.ok());
  return std::move(*connected);
}

std::string connect_error(const MqttConfig& mqtt) {
  auto connected = MqttTransport::connect(mqtt, 5s);
  REQUIRE_FALSE(connected.ok());
  return connected.error().message;
}

// A loopback port whose connections the kernel completes (the listen
// backlog) but that no one ever accepts, reads or answers.
class SilentListener {
 public:
  SilentListener() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      throw std::runtime_error("cannot listen on a loopback port");
    }
    port_ = ntohs(address.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;

  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

}  // namespace

TEST_CASE("mqtt transport: plain TCP carries CONNECT and CONNACK, byte by byte if asked",
          "[mqtt_transport]") {
  Mosquitto broker;
  auto transport = require_connected(plain_config(broker.port()));
  CHECK(transport->describe() == "tcp://127.0.0.1:" + std::to_string(broker.port()));
  REQUIRE(transport->write(kConnect, 5s).ok());

  // max_bytes is a limit: the first read takes one byte of the four.
  std::string first;
  auto read = transport->read(first, 1, 5s);
  REQUIRE(read.ok());
  REQUIRE(*read == 1);
  REQUIRE(first == kConnectionAccepted.substr(0, 1));
  auto rest = read_bytes(*transport, 3, 5s);
  REQUIRE(rest.ok());
  REQUIRE(*rest == kConnectionAccepted.substr(1));

  SECTION("a read without data returns nothing once the time is up") {
    std::string into = "kept";
    auto nothing = transport->read(into, 1024, 200ms);
    REQUIRE(nothing.ok());
    CHECK(*nothing == 0);
    CHECK(into == "kept");
    auto no_wait = transport->read(into, 1024, 0ms);
    REQUIRE(no_wait.ok());
    CHECK(*no_wait == 0);
  }
  SECTION("close is idempotent; the transport refuses use afterwards") {
    transport->close();
    transport->close();
    std::string into;
    CHECK_FALSE(transport->read(into, 16, 0ms).ok());
    CHECK_FALSE(transport->write(kConnect, 1s).ok());
  }
}

TEST_CASE("mqtt transport: TLS verifies the broker by address and by name", "[mqtt_transport]") {
  Mosquitto broker(pki().mosquitto_listener());
  // "localhost" may resolve to ::1 first, where nothing listens: the next address is tried.
  const std::string host = GENERATE(std::string("127.0.0.1"), std::string("localhost"));
  INFO("host " << host);
  auto transport = require_connected(tls_config(broker.port(), pki().file("ca.pem"), host));
  CHECK(transport->describe() == "ssl://" + host + ":" + std::to_string(broker.port()));
  require_accepted(*transport);
}

TEST_CASE("mqtt transport: a certificate from another CA or for another address is refused",
          "[mqtt_transport]") {
  // A second TLS listener on 127.0.0.2: the certificate names 127.0.0.1, not it.
  const int other_address_port = free_port();
  Mosquitto broker(pki().mosquitto_listener(), "listener " + std::to_string(other_address_port) +
                                                   " 127.0.0.2\n" + pki().mosquitto_listener());
  // The broker's start waits for its first listener only.
  REQUIRE(wait_until(
      [&] {
        return MqttTransport::connect(plain_config(other_address_port, "127.0.0.2"), 1s).ok();
      },
      10s));

  SECTION("another CA") {
    const auto error = connect_error(tls_config(broker.port(), pki().file("other.pem")));
    CHECK_THAT(error, Catch::StartsWith("cannot connect to ssl://127.0.0.1:" +
                                        std::to_string(broker.port()) + ": "));
    CHECK_THAT(error, Catch::Contains("certificate verify failed"));
  }
  SECTION("another CA, verify: false, is accepted") {
    auto mqtt = tls_config(broker.port(), pki().file("other.pem"));
    mqtt.tls.verify = false;
    auto transport = require_connected(mqtt);
    require_accepted(*transport);
  }
  SECTION("the right CA, an address the certificate does not name") {
    const auto error =
        connect_error(tls_config(other_address_port, pki().file("ca.pem"), "127.0.0.2"));
    CHECK_THAT(error, Catch::Contains("certificate verify failed"));
    CHECK_THAT(error, Catch::Contains("IP address mismatch"));
  }
}

TEST_CASE("mqtt transport: a name the certificate does not hold is refused", "[mqtt_transport]") {
  // This certificate names 127.0.0.1 only, not localhost.
  Mosquitto broker(pki().mosquitto_listener(false, "server-address.pem"));
  CHECK_THAT(connect_error(tls_config(broker.port(), pki().file("ca.pem"), "localhost")),
             Catch::EndsWith("certificate verify failed: hostname mismatch"));
  auto transport = require_connected(tls_config(broker.port(), pki().file("ca.pem"), "127.0.0.1"));
  require_accepted(*transport);
}

TEST_CASE("mqtt transport: a client certificate where the broker requires one",
          "[mqtt_transport]") {
  Mosquitto broker(pki().mosquitto_listener(true));
  auto mqtt = tls_config(broker.port(), pki().file("ca.pem"));

  SECTION("presented: accepted") {
    mqtt.tls.cert_file = pki().file("client.pem");
    mqtt.tls.key_file = pki().file("client.key");
    auto transport = require_connected(mqtt);
    require_accepted(*transport);
  }
  SECTION("missing: the handshake or the first read fails, and no CONNACK comes") {
    auto connected = MqttTransport::connect(mqtt, 5s);
    if (connected) {
      // TLS 1.3: the broker checks the client's certificate after the client
      // has finished its handshake, so the refusal arrives as the first read.
      (void)(*connected)->write(kConnect, 5s);
      auto answer = read_bytes(**connected, kConnectionAccepted.size(), 5s);
      INFO((answer ? "a CONNACK came: " + *answer : answer.error().message));
      REQUIRE_FALSE(answer.ok());
    }
  }
  SECTION("a key that is not the certificate's, or a file that is not there, is named") {
    mqtt.tls.cert_file = pki().file("client.pem");
    mqtt.tls.key_file = pki().file("server.key");
    CHECK_THAT(
        connect_error(mqtt),
        Catch::EndsWith(": mqtt.tls.key_file " + pki().file("server.key") +
                        " is not the key of mqtt.tls.cert_file " + pki().file("client.pem")));
    mqtt.tls.key_file = pki().file("client.key");
    mqtt.tls.ca_file = pki().file("missing.pem");
    CHECK_THAT(connect_error(mqtt),
               Catch::EndsWith(": cannot read mqtt.tls.ca_file " + pki().file("missing.pem") +
                               ": No such file or directory"));
    // A file that is there but holds no certificate.
    mqtt.tls.ca_file = pki().file("client.key");
    CHECK_THAT(connect_error(mqtt),
               Catch::Contains("cannot read mqtt.tls.ca_file " + pki().file("client.key") + ": "));
  }
}

TEST_CASE("mqtt transport: a closed port and an unknown name fail with their cause",
          "[mqtt_transport]") {
  const int closed_port = free_port();
  const auto refused = connect_error(plain_config(closed_port));
  CHECK(refused == "cannot connect to tcp://127.0.0.1:" + std::to_string(closed_port) +
                       ": connection refused");
  const auto unknown = connect_error(plain_config(1883, "nonexistent.invalid"));
  // "no such host" where a resolver answers; where none can be reached (the
  // VM of scripts/vm-test.sh has no network) the lookup itself failed, and says so.
  const std::string prefix = "cannot connect to tcp://nonexistent.invalid:1883: ";
  CHECK_THAT(unknown, Catch::Equals(prefix + "no such host") ||
                          Catch::StartsWith(prefix + "name lookup failed: "));
}

TEST_CASE("mqtt transport: a read after the broker dropped the connection is an error",
          "[mqtt_transport]") {
  const bool tls = GENERATE(false, true);
  INFO((tls ? "TLS" : "TCP"));
  Mosquitto broker(tls ? pki().mosquitto_listener() : "");
  auto transport = require_connected(tls ? tls_config(broker.port(), pki().file("ca.pem"))
                                         : plain_config(broker.port()));
  require_accepted(*transport);
  // Packet type 0 is reserved: mosquitto drops a client that sends it.
  REQUIRE(transport->write(std::string("\x00\x00", 2), 5s).ok());
  std::string into;
  Status outcome = Ok{};
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (outcome.ok() && std::chrono::steady_clock::now() < deadline) {
    auto read = transport->read(into, 1024, 100ms);
    if (!read) outcome = read.error();
  }
  REQUIRE_FALSE(outcome.ok());
  CHECK(outcome.error().message == "the broker closed the connection");
  CHECK(into.empty());
}

TEST_CASE("mqtt transport: a 1 MiB PUBLISH goes out and comes back whole", "[mqtt_transport]") {
  const bool tls = GENERATE(false, true);
  INFO((tls ? "TLS" : "TCP"));
  Mosquitto broker(tls ? pki().mosquitto_listener() : "");
  auto transport = require_connected(tls ? tls_config(broker.port(), pki().file("ca.pem"))
                                         : plain_config(broker.port()));
  require_accepted(*transport);
  REQUIRE(transport->write(subscribe("transport/big"), 5s).ok());
  auto granted = read_bytes(*transport, 5, 5s);
  REQUIRE(granted.ok());
  REQUIRE(*granted == std::string("\x90\x03\x00\x01\x00", 5));

  std::string payload(1024 * 1024, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 131 % 251);
  const auto publish = publish_at_most_once("transport/big", payload);
  REQUIRE(transport->write(publish, 5s).ok());
  // The subscription hands the same QoS 0 PUBLISH back, byte for byte.
  auto echoed = read_bytes(*transport, publish.size(), 10s);
  REQUIRE(echoed.ok());
  REQUIRE(echoed->size() == publish.size());
  REQUIRE(*echoed == publish);
}

TEST_CASE("mqtt transport: a broker that never answers the handshake or never reads times out",
          "[mqtt_transport]") {
  SilentListener silent;
  SECTION("the TLS handshake waits for the server's hello within the connect limit") {
    auto connected = MqttTransport::connect(tls_config(silent.port(), pki().file("ca.pem")), 300ms);
    REQUIRE_FALSE(connected.ok());
    CHECK(connected.error().message ==
          "cannot connect to ssl://127.0.0.1:" + std::to_string(silent.port()) +
              ": timed out after 300ms");
  }
  SECTION("a write that fills both sides' buffers fails, and the transport stays failed") {
    auto transport = require_connected(plain_config(silent.port()));
    // More than loopback's socket buffers hold (a few MiB each way).
    const std::string flood(64 * 1024 * 1024, 'x');
    const auto written = transport->write(flood, 200ms);
    REQUIRE_FALSE(written.ok());
    CHECK(written.error().message == "no byte could be sent for 200ms");
    const auto again = transport->write("x", 200ms);
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().message == written.error().message);
  }
}

TEST_CASE("mqtt transport: an IPv6 address literal", "[mqtt_transport]") {
  // A TLS listener on ::1, which the test certificate does not name.
  const int port = free_port();
  Mosquitto broker("", "listener " + std::to_string(port) + " ::1\n" + pki().mosquitto_listener());
  REQUIRE(
      wait_until([&] { return MqttTransport::connect(plain_config(port, "::1"), 1s).ok(); }, 10s));
  auto mqtt = tls_config(port, pki().file("ca.pem"), "::1");

  SECTION("connects, described in brackets") {
    mqtt.tls.verify = false;
    auto transport = require_connected(mqtt);
    CHECK(transport->describe() == "ssl://[::1]:" + std::to_string(port));
    require_accepted(*transport);
  }
  SECTION("is checked against the certificate's addresses") {
    CHECK_THAT(connect_error(mqtt),
               Catch::EndsWith("certificate verify failed: IP address mismatch"));
  }
}
