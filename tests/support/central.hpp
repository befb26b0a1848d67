// The real central service for end-to-end tests: its own database on the
// PostgreSQL server that central/tests/with_postgres.sh started (DATABASE_URL
// points at its `central_test` database; each CentralService creates a fresh
// database beside it), migrated, with one gateway and its token, served by
// uvicorn on a free loopback port (optionally HTTPS with a test certificate).
// Stopped (SIGKILL) and restarted at will; always killed at the end.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/mosquitto.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace meter::test {

inline std::string psql_binary() {
  const std::string bundled = "/usr/lib/postgresql/15/bin/psql";
  return ::access(bundled.c_str(), X_OK) == 0 ? bundled : "/usr/bin/psql";
}

// Runs a command to completion; its exit code and combined output.
inline std::pair<int, std::string> run_command(
    const std::vector<std::string>& argv, const std::string& output_path,
    std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
  ::unlink(output_path.c_str());
  ChildProcess child(argv, output_path);
  auto code = child.wait_exit(timeout);
  return {code.value_or(-1), read_text_file(output_path)};
}

class CentralService {
 public:
  struct Tls {
    std::string cert_file;
    std::string key_file;
  };

  explicit CentralService(std::string gateway = "test-gw") : gateway_(std::move(gateway)) {
    const char* url = std::getenv("DATABASE_URL");
    if (url == nullptr) {
      throw std::runtime_error(
          "DATABASE_URL is not set: run this test under central/tests/with_postgres.sh");
    }
    server_url_ = url;
    const auto slash = server_url_.rfind('/');
    static std::atomic<int> counter{0};
    database_ = "uplink_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    database_url_ = server_url_.substr(0, slash + 1) + database_;
    psql_admin("CREATE DATABASE " + database_);
    auto migrated = python({"-m", "central", "migrate"});
    if (migrated.first != 0) throw std::runtime_error("central migrate failed: " + migrated.second);
    token_ = create_token({"-m", "central", "gateway", "create", gateway_});
    port_ = free_port();
  }
  ~CentralService() { kill(); }
  CentralService(const CentralService&) = delete;
  CentralService& operator=(const CentralService&) = delete;

  void start(std::map<std::string, std::string> env = {}, std::optional<Tls> tls = std::nullopt) {
    tls_ = tls;
    std::vector<std::string> argv = {"/usr/bin/env", "DATABASE_URL=" + database_url_,
                                     "PYTHONPATH=" + std::string(METER_SOURCE_DIR)};
    for (const auto& [key, value] : env) argv.push_back(key + "=" + value);
    std::string code =
        "import uvicorn\n"
        "from central.app import create_app\n"
        "from central.settings import Settings\n"
        "uvicorn.run(create_app(Settings()), host='127.0.0.1', port=" +
        std::to_string(port_) + ", log_level='warning', workers=1";
    if (tls) code += ", ssl_certfile='" + tls->cert_file + "', ssl_keyfile='" + tls->key_file + "'";
    code += ")\n";
    argv.insert(argv.end(), {"/usr/bin/python3", "-c", code});
    process_ = ChildProcess(argv, dir_.file("central.log"));
    if (!wait_until([&] { return port_accepts(port_); }, std::chrono::seconds(60),
                    std::chrono::milliseconds(50))) {
      throw std::runtime_error("the central service did not start: " + log());
    }
  }
  void kill() { process_.kill_and_reap(); }
  bool running() const { return process_.running(); }

  int port() const { return port_; }
  const std::string& token() const { return token_; }
  const std::string& gateway() const { return gateway_; }
  std::string log() const { return read_text_file(dir_.file("central.log")); }

  // Issues a new token and revokes the old ones; returns the new token.
  std::string rotate_token() {
    token_ = create_token({"-m", "central", "gateway", "rotate", gateway_});
    return token_;
  }

  // Rows of a query, fields separated by '|'.
  std::vector<std::string> query(const std::string& sql) {
    auto [code, output] = run_command({psql_binary(), database_url_, "-X", "-q", "-At", "-F", "|",
                                       "-v", "ON_ERROR_STOP=1", "-c", sql},
                                      dir_.file("psql.out"));
    if (code != 0) throw std::runtime_error("psql failed: " + output);
    std::vector<std::string> rows;
    std::istringstream lines(output);
    std::string line;
    while (std::getline(lines, line)) rows.push_back(line);
    return rows;
  }
  std::int64_t count(const std::string& sql) {
    const auto rows = query(sql);
    return rows.empty() ? -1 : std::stoll(rows.front());
  }

 private:
  std::pair<int, std::string> python(std::vector<std::string> args) {
    std::vector<std::string> argv = {"/usr/bin/env", "DATABASE_URL=" + database_url_,
                                     "PYTHONPATH=" + std::string(METER_SOURCE_DIR),
                                     "/usr/bin/python3"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, dir_.file("python.out"));
  }
  std::string create_token(std::vector<std::string> args) {
    auto [code, output] = python(std::move(args));
    if (code != 0) throw std::runtime_error("central token command failed: " + output);
    // The token is alone on its line (stdout); the rest is stderr chatter.
    std::istringstream lines(output);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.rfind("mgw_", 0) == 0) return line;
    }
    throw std::runtime_error("no token in: " + output);
  }
  void psql_admin(const std::string& sql) {
    auto [code, output] =
        run_command({psql_binary(), server_url_, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql},
                    dir_.file("psql.out"));
    if (code != 0) throw std::runtime_error("psql failed: " + output);
  }

  TempDir dir_;
  std::string gateway_;
  std::string server_url_;
  std::string database_;
  std::string database_url_;
  std::string token_;
  int port_ = 0;
  std::optional<Tls> tls_;
  ChildProcess process_;
};

}  // namespace meter::test
