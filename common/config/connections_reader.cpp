// The configuration's sections for how the agent connects and reports: mqtt
// (broker, TLS, reconnect), http (the local endpoint), uplink (the central
// service) and log. Part of the Parser declared in parser.hpp.
#include <string>
#include <vector>

#include "common/config/parser.hpp"
#include "common/util/quote.hpp"
#include "common/util/utf8.hpp"

namespace meter::config_parser {

bool Parser::parse_mqtt(const Value& value, MqttConfig& out) {
  std::vector<Entry> entries;
  if (!read_map(value,
                KeyList{"host", "port", "client_id", "protocol", "keepalive", "session_expiry",
                        "username", "password_file", "password_env", "tls", "reconnect",
                        "status_topic_prefix", "ingest_workers", "acknowledge"},
                entries)) {
    return false;
  }
  const Value* acknowledge = nullptr;
  for (const Entry& entry : entries) {
    bool ok = true;
    const Value& v = entry.value;
    if (entry.key == "host") {
      ok = non_empty_text(v, "a host name or address", out.host);
    } else if (entry.key == "port") {
      ok = whole_number(v, 1, 65535, out.port);
    } else if (entry.key == "client_id") {
      // MQTT 3.1.1 servers must accept 1-23 of [0-9a-zA-Z]; mosquitto takes far more.
      ok = non_empty_text(v, "a client id", out.client_id);
      if (ok && (out.client_id.size() > 65535 || !is_valid_utf8(out.client_id))) {
        ok = fail_expected(v, "a UTF-8 client id");
      }
    } else if (entry.key == "protocol") {
      ok = one_of(v, {{"3.1.1", 4}, {"5", 5}}, out.protocol_version);
    } else if (entry.key == "keepalive") {
      ok = parse_duration(v, out.keepalive_ms);
      if (ok && (out.keepalive_ms < 1000 || out.keepalive_ms > 65535LL * 1000)) {
        ok = fail(v, "must be between 1s and 65535s");
      }
    } else if (entry.key == "session_expiry") {
      ok = parse_duration(v, out.session_expiry_ms);
    } else if (entry.key == "username") {
      ok = scalar(v, "a user name", out.username);
    } else if (entry.key == "password_file") {
      ok = parse_path(v, out.password_file);
    } else if (entry.key == "password_env") {
      ok = non_empty_text(v, "an environment variable name", out.password_env);
    } else if (entry.key == "tls") {
      ok = parse_tls(v, out.tls);
    } else if (entry.key == "reconnect") {
      ok = parse_reconnect(v, out);
    } else if (entry.key == "status_topic_prefix") {
      ok = parse_topic_name(v, out.status_topic_prefix);
    } else if (entry.key == "ingest_workers") {
      ok = whole_number(v, 0, kMaxIngestWorkers, out.ingest_workers);
    } else if (entry.key == "acknowledge") {
      ok = one_of(v, {{"each", false}, {"batched", true}}, out.batched_acknowledge);
      acknowledge = &v;
    }
    if (!ok) return false;
  }
  if (!out.password_file.empty() && !out.password_env.empty()) {
    return fail(value, "give password_file or password_env, not both");
  }
  if (acknowledge == nullptr && out.ingest_workers > 0) out.batched_acknowledge = false;
  if (out.batched_acknowledge && out.ingest_workers > 0) {
    return fail(acknowledge != nullptr ? *acknowledge : value,
                "batched shares syncs on one connection and replaces ingest_workers: set "
                "ingest_workers to 0");
  }
  return true;
}

bool Parser::parse_tls(const Value& value, MqttTlsConfig& out) {
  std::vector<Entry> entries;
  if (!read_map(value, KeyList{"enabled", "ca_file", "cert_file", "key_file", "verify"}, entries)) {
    return false;
  }
  for (const Entry& entry : entries) {
    bool ok = true;
    if (entry.key == "enabled") {
      ok = boolean(entry.value, out.enabled);
    } else if (entry.key == "ca_file") {
      ok = parse_path(entry.value, out.ca_file);
    } else if (entry.key == "cert_file") {
      ok = parse_path(entry.value, out.cert_file);
    } else if (entry.key == "key_file") {
      ok = parse_path(entry.value, out.key_file);
    } else if (entry.key == "verify") {
      ok = boolean(entry.value, out.verify);
    }
    if (!ok) return false;
  }
  if (out.cert_file.empty() != out.key_file.empty()) {
    return fail(value, "cert_file and key_file go together (a client certificate needs its key)");
  }
  return true;
}

bool Parser::parse_reconnect(const Value& value, MqttConfig& out) {
  std::vector<Entry> entries;
  if (!read_map(value, KeyList{"min", "max"}, entries)) return false;
  for (const Entry& entry : entries) {
    bool ok = entry.key == "min" ? parse_duration(entry.value, out.reconnect_min_ms)
                                 : parse_duration(entry.value, out.reconnect_max_ms);
    if (!ok) return false;
  }
  if (out.reconnect_min_ms < 100) return fail(value, "reconnect.min must be at least 100ms");
  if (out.reconnect_max_ms < out.reconnect_min_ms) {
    return fail(value, "reconnect.max must not be below reconnect.min");
  }
  return true;
}

bool Parser::parse_http(const Value& value, HttpConfig& out) {
  std::vector<Entry> entries;
  if (!read_map(value, KeyList{"listen"}, entries)) return false;
  for (const Entry& entry : entries) {
    constexpr std::string_view kExpected =
        "a loopback address and port, e.g. 127.0.0.1:9108 or [::1]:9108";
    std::string text;
    if (!scalar(entry.value, kExpected, text)) return false;
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) return fail_expected(entry.value, kExpected);
    const std::string host = text.substr(0, colon);
    const auto port = parse_unsigned(std::string_view(text).substr(colon + 1));
    const bool loopback = host == "localhost" || host == "[::1]" || host.rfind("127.", 0) == 0;
    if (!loopback) {
      return fail(entry.value,
                  "the operations endpoint listens on loopback only (it has no "
                  "authentication), got " +
                      quote(text));
    }
    if (!port || *port == 0 || *port > 65535) return fail_expected(entry.value, kExpected);
    out.listen = text;
  }
  return true;
}

