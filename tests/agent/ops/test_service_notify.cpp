// sd_notify from the daemon (agent/service_notify.*), checked against a
// datagram socket standing in for systemd's NOTIFY_SOCKET: no systemd needed.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/daemon.hpp"
#include "agent/ops/service_notify.hpp"
#include "support/temp_dir.hpp"

using namespace meter;
using namespace meter::test;
using namespace std::chrono_literals;

namespace {

// The systemd side: a bound AF_UNIX datagram socket whose path is exported as
// NOTIFY_SOCKET (and the watchdog variables), all unset again at the end.
class FakeSystemd {
 public:
  explicit FakeSystemd(const TempDir& dir, std::chrono::microseconds watchdog = 0us) {
    path_ = dir.file("notify.sock");
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(path_.size() < sizeof(address.sun_path));
    path_.copy(address.sun_path, path_.size());
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    timeval timeout{0, 200000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setenv("NOTIFY_SOCKET", path_.c_str(), 1);
    if (watchdog.count() > 0) {
      ::setenv("WATCHDOG_USEC", std::to_string(watchdog.count()).c_str(), 1);
      ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
    }
  }
  ~FakeSystemd() {
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
    ::unsetenv("WATCHDOG_PID");
    ::close(fd_);
  }
  FakeSystemd(const FakeSystemd&) = delete;
  FakeSystemd& operator=(const FakeSystemd&) = delete;

  // The next notification, or "" when none arrives within 200 ms.
  std::string next() {
    char buffer[4096];
    const auto size = ::recv(fd_, buffer, sizeof(buffer), 0);
    return size > 0 ? std::string(buffer, static_cast<std::size_t>(size)) : std::string();
  }
  // Reads notifications until one starts with `prefix`, for at most `limit`.
  bool wait_for(const std::string& prefix, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (next().rfind(prefix, 0) == 0) return true;
    }
    return false;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace

TEST_CASE("service_notify: a no-op without NOTIFY_SOCKET", "[service_notify]") {
  ::unsetenv("NOTIFY_SOCKET");
  agent::ServiceNotifier notifier;
  CHECK_FALSE(notifier.active());
  CHECK(notifier.watchdog_interval().count() == 0);
  agent::Heartbeat heartbeat;
  notifier.ready();
  notifier.watchdog(heartbeat);
  notifier.stopping();
}

TEST_CASE("service_notify: READY, RELOADING, STOPPING reach the socket", "[service_notify]") {
  TempDir dir;
  FakeSystemd systemd(dir);
  agent::ServiceNotifier notifier;
  REQUIRE(notifier.active());
  CHECK(notifier.watchdog_interval().count() == 0);
  notifier.ready();
  CHECK(systemd.next() == "READY=1");
  notifier.reloading();
  CHECK(systemd.next().rfind("RELOADING=1\nMONOTONIC_USEC=", 0) == 0);
  notifier.stopping();
  CHECK(systemd.next() == "STOPPING=1");
}

TEST_CASE("service_notify: the watchdog is pinged only while the worker beats",
          "[service_notify]") {
  TempDir dir;
  FakeSystemd systemd(dir, 400ms);
  agent::ServiceNotifier notifier;
  REQUIRE(notifier.watchdog_interval() == 400ms);
  agent::Heartbeat worker;
  notifier.watchdog(worker);
  CHECK(systemd.next() == "WATCHDOG=1");
  notifier.watchdog(worker);  // within a quarter interval: no second ping
  CHECK(systemd.next().empty());
  std::this_thread::sleep_for(250ms);  // the worker has not beaten for > interval / 2
  notifier.watchdog(worker);
  CHECK(systemd.next().empty());
  worker.beat();
  notifier.watchdog(worker);
  CHECK(systemd.next() == "WATCHDOG=1");
}

// Tagged [daemon] too: it runs the daemon's threads, which the emulated arm64
// run cannot (tests/CMakeLists.txt).
TEST_CASE("service_notify: the daemon reports ready, pings while it works, reloads, stops",
          "[service_notify][daemon]") {
  TempDir dir;
  const auto config_path = dir.file("agent.yaml");
  std::ofstream(config_path) << "gateway_id: notify-gw\n"
                                "buffer: {path: buffer.db, durability: normal}\n"
                                "metrics:\n  energy: {kind: counter, unit: kWh}\n"
                                "mappings:\n  - topic: \"meters/#\"\n"
                                "mqtt:\n  host: 127.0.0.1\n  port: 1\n"  // nothing listens
                                "  reconnect: {min: 1s, max: 1s}\n";
  auto config = load_config(config_path);
  REQUIRE(config);
  FakeSystemd systemd(dir, 400ms);
  std::ostringstream log_text;
  agent::Logger logger(log_text, false);
  agent::Daemon daemon(std::move(*config), {}, logger);
  int exit_code = -1;
  std::thread runner([&] { exit_code = daemon.run(); });
  // Ready without a broker: connecting (and reconnecting) is the main loop's job.
  CHECK(systemd.wait_for("READY=1", 10s));
  CHECK(systemd.wait_for("WATCHDOG=1", 2s));
  CHECK(systemd.wait_for("WATCHDOG=1", 2s));
  daemon.request_reload();
  CHECK(systemd.wait_for("RELOADING=1", 5s));
  CHECK(systemd.wait_for("READY=1", 5s));
  daemon.request_stop();
  CHECK(systemd.wait_for("STOPPING=1", 15s));
  runner.join();
  CHECK(exit_code == 0);
}
