// `meter-agent discover` against a real mosquitto: retained messages of
// several firmwares are what it hears when it subscribes; it must recognize
// them, print a mappings block that decodes them, list what nothing fits, and
// report a subscription the broker's ACL refuses. Plus its rules on their own.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "agent/cli/discover.hpp"
#include "support/cli_run.hpp"
#include "support/mosquitto.hpp"
#include "support/mqtt_client.hpp"
#include "support/temp_dir.hpp"

using meter::test::Mosquitto;
using meter::test::quote;
using meter::test::read_file;
using meter::test::Run;
using meter::test::run;
using meter::test::TempDir;
using meter::test::TestPublisher;
using meter::test::write_file;

namespace {

const std::string kSource = METER_SOURCE_DIR;

std::string write_config(const TempDir& dir, int port) {
  const std::string path = dir.file("agent.yaml");
  write_file(path,
             "gateway_id: gw\n"
             "buffer: {path: " +
                 dir.file("buffer.db") +
                 "}\n"
                 "presets_dir: " +
                 kSource +
                 "/config/presets\n"
                 "mqtt: {host: 127.0.0.1, port: " +
                 std::to_string(port) +
                 "}\n"
                 "metrics:\n"
                 "  energy: {kind: counter, unit: kWh}\n"
                 "mappings:\n"
                 "  - topic: \"meters/#\"\n");
  return path;
}

}  // namespace

TEST_CASE("discover recognizes firmwares on a real broker and prints a block that fits", "[cli]") {
  Mosquitto broker;
  {
    TestPublisher publisher(broker.port(), "discover-test-publisher");
    publisher.publish("tele/plug1/SENSOR",
                      R"({"Time":"2024-07-01T12:00:00","ENERGY":{"Total":1.5,"Power":20}})", true);
    publisher.publish("shellies/plug-s/relay/0/energy", "81010", true);
    publisher.publish("pro3em/status/emdata:0", R"({"id":0,"total_act":4841.02})", true);
    publisher.publish("pro3em/status/sys", R"({"uptime":28980})", true);
    publisher.publish("tele/plug1/INFO3",
                      R"({"Info3":{"RestartReason":"Software/System restart","BootCount":184}})",
                      true);
    publisher.publish("solar/1164/0/yieldtotal", "1234.5", true);
    publisher.publish("garden/weather7/temp", "21.5", true);
    publisher.flush();
  }
  TempDir dir;
  const std::string config = write_config(dir, broker.port());
  auto found = run(dir, "discover --config " + quote(config) + " --seconds 2");
  INFO(found.out << found.err);
  REQUIRE(found.exit_code == 0);
  CHECK_THAT(found.out, Catch::Contains("7 messages on 7 topics"));
  CHECK_THAT(found.out, Catch::Contains("QoS 0, clean session"));
  CHECK_THAT(found.out, Catch::Contains("as meter-agent-discover-"));
  CHECK_THAT(found.out,
             Catch::Contains("metrics:\n  energy: {kind: counter, unit: kWh}\n"
                             "  power: {kind: gauge, unit: W}\n"
                             "  uptime: {kind: gauge, unit: s, role: uptime_seconds}\n"
                             "  boot_count: {kind: gauge, unit: count, role: boot_count}\n"
                             "mappings:\n  - preset: tasmota\n  - preset: tasmota_boot\n"
                             "  - preset: shelly_gen1\n"
                             "  - preset: shelly_gen2\n  - preset: opendtu\n"));
  CHECK_THAT(found.out, Catch::Contains("topics nothing fits (1 shapes):\n"
                                        "  garden/+/temp: 1 messages, e.g. garden/weather7/temp "
                                        "'21.5': no preset takes this topic"));
  // The printed block is a working config.
  const auto begin = found.out.find("metrics:");
  const auto end = found.out.find("\ntopics nothing fits");
  REQUIRE(begin != std::string::npos);
  REQUIRE(end != std::string::npos);
  write_file(dir.file("found.yaml"), "gateway_id: gw\npresets_dir: " + kSource +
                                         "/config/presets\n" +
                                         found.out.substr(begin, end - begin + 1));
  CHECK(run(dir, "check-config --config " + quote(dir.file("found.yaml"))).exit_code == 0);
}

TEST_CASE("discover reports a broker that refuses it, and topics an ACL hides", "[cli]") {
  {
    // No anonymous access: the CONNECT is refused (not authorized).
    Mosquitto broker("", "allow_anonymous false\n");
    TempDir dir;
    auto refused =
        run(dir, "discover --config " + quote(write_config(dir, broker.port())) + " --seconds 1");
    INFO(refused.out << refused.err << broker.log());
    CHECK(refused.exit_code == 1);
    CHECK_THAT(refused.err, Catch::Contains("not authorized"));
  }
  // mosquitto grants a subscription its ACL does not allow and drops what the
  // user may not read: discover hears nothing and says why that may be.
  TempDir acl_dir;
  write_file(acl_dir.file("acl"), "topic read allowed/#\ntopic write #\n");
  Mosquitto broker("", "acl_file " + acl_dir.file("acl") + "\n");
  {
    TestPublisher publisher(broker.port(), "discover-test-publisher");
    publisher.publish("secret/plug/SENSOR", "1", true);
    publisher.flush();
  }
  TempDir dir;
  const std::string config = write_config(dir, broker.port());
  auto hidden = run(dir, "discover --config " + quote(config) + " --seconds 1");
  INFO(hidden.out << hidden.err << broker.log());
  CHECK(hidden.exit_code == 0);
  CHECK_THAT(hidden.out, Catch::Contains("0 messages on 0 topics"));
  CHECK_THAT(hidden.out, Catch::Contains("the broker's ACL may hide topics from this user"));
}

TEST_CASE("discover's rules: firmware by topic and payload, shapes by digits", "[discover]") {
  using meter::agent::recognize_preset;
  using meter::agent::SeenMessage;
  CHECK(recognize_preset(SeenMessage{"tele/p/SENSOR", R"({"ENERGY":{"Total":1}})"}) == "tasmota");
  CHECK(recognize_preset(SeenMessage{"tele/p/SENSOR", R"({"DS18B20":{}})"}).empty());
  CHECK(recognize_preset(SeenMessage{"x/events/rpc", R"({"method":"NotifyStatus","params":{}})"}) ==
        "shelly_rpc");
  CHECK(recognize_preset(SeenMessage{"zigbee2mqtt/plug/power", "5"}) == "zigbee2mqtt_attributes");
  CHECK(recognize_preset(SeenMessage{"zigbee2mqtt/living room/plug", R"({"energy":1})"}) ==
        "zigbee2mqtt");
  CHECK(recognize_preset(SeenMessage{"node/sensor/power/state", "5"}) == "esphome");
  CHECK(recognize_preset(SeenMessage{"emon/emontx4/E1", "5"}) == "emonhub");
  CHECK(recognize_preset(SeenMessage{"dsmr/json", R"({"electricity_delivered_1":"1"})"}) ==
        "dsmr_reader");
  CHECK(meter::agent::topic_shape("tele/plug1/SENSOR") == "tele/+/SENSOR");
}
