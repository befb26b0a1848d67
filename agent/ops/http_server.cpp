#include "agent/ops/http_server.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

namespace meter::agent {
namespace {

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

bool is_loopback(const sockaddr* address) {
  if (address->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
  }
  if (address->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    return IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
  }
  return false;
}

void send_all(int fd, const std::string& data) {
  std::size_t sent = 0;
  while (sent < data.size()) {
    const auto n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    sent += static_cast<std::size_t>(n);
  }
}

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::start(const std::string& listen, Handler handler) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) return Error{"http.listen '" + listen + "': expected HOST:PORT"};
  std::string host = listen.substr(0, colon);
  const std::string port_text = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port_text.c_str(), &hints, &found); rc != 0) {
    return Error{"http.listen '" + listen + "': " + ::gai_strerror(rc)};
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses(found, ::freeaddrinfo);
  std::string last_error = "no address";
  for (auto* address = found; address != nullptr; address = address->ai_next) {
    if (!is_loopback(address->ai_addr)) {
      last_error = "not a loopback address (the endpoint has no authentication)";
      continue;
    }
    const int fd = ::socket(address->ai_family, address->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    const int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (::bind(fd, address->ai_addr, address->ai_addrlen) != 0 || ::listen(fd, 16) != 0) {
      last_error = std::strerror(errno);
      ::close(fd);
      continue;
    }
    sockaddr_storage bound{};
    socklen_t length = sizeof bound;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);
    const int port = bound.ss_family == AF_INET
                         ? ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port)
                         : ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port);
    return std::unique_ptr<HttpServer>(new HttpServer(fd, port, std::move(handler)));
  }
  return Error{"http.listen '" + listen + "': cannot listen: " + last_error};
}

HttpServer::HttpServer(int fd, int port, Handler handler)
    : fd_(fd), port_(port), handler_(std::move(handler)) {
  thread_ = std::thread([this] { serve(); });
}

HttpServer::~HttpServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  ::close(fd_);
}

void HttpServer::serve() {
  while (!stop_) {
    pollfd listening{fd_, POLLIN, 0};
    // The timeout only bounds how long stopping takes.
    if (::poll(&listening, 1, 200) <= 0) continue;
    const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    answer(client);
    ::close(client);
  }
}

void HttpServer::answer(int client) {
  std::string request;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  char chunk[1024];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 8192) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) return;
    pollfd readable{client, POLLIN, 0};
    if (::poll(&readable, 1, static_cast<int>(left)) <= 0) return;
    const auto n = ::recv(client, chunk, sizeof chunk, 0);
    if (n <= 0) return;
    request.append(chunk, static_cast<std::size_t>(n));
  }
  HttpResponse response;
  const auto line_end = request.find("\r\n");
  const std::string line = request.substr(0, line_end);
  const auto first_space = line.find(' ');
  const auto second_space = line.find(' ', first_space + 1);
  if (first_space == std::string::npos || second_space == std::string::npos) {
    response = HttpResponse{400, "text/plain; charset=utf-8", "bad request\n"};
  } else if (line.substr(0, first_space) != "GET") {
    response = HttpResponse{405, "text/plain; charset=utf-8", "only GET\n"};
  } else {
    std::string path = line.substr(first_space + 1, second_space - first_space - 1);
    if (auto query = path.find('?'); query != std::string::npos) path.resize(query);
    try {
      response = handler_(path);
    } catch (const std::exception& e) {
      response = HttpResponse{500, "text/plain; charset=utf-8", std::string(e.what()) + "\n"};
    }
  }
  std::string out = "HTTP/1.1 " + std::to_string(response.status) + " " +
                    reason_phrase(response.status) + "\r\nContent-Type: " + response.content_type +
                    "\r\nContent-Length: " + std::to_string(response.body.size()) +
                    "\r\nConnection: close\r\n\r\n" + response.body;
  send_all(client, out);
}

}  // namespace meter::agent