bool Parser::parse_uplink(const Value& value, UplinkConfig& out) {
  std::vector<Entry> entries;
  if (!read_map(value,
                KeyList{"url", "token_file", "token_env", "ca_file", "cert_file", "key_file",
                        "verify", "timeout", "connect_timeout", "batch_max_records",
                        "batch_max_bytes", "max_in_flight", "gzip_level", "retry", "auth_retry",
                        "interval", "retention", "prune_interval"},
                entries)) {
    return false;
  }
  for (const Entry& entry : entries) {
    bool ok = true;
    const Value& v = entry.value;
    int number = 0;
    if (entry.key == "url") {
      ok = parse_uplink_url(v, out.url);
    } else if (entry.key == "token_file") {
      ok = parse_path(v, out.token_file);
    } else if (entry.key == "token_env") {
      ok = non_empty_text(v, "an environment variable name", out.token_env);
    } else if (entry.key == "ca_file") {
      ok = parse_path(v, out.ca_file);
    } else if (entry.key == "cert_file") {
      ok = parse_path(v, out.cert_file);
    } else if (entry.key == "key_file") {
      ok = parse_path(v, out.key_file);
    } else if (entry.key == "verify") {
      ok = boolean(v, out.verify);
    } else if (entry.key == "timeout") {
      ok = parse_duration(v, out.timeout_ms);
      if (ok && out.timeout_ms < 100) ok = fail(v, "must be at least 100ms");
    } else if (entry.key == "connect_timeout") {
      ok = parse_duration(v, out.connect_timeout_ms);
      if (ok && out.connect_timeout_ms < 100) ok = fail(v, "must be at least 100ms");
    } else if (entry.key == "batch_max_records") {
      ok = whole_number(v, 1, 10000, number);
      out.batch_max_records = static_cast<std::size_t>(number);
    } else if (entry.key == "batch_max_bytes") {
      ok = whole_number(v, 4096, 16 * 1024 * 1024, number);
      out.batch_max_bytes = static_cast<std::size_t>(number);
    } else if (entry.key == "max_in_flight") {
      ok = whole_number(v, 1, 8, number);
      out.max_in_flight = static_cast<std::size_t>(number);
    } else if (entry.key == "gzip_level") {
      ok = whole_number(v, 0, 9, out.gzip_level);
    } else if (entry.key == "retry") {
      std::vector<Entry> retry;
      ok = read_map(v, KeyList{"min", "max"}, retry);
      for (const Entry& bound : retry) {
        if (!ok) break;
        ok = parse_duration(bound.value, bound.key == "min" ? out.retry_min_ms : out.retry_max_ms);
      }
      if (ok && out.retry_min_ms < 10) ok = fail(v, "retry.min must be at least 10ms");
      if (ok && out.retry_max_ms < out.retry_min_ms) {
        ok = fail(v, "retry.max must not be below retry.min");
      }
    } else if (entry.key == "auth_retry") {
      ok = parse_duration(v, out.auth_retry_ms);
      if (ok && out.auth_retry_ms < 10) ok = fail(v, "must be at least 10ms");
    } else if (entry.key == "interval") {
      ok = parse_duration(v, out.interval_ms);
      if (ok && out.interval_ms < 10) ok = fail(v, "must be at least 10ms");
    } else if (entry.key == "retention") {
      ok = parse_duration(v, out.retention_ms);
    } else if (entry.key == "prune_interval") {
      ok = parse_duration(v, out.prune_interval_ms);
      if (ok && out.prune_interval_ms < 10) ok = fail(v, "must be at least 10ms");
    }
    if (!ok) return false;
  }
  if (!out.token_file.empty() && !out.token_env.empty()) {
    return fail(value, "give token_file or token_env, not both");
  }
  if (!out.url.empty() && out.token_file.empty() && out.token_env.empty()) {
    return fail(value, "the uplink needs the gateway's token: give token_file or token_env");
  }
  if (out.cert_file.empty() != out.key_file.empty()) {
    return fail(value, "cert_file and key_file go together (a client certificate needs its key)");
  }
  return true;
}

