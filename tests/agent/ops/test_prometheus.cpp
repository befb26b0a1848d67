// The one Prometheus text writer (agent/ops/prometheus.hpp), and the daemon's
// metrics written with it as they were before it (a labelled family included).
#include <catch2/catch.hpp>
#include <string>

#include "agent/ops/metrics.hpp"
#include "agent/ops/prometheus.hpp"

using namespace meter;
using namespace meter::agent;

TEST_CASE("a metric is its HELP, its TYPE and one sample line", "[prometheus]") {
  std::string out;
  prometheus::metric(out, "meter_x_total", "counter", "things seen", -3);
  CHECK(out ==
        "# HELP meter_x_total things seen\n"
        "# TYPE meter_x_total counter\n"
        "meter_x_total -3\n");
}

TEST_CASE("a labelled family is one header and a sample per label set", "[prometheus]") {
  std::string out;
  prometheus::header(out, "meter_y", "gauge", "per flag");
  prometheus::sample(out, "meter_y", 2, "flag=\"gap\"");
  prometheus::sample(out, "meter_y", 0);
  CHECK(out ==
        "# HELP meter_y per flag\n"
        "# TYPE meter_y gauge\n"
        "meter_y{flag=\"gap\"} 2\n"
        "meter_y 0\n");
}

TEST_CASE("the daemon's buffer metrics end as before, flags labelled", "[prometheus]") {
  Metrics metrics;
  BufferStatus status;
  status.inbox_bytes = 512;
  status.flag_counts = {{"gap", 2}, {"clock_unsynced", 5}};
  metrics.set_buffer_status(status);
  const auto out = metrics.render_prometheus(1735689700000);
  // What commit cc1b410 wrote for this status (its last lines).
  const std::string tail =
      "# HELP meter_agent_buffer_inbox_bytes acknowledged messages not yet moved into the raw "
      "log, in bytes\n"
      "# TYPE meter_agent_buffer_inbox_bytes gauge\n"
      "meter_agent_buffer_inbox_bytes 512\n"
      "# HELP meter_agent_buffer_flagged_measurements measurements carrying a flag\n"
      "# TYPE meter_agent_buffer_flagged_measurements gauge\n"
      "meter_agent_buffer_flagged_measurements{flag=\"clock_unsynced\"} 5\n"
      "meter_agent_buffer_flagged_measurements{flag=\"gap\"} 2\n";
  REQUIRE(out.size() >= tail.size());
  CHECK(out.substr(out.size() - tail.size()) == tail);
}

TEST_CASE("messages a mapping took without a reading are counted per mapping", "[prometheus]") {
  Metrics metrics;
  NormalizeStats stats;
  stats.no_reading_by_mapping = {{"+/status/+ when -1=em1:* (shelly_gen2)", 2}, {"", 1}};
  metrics.add(stats);
  stats.no_reading_by_mapping = {{"+/status/+ when -1=em1:* (shelly_gen2)", 3}};
  metrics.add(stats);
  const auto out = metrics.render_prometheus(1735689700000);
  CHECK_THAT(out, Catch::Contains("# TYPE meter_agent_mapping_no_reading_total counter\n"
                                  "meter_agent_mapping_no_reading_total{mapping=\"\"} 1\n"
                                  "meter_agent_mapping_no_reading_total{mapping=\"+/status/+ when "
                                  "-1=em1:* (shelly_gen2)\"} 5\n"));
  CHECK(prometheus::escape_label("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
}
