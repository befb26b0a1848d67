// A small fault-injecting HTTP/1.1 proxy for the uplink's end-to-end tests: it
// sits between the agent and the real central service on a free loopback
// port and, per request, forwards it or injects one fault. Ours, so a fake at
// a seam we own: the agent and the central on either side are real.
//
// It understands just enough HTTP for the agent's requests and uvicorn's
// answers: a header block and a Content-Length body, several requests per
// connection (keep-alive).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

namespace meter::test {

enum class Fault {
  pass,            // forward the request and relay the response
  refuse,          // close the connection without answering (as if the central were down)
  status,          // answer with `status` itself; the central never sees the request
  drop_response,   // forward, let the central commit, then close without relaying its response
  delay_response,  // forward, then hold the response for `delay` (past the agent's timeout)
};

struct FaultRule {
  Fault fault = Fault::pass;
  int status = 503;
  std::chrono::milliseconds delay{0};
  std::string retry_after;  // status: a Retry-After header value, if any
  // Non-empty: the fault only for a request containing this text (its body
  // uncompressed: uplink.gzip_level 0), the others pass.
  std::string only_if_contains;
};

class FaultProxy {
 public:
  explicit FaultProxy(int upstream_port) : upstream_port_(upstream_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener_, 64) != 0) {
      throw std::runtime_error("fault proxy: cannot listen");
    }
    socklen_t size = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &size);
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~FaultProxy() {
    stop_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    if (acceptor_.joinable()) acceptor_.join();
    std::list<std::thread> workers;
    {
      std::lock_guard lock(mutex_);
      workers.swap(workers_);
    }
    for (auto& worker : workers) {
      if (worker.joinable()) worker.join();
    }
  }
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  int port() const { return port_; }
  void set_upstream(int port) { upstream_port_ = port; }

  // Faults for the next requests, in order; `set_default` for all others.
  void push(FaultRule rule, int times = 1) {
    std::lock_guard lock(mutex_);
    for (int i = 0; i < times; ++i) queue_.push_back(rule);
  }
  void set_default(FaultRule rule) {
    std::lock_guard lock(mutex_);
    default_ = rule;
  }
  std::size_t queued() const {
    std::lock_guard lock(mutex_);
    return queue_.size();
  }
  // Requests that reached the central (forwarded), and faults injected.
  std::int64_t forwarded() const { return forwarded_; }
  std::int64_t injected() const { return injected_; }
  std::int64_t requests() const { return requests_; }

 private:
  FaultRule next_rule() {
    std::lock_guard lock(mutex_);
    if (queue_.empty()) return default_;
    auto rule = queue_.front();
    queue_.pop_front();
    return rule;
  }

  void accept_loop() {
    while (!stop_) {
      const int client = ::accept(listener_, nullptr, nullptr);
      if (client < 0) {
        if (stop_) return;
        continue;
      }
      std::lock_guard lock(mutex_);
      workers_.emplace_back([this, client] { serve(client); });
    }
  }

  static bool send_all(int fd, const std::string& data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
      const auto n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<std::size_t>(n);
    }
    return true;
  }

  // Reads one HTTP message (headers + Content-Length body) from `fd` into
  // `message`, using and refilling `pending`. False on EOF/error/stop.
  bool read_message(int fd, std::string& pending, std::string& message) {
    std::size_t header_end = std::string::npos;
    auto fill = [&]() {
      while (!stop_) {
        pollfd p{fd, POLLIN, 0};
        const int ready = ::poll(&p, 1, 100);
        if (ready < 0) return false;
        if (ready == 0) continue;
        char chunk[65536];
        const auto n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return false;
        pending.append(chunk, static_cast<std::size_t>(n));
        return true;
      }
      return false;
    };
    while ((header_end = pending.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return false;
    }
    std::size_t length = 0;
    std::string lower = pending.substr(0, header_end);
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    const auto at = lower.find("\r\ncontent-length:");
    if (at != std::string::npos) length = std::stoul(lower.substr(at + 17));
    const std::size_t total = header_end + 4 + length;
    while (pending.size() < total) {
      if (!fill()) return false;
    }
    message = pending.substr(0, total);
    pending.erase(0, total);
    return true;
  }

  int connect_upstream() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<std::uint16_t>(upstream_port_.load()));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  void serve(int client) {
    std::string from_client;
    int upstream = -1;
    while (!stop_) {
      std::string request;
      if (!read_message(client, from_client, request)) break;
      ++requests_;
      auto rule = next_rule();
      if (!rule.only_if_contains.empty() &&
          request.find(rule.only_if_contains) == std::string::npos) {
        rule = FaultRule{};
      }
      if (rule.fault == Fault::refuse) {
        ++injected_;
        break;  // closed without an answer, as if the central were unreachable
      }
      if (rule.fault == Fault::status) {
        ++injected_;
        const std::string body = "{\"error\":\"injected by the test proxy\"}";
        std::string response = "HTTP/1.1 " + std::to_string(rule.status) +
                               " Injected\r\nContent-Type: application/json\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\n";
        if (!rule.retry_after.empty()) response += "Retry-After: " + rule.retry_after + "\r\n";
        response += "\r\n" + body;
        if (!send_all(client, response)) break;
        continue;
      }
      if (upstream < 0) upstream = connect_upstream();
      if (upstream < 0) break;  // central down: the agent sees a closed connection
      std::string from_upstream;
      std::string response;
      if (!send_all(upstream, request) || !read_message(upstream, from_upstream, response)) {
        ::close(upstream);
        upstream = -1;
        break;
      }
      ++forwarded_;
      if (rule.fault == Fault::drop_response) {
        ++injected_;
        break;
      }
      if (rule.fault == Fault::delay_response) {
        ++injected_;
        const auto until = std::chrono::steady_clock::now() + rule.delay;
        while (!stop_ && std::chrono::steady_clock::now() < until) {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      }
      if (!send_all(client, response)) break;
    }
    if (upstream >= 0) ::close(upstream);
    ::shutdown(client, SHUT_RDWR);
    ::close(client);
  }

  std::atomic<int> upstream_port_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  mutable std::mutex mutex_;
  std::list<std::thread> workers_;
  std::deque<FaultRule> queue_;
  FaultRule default_;
  std::atomic<std::int64_t> forwarded_{0};
  std::atomic<std::int64_t> injected_{0};
  std::atomic<std::int64_t> requests_{0};
};

}  // namespace meter::test
