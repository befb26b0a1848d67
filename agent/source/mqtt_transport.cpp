// TCP, or TLS over it, for the batched ingest connection. The socket is
// non-blocking from the start; every wait is a poll(2) bounded by the caller's
// time limit, so no call blocks longer than it was allowed to (name lookup
// excepted: getaddrinfo has no time limit).
#include "agent/source/mqtt_transport.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>

#include "agent/source/mqtt_source.hpp"

namespace meter::agent {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// "10s", or "250ms" when not whole seconds.
std::string format_duration(milliseconds duration) {
  if (duration.count() % 1000 == 0) return std::to_string(duration.count() / 1000) + "s";
  return std::to_string(duration.count()) + "ms";
}

milliseconds remaining(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now());
  return std::max(left, milliseconds(0));
}

enum class Wait { ready, timed_out, failed };

// Waits for `events` on `fd` until `deadline` (EINTR: waits for the rest).
// POLLERR and POLLHUP count as ready: the next read or write tells what happened.
Wait wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd entry{fd, events, 0};
    const auto left = remaining(deadline);
    const int timeout = static_cast<int>(std::min<std::int64_t>(left.count(), INT_MAX));
    const int ready = ::poll(&entry, 1, timeout);
    if (ready > 0) return Wait::ready;
    if (ready == 0) {
      if (Clock::now() >= deadline) return Wait::timed_out;
      continue;
    }
    if (errno != EINTR) return Wait::failed;
  }
}

std::string system_error(int error) {
  if (error == ECONNREFUSED) return "connection refused";
  if (error == ECONNRESET || error == EPIPE) return "the broker closed the connection";
  return std::strerror(error);
}

// The first (root) reason on this thread's OpenSSL error queue, e.g. "tlsv13
// alert certificate required", and clears the queue. Never holds key material.
std::string openssl_error(const std::string& fallback) {
  const unsigned long first = ERR_get_error();
  ERR_clear_error();
  if (first == 0) return fallback;
  if (ERR_GET_LIB(first) == ERR_LIB_SYS) return std::strerror(ERR_GET_REASON(first));
  if (ERR_GET_LIB(first) == ERR_LIB_SSL &&
      ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    return "the broker closed the connection";
  }
  const char* reason = ERR_reason_error_string(first);
  return reason != nullptr ? reason : fallback;
}

// OpenSSL's message for a missing file is "system lib" at best: this names the cause.
Status check_readable(const std::string& setting, const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error{"cannot read " + setting + " " + path + ": " + std::strerror(errno)};
  ::close(fd);
  return Ok{};
}

// OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE when the
// broker has gone; a library must not kill (or depend on) its process for
// that. This BIO sends with MSG_NOSIGNAL and otherwise behaves like it.
struct SocketState {
  int fd = -1;
  bool end_of_stream = false;
};

SocketState& socket_state(BIO* bio) { return *static_cast<SocketState*>(BIO_get_data(bio)); }

bool would_block(int error) { return error == EAGAIN || error == EWOULDBLOCK || error == EINTR; }

int socket_bio_write(BIO* bio, const char* data, int length) {
  BIO_clear_retry_flags(bio);
  const ssize_t sent =
      ::send(socket_state(bio).fd, data, static_cast<std::size_t>(length), MSG_NOSIGNAL);
  if (sent < 0 && would_block(errno)) BIO_set_retry_write(bio);
  return static_cast<int>(sent);
}

int socket_bio_read(BIO* bio, char* data, int length) {
  BIO_clear_retry_flags(bio);
  auto& state = socket_state(bio);
  const ssize_t received = ::recv(state.fd, data, static_cast<std::size_t>(length), 0);
  if (received == 0) state.end_of_stream = true;
  if (received < 0 && would_block(errno)) BIO_set_retry_read(bio);
  return static_cast<int>(received);
}

