// A throwaway PKI for TLS tests, made with the openssl command line in a
// temporary directory: a test CA (ca.pem), a server certificate for localhost
// and 127.0.0.1 (server.pem, server.key), one for 127.0.0.1 alone with the
// same key (server-address.pem), a client certificate signed by the
// test CA (client.pem, client.key), and a second CA that signed nothing the
// broker uses (other.pem). EC P-256 keys: made in milliseconds, unlike RSA.
#pragma once

#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace meter::test {

class TestPki {
 public:
  TestPki() {
    const auto p = [&](const std::string& name) { return "'" + dir_.file(name) + "'"; };
    const std::string new_key =
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
    run(new_key + "-x509 -days 2 -subj /CN=test-ca -keyout " + p("ca.key") + " -out " +
        p("ca.pem"));
    run(new_key + "-x509 -days 2 -subj /CN=other-ca -keyout " + p("other.key") + " -out " +
        p("other.pem"));
    write_text_file(dir_.file("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    run(new_key + "-subj /CN=localhost -keyout " + p("server.key") + " -out " + p("server.csr"));
    run("openssl x509 -req -days 2 -in " + p("server.csr") + " -CA " + p("ca.pem") + " -CAkey " +
        p("ca.key") + " -CAcreateserial -extfile " + p("server.ext") + " -out " + p("server.pem"));
    write_text_file(dir_.file("server-address.ext"), "subjectAltName=IP:127.0.0.1\n");
    run("openssl req -new -key " + p("server.key") + " -subj /CN=127.0.0.1 -out " +
        p("server-address.csr"));
    run("openssl x509 -req -days 2 -in " + p("server-address.csr") + " -CA " + p("ca.pem") +
        " -CAkey " + p("ca.key") + " -CAcreateserial -extfile " + p("server-address.ext") +
        " -out " + p("server-address.pem"));
    run(new_key + "-subj /CN=test-gw -keyout " + p("client.key") + " -out " + p("client.csr"));
    run("openssl x509 -req -days 2 -in " + p("client.csr") + " -CA " + p("ca.pem") + " -CAkey " +
        p("ca.key") + " -CAcreateserial -out " + p("client.pem"));
    // mosquitto may run as another user: it must read the CA and its own files.
    ::chmod(dir_.path().c_str(), 0755);
    for (const char* file : {"ca.pem", "server.pem", "server-address.pem", "server.key"}) {
      ::chmod(dir_.file(file).c_str(), 0644);
    }
  }

  std::string file(const std::string& name) const { return dir_.file(name); }

  // mosquitto listener lines: TLS with `certificate` (server.pem or
  // server-address.pem); client certificates from the test CA, required when
  // `require_certificate`.
  std::string mosquitto_listener(bool require_certificate = false,
                                 const std::string& certificate = "server.pem") const {
    return "cafile " + file("ca.pem") + "\ncertfile " + file(certificate) + "\nkeyfile " +
           file("server.key") + "\n" + (require_certificate ? "require_certificate true\n" : "");
  }

 private:
  static void run(const std::string& command) {
    const int status = std::system((command + " >/dev/null 2>&1").c_str());
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      throw std::runtime_error("failed: " + command);
    }
  }

  TempDir dir_;
};

}  // namespace meter::test
