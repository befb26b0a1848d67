// The configuration's `metrics` section: each metric's kind and unit, and the
// series rules of docs/QUALITY.md (jump_threshold, glitch_window, max_rate,
// rollback_max, gap_factor, direction, period, period_zone, role).
#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>
#include <utility>

#include "common/config/config.hpp"
#include "common/config/parser.hpp"

namespace meter::config_parser {

namespace {

// Keys that describe how a register counts: meaningless on a gauge. `role`
// is not among them: a gauge (uptime) may be restart evidence too.
constexpr std::string_view kCounterOnlyKeys[] = {"jump_threshold", "glitch_window", "max_rate",
                                                 "rollback_max",   "gap_factor",    "direction",
                                                 "period",         "period_zone"};

// A bound on the glitch window: the engine waits for that many readings
// after an off-course one, so a huge window only delays every decision.
constexpr std::uint64_t kMaxGlitchWindow = 1000;

}  // namespace

bool Parser::parse_metrics(const Value& value,
                           std::map<std::string, MetricConfig, std::less<>>& out) {
  std::vector<Entry> entries;
  if (!read_map(value, std::nullopt, entries)) return false;
  if (entries.empty()) return fail(value, "at least one metric is required");
  for (const Entry& entry : entries) {
    if (!is_name(entry.key, false)) {
      return fail(entry.key_mark, "metrics: invalid metric name " + quote(entry.key) +
                                      "; expected 1 to 64 characters of a-z, 0-9, '_'");
    }
    MetricConfig metric;
    metric.name = entry.key;
    if (!parse_metric(entry.value, metric)) return false;
    out.emplace(metric.name, std::move(metric));
  }
  return true;
}

bool Parser::parse_metric(const Value& value, MetricConfig& out) {
  std::vector<Entry> entries;
  if (!read_map(value,
                KeyList{"kind", "unit", "jump_threshold", "glitch_window", "max_rate",
                        "rollback_max", "gap_factor", "direction", "period", "period_zone", "role"},
                entries)) {
    return false;
  }
  for (const Entry& entry : entries) {
    bool ok = true;
    if (entry.key == "kind") {
      ok = one_of(entry.value, {{"counter", MetricKind::counter}, {"gauge", MetricKind::gauge}},
                  out.kind);
    } else if (entry.key == "unit") {
      ok = parse_unit(entry.value, out.unit);
    } else if (entry.key == "jump_threshold") {
      ok = parse_decimal_above(entry.value, Decimal::from_int(0), false, out.jump_threshold);
    } else if (entry.key == "glitch_window") {
      int window = 0;
      ok = whole_number(entry.value, 0, kMaxGlitchWindow, window);
      out.glitch_window = static_cast<std::size_t>(window);
    } else if (entry.key == "max_rate") {
      ok = parse_decimal_above(entry.value, Decimal::from_int(0), false, out.max_rate);
    } else if (entry.key == "rollback_max") {
      ok = parse_decimal_above(entry.value, Decimal::from_int(0), true, out.rollback_max);
    } else if (entry.key == "gap_factor") {
      std::optional<Decimal> factor;
      ok = parse_decimal_above(entry.value, Decimal::from_int(1), false, factor);
      if (ok) out.gap_factor = std::move(factor).value();
    } else if (entry.key == "direction") {
      ok = one_of(entry.value,
                  {{"import", Direction::imported},
                   {"export", Direction::exported},
                   {"net", Direction::net}},
                  out.direction);
    } else if (entry.key == "period") {
      ok = one_of(entry.value, {{"none", Period::none}, {"daily", Period::daily}}, out.period);
    } else if (entry.key == "period_zone") {
      ok = parse_zone(entry.value, out.period_zone_name, out.period_zone);
    } else if (entry.key == "role") {
      ok = one_of(
          entry.value,
          {{"uptime_seconds", MetricRole::uptime_seconds}, {"boot_count", MetricRole::boot_count}},
          out.role);
    }
    if (!ok) return false;
  }
  if (!require(value, entries, KeyList{"kind", "unit"})) return false;
  return validate_metric(entries, out);
}

bool Parser::validate_metric(const std::vector<Entry>& entries, const MetricConfig& metric) {
  if (metric.kind != MetricKind::counter) {
    // In document order, so the first offending key is the one named.
    for (const Entry& entry : entries) {
      for (const std::string_view key : kCounterOnlyKeys) {
        if (entry.key == key) {
          return fail(entry.key_mark,
                      entry.value.path + ": only allowed for kind counter, not gauge");
        }
      }
    }
  }
  const Entry* period_zone = find_entry(entries, "period_zone");
  if (metric.period == Period::daily && period_zone == nullptr) {
    const Entry* period = find_entry(entries, "period");
    return fail(period->key_mark,
                period->value.path +
                    ": period daily needs period_zone (the IANA zone whose midnight resets "
                    "the register, e.g. Europe/Berlin)");
  }
  if (metric.period != Period::daily && period_zone != nullptr) {
    return fail(period_zone->key_mark,
                period_zone->value.path + ": only allowed with period daily");
  }
  return true;
}

bool Parser::parse_unit(const Value& value, std::string& out) {
  constexpr std::string_view kExpected = "a unit without whitespace or '|'";
  if (!scalar(value, kExpected, out)) return false;
  // '|' separates the fields hashed into an event id; whitespace would make
  // "kWh" and "kWh " two different units.
  bool ok = !out.empty();
  for (const char c : out) {
    const auto u = static_cast<unsigned char>(c);
    ok = ok && u > 0x20 && u != 0x7F && c != '|';
  }
  if (!ok) return fail_expected(value, kExpected);
  return true;
}

bool Parser::parse_decimal_above(const Value& value, const Decimal& above, bool or_equal,
                                 std::optional<Decimal>& out) {
  const std::string expected = std::string("a decimal number ") +
                               (or_equal ? "of at least " : "greater than ") + above.text();
  std::string text;
  if (!scalar(value, expected, text)) return false;
  // From the text, never through double: the value is compared exactly.
  Result<Decimal> parsed = Decimal::parse(text);
  if (!parsed) return fail_expected(value, expected);
  if (or_equal ? *parsed < above : *parsed <= above) return fail_expected(value, expected);
  out = std::move(parsed).value();
  return true;
}

}  // namespace meter::config_parser
