// The flag list in common/model/flags.* and the one in docs/PROTOCOL.md stay the same.
#include <catch2/catch.hpp>
#include <fstream>
#include <regex>
#include <set>
#include <string>

#include "common/model/flags.hpp"

using namespace meter;

TEST_CASE("every flag is documented in docs/PROTOCOL.md and nothing else is", "[flags]") {
  std::ifstream file(std::string(METER_SOURCE_DIR) + "/docs/PROTOCOL.md");
  REQUIRE(file);
  std::set<std::string> documented;
  bool in_section = false;
  std::string line;
  const std::regex row(R"(^\|\s*`([a-z_]+)`\s*\|)");
  while (std::getline(file, line)) {
    if (line.rfind("## ", 0) == 0) in_section = line == "## Flags";
    std::smatch match;
    if (in_section && std::regex_search(line, match, row)) documented.insert(match[1]);
  }
  std::set<std::string> in_code;
  for (const auto& entry : all_flags()) in_code.emplace(entry.name);
  CHECK(documented == in_code);
}

TEST_CASE("flag names round-trip and are listed sorted", "[flags]") {
  FlagSet all = 0;
  std::string previous;
  for (const auto& entry : all_flags()) {
    CHECK(flag_from_name(entry.name) == entry.flag);
    CHECK(previous < std::string(entry.name));
    previous = entry.name;
    all |= flag_bit(entry.flag);
  }
  CHECK(flag_names(all).size() == all_flags().size());
  CHECK(join_flags(flag_bit(Flag::out_of_order) | flag_bit(Flag::counter_reset), ';') ==
        "counter_reset;out_of_order");
  CHECK(join_flags(0, ';').empty());
  CHECK_FALSE(flag_from_name("no_such_flag"));
}