bool Parser::parse_uplink_url(const Value& value, std::string& out) {
  constexpr std::string_view kExpected =
      "an https:// URL (http:// only to localhost), e.g. https://central.example.com";
  std::string text;
  if (!non_empty_text(value, kExpected, text)) return false;
  while (!text.empty() && text.back() == '/') text.pop_back();
  const bool https = text.rfind("https://", 0) == 0 && text.size() > 8;
  const bool http = text.rfind("http://", 0) == 0;
  if (!https && !http) return fail_expected(value, kExpected);
  if (http) {
    const std::string rest = text.substr(7);
    const std::string host = rest.substr(0, rest.find_first_of(":/"));
    const bool loopback =
        host == "localhost" || host.rfind("127.", 0) == 0 || rest.rfind("[::1]", 0) == 0;
    if (!loopback) {
      return fail(value,
                  "plain http:// would send the token in the clear; use https:// (http:// "
                  "is accepted for localhost only), got " +
                      quote(text));
    }
  }
  if (text.find_first_of(" \t\r\n?#") != std::string::npos) return fail_expected(value, kExpected);
  out = text;
  return true;
}

bool Parser::parse_log(const Value& value, LogConfig& out) {
  std::vector<Entry> entries;
  if (!read_map(value, KeyList{"level", "components"}, entries)) return false;
  for (const Entry& entry : entries) {
    if (entry.key == "level") {
      if (!parse_log_level(entry.value, out.level)) return false;
      continue;
    }
    std::vector<Entry> components;
    if (!read_map(entry.value,
                  KeyList{"mqtt", "buffer", "normalize", "http", "uplink", "config", "agent"},
                  components)) {
      return false;
    }
    for (const Entry& component : components) {
      LogLevel level = LogLevel::info;
      if (!parse_log_level(component.value, level)) return false;
      out.components[component.key] = level;
    }
  }
  return true;
}

bool Parser::parse_log_level(const Value& value, LogLevel& out) {
  return one_of(value,
                {{"error", LogLevel::error},
                 {"warning", LogLevel::warning},
                 {"info", LogLevel::info},
                 {"debug", LogLevel::debug}},
                out);
}

}  // namespace meter::config_parser
