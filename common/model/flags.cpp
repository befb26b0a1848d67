#include "common/model/flags.hpp"

#include <algorithm>

namespace meter {

const std::vector<FlagName>& all_flags() {
  static const std::vector<FlagName> flags = [] {
    std::vector<FlagName> list = {
        {Flag::first_reading, "first_reading"},
        {Flag::counter_reset, "counter_reset"},
        {Flag::suspicious_jump, "suspicious_jump"},
        {Flag::out_of_order, "out_of_order"},
        {Flag::timestamp_conflict, "timestamp_conflict"},
        {Flag::negative_value, "negative_value"},
        {Flag::future_timestamp, "future_timestamp"},
        {Flag::gateway_timestamp, "gateway_timestamp"},
        {Flag::beyond_retention, "beyond_retention"},
        {Flag::leap_second, "leap_second"},
        {Flag::dst_ambiguous, "dst_ambiguous"},
        {Flag::dst_gap, "dst_gap"},
        {Flag::clock_unsynced, "clock_unsynced"},
        {Flag::glitch, "glitch"},
        {Flag::rollback, "rollback"},
        {Flag::implausible_rate, "implausible_rate"},
        {Flag::gap, "gap"},
        {Flag::meter_replaced, "meter_replaced"},
        {Flag::device_restarted, "device_restarted"},
        {Flag::period_reset, "period_reset"},
        {Flag::scale_rounded, "scale_rounded"},
    };
    std::sort(list.begin(), list.end(),
              [](const FlagName& a, const FlagName& b) { return a.name < b.name; });
    return list;
  }();
  return flags;
}

std::optional<Flag> flag_from_name(std::string_view name) {
  for (const auto& entry : all_flags()) {
    if (entry.name == name) return entry.flag;
  }
  return std::nullopt;
}

std::vector<std::string_view> flag_names(FlagSet set) {
  std::vector<std::string_view> names;
  for (const auto& entry : all_flags()) {
    if (has_flag(set, entry.flag)) names.push_back(entry.name);
  }
  return names;
}

std::string join_flags(FlagSet set, char separator) {
  std::string out;
  for (auto name : flag_names(set)) {
    if (!out.empty()) out += separator;
    out += name;
  }
  return out;
}

}  // namespace meter
