// A real mosquitto broker for integration tests, on a free loopback port, in
// its own temporary directory (persistence, log), with unlimited queues
// (max_queued_messages 0: mosquitto's default of 1000 silently drops QoS 1
// messages under load: 124 and 577 of 200,000 lost in a probe on Debian 12's
// mosquitto 2.0.11). Stopped by PID in every path.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <string>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace meter::test {

// A port the kernel just handed out (bound to 0, then closed).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

inline bool port_accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool connected = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return connected;
}

class Mosquitto {
 public:
  // `listener_options`: lines applied to the main listener (e.g. TLS files);
  // `extra`: more lines at the end (e.g. a second listener).
  explicit Mosquitto(std::string listener_options = "", std::string extra = "")
      : port_(free_port()) {
    std::string config = "listener " + std::to_string(port_) + " 127.0.0.1\n" + listener_options +
                         "\nallow_anonymous true\n"
                         "persistence true\n"
                         "persistence_location " +
                         dir_.path().string() +
                         "/\n"
                         "max_queued_messages 0\n"
                         "max_inflight_messages 20\n"
                         "log_dest stderr\n"
                         "log_type all\n" +
                         (::geteuid() == 0 ? "user root\n" : "") + extra + "\n";
    write_text_file(dir_.file("mosquitto.conf"), config);
    start();
  }
  ~Mosquitto() { process_.kill_and_reap(); }

  void start() {
    process_ = ChildProcess({"/usr/sbin/mosquitto", "-c", dir_.file("mosquitto.conf")},
                            dir_.file("mosquitto.log"));
    if (!wait_until([&] { return port_accepts(port_); }, std::chrono::seconds(10))) {
      throw std::runtime_error("mosquitto did not start: " + log());
    }
  }
  // SIGTERM (mosquitto saves its persistence file), then waits.
  void stop() {
    process_.signal(SIGTERM);
    if (!process_.wait_exit(std::chrono::seconds(10))) process_.kill_and_reap();
  }
  void restart() {
    stop();
    start();
  }

  int port() const { return port_; }
  std::string log() const { return read_text_file(dir_.file("mosquitto.log")); }
  const TempDir& dir() const { return dir_; }

 private:
  TempDir dir_;
  int port_;
  ChildProcess process_;
};

}  // namespace meter::test
