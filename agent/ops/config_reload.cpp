#include "agent/ops/config_reload.hpp"

#include <algorithm>

namespace meter::agent {

std::vector<std::string> changed_sections(const Config& before, const Config& after) {
  std::vector<std::string> changed;
  const auto compare = [&](const char* name, const auto& old_value, const auto& new_value) {
    if (!(old_value == new_value)) changed.emplace_back(name);
  };
  // Every member of Config but `source` (the file both came from).
  compare("gateway_id", before.gateway_id, after.gateway_id);
  compare("buffer", before.buffer, after.buffer);
  compare("metrics", before.metrics, after.metrics);
  compare("mappings", before.mappings, after.mappings);
  compare("presets_dir", before.presets_dir, after.presets_dir);
  compare("normalize", before.normalize, after.normalize);
  compare("mqtt", before.mqtt, after.mqtt);
  compare("http", before.http, after.http);
  compare("uplink", before.uplink, after.uplink);
  compare("log", before.log, after.log);
  std::sort(changed.begin(), changed.end());  // the report lists them alphabetically
  return changed;
}

Result<ReloadedConfig> reload_config(const Config& current,
                                     const std::optional<std::string>& buffer_path) {
  auto fresh = load_config(current.source);
  if (!fresh) return fresh.error();
  ReloadedConfig reloaded{std::move(*fresh), {}, {}};
  if (buffer_path) reloaded.config.buffer.path = *buffer_path;
  reloaded.changed = changed_sections(current, reloaded.config);
  if (reloaded.config.buffer.path != current.buffer.path) {
    reloaded.not_applied.push_back("buffer.path changes only on restart; still using " +
                                   current.buffer.path);
    reloaded.config.buffer.path = current.buffer.path;
  }
  return reloaded;
}

std::string describe_reload(const std::string& path, const std::vector<std::string>& changed) {
  std::string list;
  for (const auto& section : changed) list += (list.empty() ? "" : ", ") + section;
  return "reloaded " + path + (list.empty() ? ": nothing changed" : ": changed " + list);
}

}  // namespace meter::agent
