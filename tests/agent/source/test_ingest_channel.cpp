// The daemon <-> ingest worker frames (agent/source/ingest_channel.*): what
// is encoded comes back exactly, however the stream is cut; anything else is
// refused, never read past its end.
#include <catch2/catch.hpp>
#include <random>
#include <string>

#include "agent/source/ingest_channel.hpp"

using namespace meter;
using namespace meter::agent;

namespace {

RawMessage sample(int i) {
  RawMessage message;
  message.topic = "meters/m" + std::to_string(i);
  message.payload = std::string("{\"v\":") + std::to_string(i) + "}";
  message.payload.push_back('\0');
  message.payload.push_back(static_cast<char>(0xff));
  message.qos = i % 3;
  message.retained = i % 2 == 0;
  message.dup = i % 5 == 0;
  message.received_ms = 1767225600000LL + i;
  return message;
}

void check_same(const RawMessage& a, const RawMessage& b) {
  CHECK(a.topic == b.topic);
  CHECK(a.payload == b.payload);
  CHECK(a.qos == b.qos);
  CHECK(a.retained == b.retained);
  CHECK(a.dup == b.dup);
  CHECK(a.received_ms == b.received_ms);
}

}  // namespace

TEST_CASE("ingest channel: messages and settings come back exactly, in any cut of the stream",
          "[ingest_channel]") {
  WorkerSettings settings;
  settings.mqtt.host = "broker.example";
  settings.mqtt.port = 8883;
  settings.mqtt.tls.enabled = true;
  settings.mqtt.tls.verify = false;
  settings.mqtt.tls.ca_file = "/etc/ca.pem";
  settings.mqtt.password_env = "MQTT_PASSWORD";
  settings.mqtt.protocol_version = 5;
  settings.mqtt.ingest_workers = 4;
  settings.gateway_id = "gw";
  settings.client_id = "meter-agent-gw-ingest-3";
  settings.filters = {"$share/meter-agent-gw/tele/+/SENSOR", "$share/meter-agent-gw/shellies/#"};
  settings.stale_filters = {"$share/meter-agent-gw/old/#"};
  settings.drain = true;
  settings.log_level = LogLevel::debug;

  std::string stream = encode_frame(FrameType::settings, encode_settings(settings));
  for (int i = 0; i < 20; ++i)
    stream += encode_frame(FrameType::message, encode_message(sample(i)));
  stream += encode_frame(FrameType::committed, {});

  std::mt19937 random(7);
  for (int round = 0; round < 50; ++round) {
    FrameSplitter splitter;
    std::vector<Frame> frames;
    std::size_t at = 0;
    while (at < stream.size()) {
      const std::size_t piece = std::min<std::size_t>(stream.size() - at, 1 + random() % 40);
      splitter.feed(std::string_view(stream).substr(at, piece));
      at += piece;
      for (;;) {
        auto next = splitter.next();
        REQUIRE(next);
        if (!*next) break;
        frames.push_back(std::move(**next));
      }
    }
    REQUIRE(frames.size() == 22U);
    REQUIRE(frames[0].type == FrameType::settings);
    auto decoded = decode_settings(frames[0].body);
    REQUIRE(decoded);
    CHECK(*decoded == settings);
    for (int i = 0; i < 20; ++i) {
      REQUIRE(frames[i + 1].type == FrameType::message);
      auto message = decode_message(frames[i + 1].body);
      REQUIRE(message);
      check_same(*message, sample(i));
    }
    CHECK(frames[21].type == FrameType::committed);
    CHECK(frames[21].body.empty());
  }
}

TEST_CASE("ingest channel: broken frames are refused", "[ingest_channel]") {
  SECTION("an unknown type") {
    FrameSplitter splitter;
    splitter.feed(std::string("\x00\x00\x00\x00Z", 5));
    CHECK_FALSE(splitter.next());
  }
  SECTION("a length beyond the largest message") {
    FrameSplitter splitter;
    splitter.feed(std::string("\xff\xff\xff\x7fM", 5));
    CHECK_FALSE(splitter.next());
  }
  SECTION("a message whose topic runs past its end") {
    auto body = encode_message(sample(1));
    body[10] = '\x7f';
    CHECK_FALSE(decode_message(body));
    CHECK_FALSE(decode_message(body.substr(0, 5)));
  }
  SECTION("settings cut short or with bytes after them") {
    const auto body = encode_settings(WorkerSettings{});
    CHECK(decode_settings(body));
    for (std::size_t cut = 0; cut < body.size(); ++cut) {
      INFO("cut at " << cut);
      CHECK_FALSE(decode_settings(body.substr(0, cut)));
    }
    CHECK_FALSE(decode_settings(body + "x"));
  }
}
