// The local operations endpoint: a minimal HTTP/1.1 server on a loopback
// socket, in its own thread, answering GET /healthz and GET /metrics. One
// request per connection; no authentication, so it only listens on loopback.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "common/util/result.hpp"

namespace meter::agent {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const std::string& path)>;

  // Binds `listen` ("127.0.0.1:9108", "[::1]:9108", "localhost:9108"); refuses
  // non-loopback addresses.
  static Result<std::unique_ptr<HttpServer>> start(const std::string& listen, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }

 private:
  HttpServer(int fd, int port, Handler handler);
  void serve();
  void answer(int client);

  int fd_;
  int port_;
  Handler handler_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace meter::agent
