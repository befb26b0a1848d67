// The one writer of the Prometheus text exposition format (0.0.4) behind
// /metrics: the daemon's counters (agent/ops/metrics.cpp) and the uplink's
// (agent/uplink/uplink_metrics.cpp) are both written with it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace meter::agent::prometheus {

// `# HELP name help` and `# TYPE name type`.
void header(std::string& out, std::string_view name, std::string_view type, std::string_view help);
// `name value`, or `name{labels} value` (labels already in `key="value"` form).
void sample(std::string& out, std::string_view name, std::int64_t value,
            std::string_view labels = {});
// A label value as the format wants it: backslash, double quote and newline escaped.
std::string escape_label(std::string_view value);
// One metric with a single unlabelled sample: its header, then the sample.
void metric(std::string& out, std::string_view name, std::string_view type, std::string_view help,
            std::int64_t value);

}  // namespace meter::agent::prometheus
