// A reload (agent/ops/config_reload.hpp): a fresh parse, swapped in only if
// valid, reporting the sections whose values changed.
#include <catch2/catch.hpp>

#include "agent/ops/config_reload.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

using namespace meter;
using namespace meter::agent;

namespace {

const std::string kBase =
    "gateway_id: reload-gw\n"
    "buffer:\n  path: /tmp/reload-test.db\n"
    "metrics:\n  energy: {kind: counter, unit: kWh}\n"
    "mappings:\n  - topic: \"meters/#\"\n"
    "mqtt:\n  host: 127.0.0.1\n";

Config parse(const std::string& text) {
  auto parsed = parse_config(text, "<test>");
  if (!parsed) FAIL(parsed.error().message);
  return *parsed;
}

}  // namespace

TEST_CASE("config reload: the same file changes nothing", "[config][reload]") {
  CHECK(changed_sections(parse(kBase), parse(kBase)).empty());
}

TEST_CASE("config reload: each changed section is named once, by value, alphabetically",
          "[config][reload]") {
  const Config before = parse(kBase);
  CHECK(changed_sections(before, parse(kBase + "  keepalive: 10s\n")) ==
        std::vector<std::string>{"mqtt"});
  auto mappings = kBase;
  mappings.replace(mappings.find("meters/#"), 8, "site/#");
  CHECK(changed_sections(before, parse(mappings)) == std::vector<std::string>{"mappings"});
  // A mapping's other settings count too, not only its topic.
  const Config plain = parse(kBase);
  Config other_format = plain;
  other_format.mappings.front().format = PayloadFormat::plain;
  CHECK(changed_sections(plain, other_format) == std::vector<std::string>{"mappings"});
  Config several = before;
  several.metrics["energy"].unit = "Wh";
  several.log.level = LogLevel::debug;
  several.uplink.url = "https://central.example.com";
  CHECK(changed_sections(before, several) == std::vector<std::string>{"log", "metrics", "uplink"});
}

TEST_CASE("config reload: reads the file again, an invalid one is refused with its position",
          "[config][reload]") {
  test::TempDir dir;
  const auto path = dir.file("agent.yaml");
  test::write_text_file(path, kBase);
  auto loaded = load_config(path);
  REQUIRE(loaded);
  test::write_text_file(path, kBase + "http:\n  listen: 127.0.0.1:9108\n");
  auto reloaded = reload_config(*loaded, std::nullopt);
  REQUIRE(reloaded);
  CHECK(reloaded->changed == std::vector<std::string>{"http"});
  CHECK(reloaded->config.http.listen == "127.0.0.1:9108");
  CHECK(reloaded->not_applied.empty());
  CHECK(describe_reload(path, reloaded->changed) == "reloaded " + path + ": changed http");
  CHECK(describe_reload(path, {}) == "reloaded " + path + ": nothing changed");

  test::write_text_file(path, kBase + "bogus_key: 1\n");
  auto refused = reload_config(*loaded, std::nullopt);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message.find("agent.yaml:") != std::string::npos);
}

TEST_CASE("config reload: buffer.path stays until a restart, the command line's override stays",
          "[config][reload]") {
  test::TempDir dir;
  const auto path = dir.file("agent.yaml");
  test::write_text_file(path, kBase);
  auto loaded = load_config(path);
  REQUIRE(loaded);
  auto moved = kBase;
  moved.replace(moved.find("/tmp/reload-test.db"), 19, "/tmp/elsewhere.db");
  test::write_text_file(path, moved);
  auto reloaded = reload_config(*loaded, std::nullopt);
  REQUIRE(reloaded);
  CHECK(reloaded->config.buffer.path == "/tmp/reload-test.db");
  REQUIRE(reloaded->not_applied.size() == 1);
  CHECK(reloaded->not_applied.front().find("buffer.path changes only on restart") !=
        std::string::npos);

  Config overridden = *loaded;
  overridden.buffer.path = "/tmp/override.db";
  auto with_override = reload_config(overridden, std::string("/tmp/override.db"));
  REQUIRE(with_override);
  CHECK(with_override->config.buffer.path == "/tmp/override.db");
  CHECK(with_override->not_applied.empty());
}