long socket_bio_control(BIO* bio, int command, long /*number*/, void* /*pointer*/) {
  // BIO_eof tells the record layer that a 0-byte read was the peer's close.
  if (command == BIO_CTRL_EOF) return socket_state(bio).end_of_stream ? 1 : 0;
  return command == BIO_CTRL_FLUSH ? 1 : 0;
}

// Made once and kept for the process's life (OpenSSL shares it between SSLs).
const BIO_METHOD* socket_bio_method() {
  static const BIO_METHOD* const method = [] {
    BIO_METHOD* made = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "meter socket");
    if (made != nullptr) {
      BIO_meth_set_write(made, socket_bio_write);
      BIO_meth_set_read(made, socket_bio_read);
      BIO_meth_set_ctrl(made, socket_bio_control);
    }
    return made;
  }();
  return method;
}

// A daemon has no one to type a key's passphrase: an encrypted key file fails
// to load (and says so) instead of OpenSSL prompting on a terminal.
int no_passphrase(char* /*buffer*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) { return 0; }

struct ContextDeleter {
  void operator()(SSL_CTX* context) const { SSL_CTX_free(context); }
};
struct SslDeleter {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using ContextPointer = std::unique_ptr<SSL_CTX, ContextDeleter>;
using SslPointer = std::unique_ptr<SSL, SslDeleter>;

// The client context as mqtt.tls says: TLS 1.2 or newer, the server verified
// (unless verify is false), an optional client certificate.
Result<ContextPointer> make_context(const MqttTlsConfig& tls) {
  ERR_clear_error();
  ContextPointer context(SSL_CTX_new(TLS_client_method()));
  if (!context) return Error{"cannot create a TLS context: " + openssl_error("out of memory")};
  SSL_CTX_set_min_proto_version(context.get(), TLS1_2_VERSION);
  SSL_CTX_set_mode(context.get(),
                   SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_default_passwd_cb(context.get(), no_passphrase);
  SSL_CTX_set_verify(context.get(), tls.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (!tls.ca_file.empty()) {
    if (auto readable = check_readable("mqtt.tls.ca_file", tls.ca_file); !readable) {
      return readable.error();
    }
    if (SSL_CTX_load_verify_locations(context.get(), tls.ca_file.c_str(), nullptr) != 1) {
      return Error{"cannot read mqtt.tls.ca_file " + tls.ca_file + ": " +
                   openssl_error("not a PEM certificate file")};
    }
  } else if (tls.verify && SSL_CTX_set_default_verify_paths(context.get()) != 1) {
    return Error{"cannot load the system's CA certificates: " + openssl_error("unknown error")};
  }
  if (!tls.cert_file.empty()) {
    const auto& key_file = tls.key_file.empty() ? tls.cert_file : tls.key_file;
    for (const auto& [setting, path] : {std::pair{"mqtt.tls.cert_file", tls.cert_file},
                                        std::pair{"mqtt.tls.key_file", key_file}}) {
      if (auto readable = check_readable(setting, path); !readable) return readable.error();
    }
    if (SSL_CTX_use_certificate_chain_file(context.get(), tls.cert_file.c_str()) != 1) {
      return Error{"cannot read mqtt.tls.cert_file " + tls.cert_file + ": " +
                   openssl_error("not a PEM certificate file")};
    }
    const auto mismatch = [&] {
      return Error{"mqtt.tls.key_file " + key_file + " is not the key of mqtt.tls.cert_file " +
                   tls.cert_file};
    };
    if (SSL_CTX_use_PrivateKey_file(context.get(), key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      // OpenSSL compares the key with the certificate as it loads it.
      if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
        ERR_clear_error();
        return mismatch();
      }
      return Error{"cannot read mqtt.tls.key_file " + key_file + ": " +
                   openssl_error("not an unencrypted PEM private key")};
    }
    if (SSL_CTX_check_private_key(context.get()) != 1) {
      ERR_clear_error();
      return mismatch();
    }
  }
  return context;
}

bool is_ip_address(const std::string& host) {
  std::array<unsigned char, sizeof(in6_addr)> address{};
  return ::inet_pton(AF_INET, host.c_str(), address.data()) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), address.data()) == 1;
}

class SocketTransport final : public MqttTransport {
 public:
  SocketTransport(int fd, std::string uri) : uri_(std::move(uri)) { socket_.fd = fd; }
  ~SocketTransport() override { close(); }
  SocketTransport(const SocketTransport&) = delete;
  SocketTransport& operator=(const SocketTransport&) = delete;

  // The TLS handshake over the connected socket, by `deadline`. The error is
  // the cause alone; connect() puts the address in front.
  Status start_tls(const MqttConfig& mqtt, milliseconds timeout, Clock::time_point deadline) {
    auto context = make_context(mqtt.tls);
    if (!context) return context.error();
    context_ = std::move(*context);
    ERR_clear_error();
    ssl_.reset(SSL_new(context_.get()));
    const BIO_METHOD* method = socket_bio_method();
    BIO* bio = method != nullptr ? BIO_new(method) : nullptr;
    if (!ssl_ || bio == nullptr) {
      BIO_free(bio);
      return Error{"cannot set up TLS: " + openssl_error("out of memory")};
    }
    BIO_set_data(bio, &socket_);
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl_.get(), bio, bio);  // the SSL owns the BIO now

    const std::string& host = mqtt.host;
    if (mqtt.tls.verify) {
      if (is_ip_address(host)) {
        // An address is matched against the certificate's IP subjectAltNames.
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_.get()), host.c_str()) != 1) {
          return Error{"cannot check the server's address " + host};
        }
      } else {
        SSL_set_hostflags(ssl_.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set1_host(ssl_.get(), host.c_str()) != 1) {
          return Error{"cannot check the server's name " + host};
        }
      }
    }
    // SNI is for names only (RFC 6066 forbids addresses); brokers behind a
    // shared front pick their certificate by it.
    // SSL_set_tlsext_host_name spelled out: the macro's C cast trips -Wold-style-cast.
    if (!is_ip_address(host) &&
        SSL_ctrl(ssl_.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                 const_cast<char*>(host.c_str())) != 1) {
      return Error{"cannot send the server name " + host};
    }

    for (;;) {
      ERR_clear_error();
      errno = 0;
      const int result = SSL_connect(ssl_.get());
      if (result == 1) return Ok{};
      const int error = SSL_get_error(ssl_.get(), result);
      const int saved_errno = errno;
      if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
        const short events = error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        const auto waited = wait_for(socket_.fd, events, deadline);
        if (waited == Wait::ready) continue;
        failed_ = true;
        if (waited == Wait::timed_out) return Error{"timed out after " + format_duration(timeout)};
        return Error{system_error(errno)};
      }
      failed_ = true;
      const long verified = SSL_get_verify_result(ssl_.get());
      if (mqtt.tls.verify && verified != X509_V_OK) {
        ERR_clear_error();
        return Error{std::string("certificate verify failed: ") +
                     X509_verify_cert_error_string(verified)};
      }
      if (error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        return Error{saved_errno != 0
                         ? system_error(saved_errno)
                         : "the broker closed the connection during the TLS handshake"};
      }
      return Error{"TLS handshake failed: " + openssl_error("unknown error")};
    }
  }

  Result<std::size_t> read(std::string& into, std::size_t max_bytes,
                           milliseconds timeout) override {
    if (auto usable = check_usable(); !usable) return usable.error();
    const auto deadline = Clock::now() + timeout;
    std::size_t total = 0;
    // Bytes that came before a failure are handed over first; the next call
    // reports the failure.
    const auto stop = [&](std::string message) -> Result<std::size_t> {
      auto error = fail(std::move(message));
      if (total > 0) return total;
      return error;
    };
    // A TLS record can hold up to 16 KiB of data.
    std::array<char, 16 * 1024> buffer{};
    while (total < max_bytes) {
      const int wanted = static_cast<int>(std::min(buffer.size(), max_bytes - total));
      // Tried before any wait: TLS may hold decrypted bytes that poll(2)
      // cannot see, and a socket may already have data.
      int received = 0;
      short wait_events = POLLIN;
      if (ssl_) {
        ERR_clear_error();
        errno = 0;
        received = SSL_read(ssl_.get(), buffer.data(), wanted);
        const int read_errno = errno;  // before anything else can change it
        if (received <= 0) {
          const int error = SSL_get_error(ssl_.get(), received);
          if (error == SSL_ERROR_WANT_WRITE) {
            wait_events = POLLOUT;  // e.g. answering a key update
          } else if (error == SSL_ERROR_ZERO_RETURN) {
            return stop("the broker closed the connection");
          } else if (error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
            return stop(read_errno != 0 ? system_error(read_errno)
                                        : "the broker closed the connection");
          } else if (error != SSL_ERROR_WANT_READ) {
            return stop(openssl_error("TLS failure"));
          }
        }
      } else {
        const ssize_t count =
            ::recv(socket_.fd, buffer.data(), static_cast<std::size_t>(wanted), 0);
        if (count == 0) return stop("the broker closed the connection");
        if (count < 0 && !would_block(errno)) return stop(system_error(errno));
        received = static_cast<int>(std::max<ssize_t>(count, 0));
      }
      if (received > 0) {
        into.append(buffer.data(), static_cast<std::size_t>(received));
        total += static_cast<std::size_t>(received);
        continue;
      }
      if (total > 0) break;  // nothing more right now: return what there is
      const auto waited = wait_for(socket_.fd, wait_events, deadline);
      if (waited == Wait::timed_out) break;
      if (waited == Wait::failed) return stop(system_error(errno));
    }
    return total;
  }

  Status write(std::string_view bytes, milliseconds timeout) override {
    if (auto usable = check_usable(); !usable) return usable.error();
    auto deadline = Clock::now() + timeout;
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      const std::size_t left = std::min<std::size_t>(bytes.size() - sent, INT_MAX);
      short wait_events = POLLOUT;
      std::size_t count = 0;
      if (ssl_) {
        // After WANT_*, OpenSSL must be called again with the same bytes:
        // `sent` only moves when it reports progress.
        ERR_clear_error();
        errno = 0;
        const int result = SSL_write(ssl_.get(), bytes.data() + sent, static_cast<int>(left));
        const int write_errno = errno;  // before anything else can change it
        if (result > 0) {
          count = static_cast<std::size_t>(result);
        } else {
          const int error = SSL_get_error(ssl_.get(), result);
          if (error == SSL_ERROR_WANT_READ) {
            wait_events = POLLIN;
          } else if (error == SSL_ERROR_ZERO_RETURN) {
            return fail("the broker closed the connection");
          } else if (error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
            return fail(write_errno != 0 ? system_error(write_errno)
                                         : "the broker closed the connection");
          } else if (error != SSL_ERROR_WANT_WRITE) {
            return fail(openssl_error("TLS failure"));
          }
        }
      } else {
        const ssize_t result = ::send(socket_.fd, bytes.data() + sent, left, MSG_NOSIGNAL);
        if (result < 0 && !would_block(errno)) return fail(system_error(errno));
        count = static_cast<std::size_t>(std::max<ssize_t>(result, 0));
      }
      if (count > 0) {
        sent += count;
        deadline = Clock::now() + timeout;  // the limit is on a stall, not on the whole
        continue;
      }
      const auto waited = wait_for(socket_.fd, wait_events, deadline);
      // A half-sent packet leaves the stream unusable: the connection is done.
      if (waited == Wait::timed_out) {
        return fail("no byte could be sent for " + format_duration(timeout));
      }
      if (waited == Wait::failed) return fail(system_error(errno));
    }
    return Ok{};
  }

  void close() override {
    if (socket_.fd < 0) return;
    // close_notify once, without waiting for the broker's; OpenSSL forbids
    // it after a fatal error.
    if (ssl_ && !failed_ && SSL_is_init_finished(ssl_.get()) == 1) {
      ERR_clear_error();
      SSL_shutdown(ssl_.get());
      ERR_clear_error();
    }
    ssl_.reset();
    context_.reset();
    ::close(socket_.fd);
    socket_.fd = -1;
  }

  std::string describe() const override { return uri_; }

 private:
  Status check_usable() const {
    if (socket_.fd < 0) return Error{"the connection to " + uri_ + " is closed"};
    if (failed_) return Error{failure_};
    return Ok{};
  }
  // A read or write error ends the connection for good: later calls repeat it.
  Error fail(std::string message) {
    failed_ = true;
    failure_ = message;
    return Error{std::move(message)};
  }

  SocketState socket_;  // the BIO points here: the object is never moved
  std::string uri_;
  ContextPointer context_;
  SslPointer ssl_;
  bool failed_ = false;
  std::string failure_;
};

// A connected non-blocking socket to `address` by `deadline`, or the errno.
struct Connected {
  int fd = -1;
  int error = 0;
  bool timed_out = false;
};

Connected connect_address(const addrinfo& address, Clock::time_point deadline) {
  const int fd = ::socket(address.ai_family, address.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                          address.ai_protocol);
  if (fd < 0) return {-1, errno, false};
  // MQTT packets are small and answered one by one: no Nagle delay.
  const int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  int error = 0;
  if (::connect(fd, address.ai_addr, address.ai_addrlen) != 0) {
    error = errno;
    if (error == EINPROGRESS || error == EINTR) {
      const auto waited = wait_for(fd, POLLOUT, deadline);
      if (waited == Wait::timed_out) {
        ::close(fd);
        return {-1, 0, true};
      }
      socklen_t length = sizeof error;
      // Ready: the outcome of the connect is the socket's pending error.
      if (waited == Wait::failed || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) {
        error = errno;
      }
    }
  }
  if (error != 0) {
    ::close(fd);
    return {-1, error, false};
  }
  return {fd, 0, false};
}

}  // namespace

Result<std::unique_ptr<MqttTransport>> MqttTransport::connect(const MqttConfig& mqtt,
                                                              milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string uri = server_uri(mqtt);
  const auto failure = [&](const std::string& cause) {
    return Error{"cannot connect to " + uri + ": " + cause};
  };

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(mqtt.effective_port());
  const int looked_up = ::getaddrinfo(mqtt.host.c_str(), port.c_str(), &hints, &found);
  if (looked_up != 0) {
    if (looked_up == EAI_NONAME || looked_up == EAI_NODATA) return failure("no such host");
    return failure(std::string("name lookup failed: ") + ::gai_strerror(looked_up));
  }
  const std::unique_ptr<addrinfo, void (*)(addrinfo*)> addresses(found, ::freeaddrinfo);

  // Each address in the resolver's order (RFC 6724) until one answers.
  Connected connected;
  for (const addrinfo* address = found; address != nullptr; address = address->ai_next) {
    connected = connect_address(*address, deadline);
    if (connected.fd >= 0 || connected.timed_out) break;
  }
  if (connected.timed_out) return failure("timed out after " + format_duration(timeout));
  if (connected.fd < 0) return failure(system_error(connected.error));

  auto transport = std::make_unique<SocketTransport>(connected.fd, uri);
  if (mqtt.tls.enabled) {
    auto started = transport->start_tls(mqtt, timeout, deadline);
    if (!started) return failure(started.error().message);
  }
  return std::unique_ptr<MqttTransport>(std::move(transport));
}

}  // namespace meter::agent
