// `meter-agent discover`: listens on the configured broker for a while with a
// client of its own (random client id, clean session, QoS 0: it takes nothing
// from the agent's persistent session), then prints what it saw through
// discover's rules (agent/cli/discover.hpp).
#include <mqtt/client.h>

#include <charconv>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>

#include "agent/cli/cli.hpp"
#include "agent/cli/discover.hpp"
#include "agent/source/mqtt_source.hpp"
#include "common/config/config.hpp"

namespace meter::agent {
namespace {

std::string random_client_id() {
  std::random_device device;
  std::uniform_int_distribution<unsigned> digit(0, 15);
  std::string id = "meter-agent-discover-";
  for (int i = 0; i < 12; ++i) id += "0123456789abcdef"[digit(device)];
  return id;
}

// Where the config's `- preset:` names would be found (config_parser::Parser::preset_dirs).
std::string presets_dir_of(const Config& config, const std::string& config_path) {
  if (!config.presets_dir.empty()) return config.presets_dir;
  namespace fs = std::filesystem;
  const fs::path beside = fs::absolute(config_path).parent_path() / "presets";
  std::error_code ec;
  if (fs::is_directory(beside, ec)) return beside.string();
  return std::string(kInstalledPresetsDir);
}

}  // namespace

int run_discover(const CommandLine& command_line, std::ostream& out, std::ostream& err) {
  auto config = load_config(command_line.config_path);
  if (!config) {
    err << "meter-agent: " << config.error().message << "\n";
    return kExitConfig;
  }
  long seconds = 30;
  if (command_line.seconds) {
    const std::string& text = *command_line.seconds;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    if (ec != std::errc() || end != text.data() + text.size() || seconds < 1 || seconds > 3600) {
      err << "meter-agent: --seconds: expected a whole number from 1 to 3600\n";
      return kExitUsage;
    }
  }
  const std::string filter = command_line.filter.value_or("#");
  const MqttConfig& m = config->mqtt;
  const std::string uri = server_uri(m);
  const std::string client_id = random_client_id();

  mqtt::client client(uri, client_id);
  mqtt::connect_options options;
  options.set_mqtt_version(MQTTVERSION_3_1_1);
  options.set_clean_session(true);
  options.set_keep_alive_interval(std::chrono::seconds(30));
  options.set_connect_timeout(std::chrono::seconds(10));
  if (!m.username.empty()) options.set_user_name(m.username);
  auto password = read_password(m);
  if (!password) {
    err << "meter-agent: " << password.error().message << "\n";
    return kExitConfig;
  }
  if (!password->empty()) options.set_password(*password);
  if (m.tls.enabled) {
    mqtt::ssl_options ssl;
    if (!m.tls.ca_file.empty()) ssl.set_trust_store(m.tls.ca_file);
    if (!m.tls.cert_file.empty()) ssl.set_key_store(m.tls.cert_file);
    if (!m.tls.key_file.empty()) ssl.set_private_key(m.tls.key_file);
    ssl.set_enable_server_cert_auth(m.tls.verify);
    ssl.set_verify(m.tls.verify);
    options.set_ssl(std::move(ssl));
  }

  std::vector<SeenMessage> seen;
  try {
    client.start_consuming();
    client.connect(options);
    const auto subscribed = client.subscribe(filter, 0);
    for (const auto code : subscribed.get_reason_codes()) {
      if (code >= 0x80) {
        err << "meter-agent: the broker refused the subscription to '" << filter << "' (SUBACK 0x"
            << std::hex << static_cast<int>(code) << std::dec << "): the user '" << m.username
            << "' may not read it (ACL); try --filter with a topic you may read\n";
        client.disconnect();
        return kExitFailure;
      }
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < deadline) {
      mqtt::const_message_ptr message;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (!client.try_consume_message_for(&message, left)) continue;
      if (!message) break;  // connection lost
      seen.push_back(SeenMessage{message->get_topic(), message->to_string()});
    }
    if (client.is_connected()) client.disconnect();
  } catch (const mqtt::exception& e) {
    err << "meter-agent: " << uri << " as " << client_id << ": " << e.what()
        << (e.get_reason_code() == 5 ? " (not authorized: check mqtt.username and the password)"
                                     : "")
        << "\n";
    return kExitFailure;
  }

  std::set<std::string> topics;
  for (const SeenMessage& message : seen) topics.insert(message.topic);
  out << "listened " << seconds << " s on " << uri << " as " << client_id << " (filter '" << filter
      << "', QoS 0, clean session): " << seen.size() << " messages on " << topics.size()
      << " topics\n";
  auto report = discover(seen, presets_dir_of(*config, command_line.config_path));
  if (!report) {
    err << "meter-agent: " << report.error().message << "\n";
    return kExitFailure;
  }
  if (seen.empty()) {
    out << "\nno message: nothing was published on '" << filter
        << "' while listening (retained messages arrive at once), or the broker's ACL may hide "
           "topics from this user (mosquitto, for one, grants the subscription and drops what "
           "the user may not read)\n";
  } else if (report->presets.empty()) {
    out << "\nno firmware recognized\n";
  } else {
    out << "\nrecognized:\n";
    for (const PresetFit& fit : report->presets) {
      out << "  " << fit.preset << ": " << fit.messages << " messages (e.g. " << fit.example_topic
          << ")\n";
    }
    out << "\n# a configuration for them (check with meter-agent check-config):\n"
        << report->config_block;
  }
  if (!report->unfitted.empty()) {
    out << "\ntopics nothing fits (" << report->unfitted.size() << " shapes):\n";
    for (const TopicShape& shape : report->unfitted) {
      out << "  " << shape.shape << ": " << shape.messages << " messages, e.g. "
          << shape.example_topic << " " << shape.example_payload << ": " << shape.reason << "\n";
    }
  }
  return kExitOk;
}

}  // namespace meter::agent
