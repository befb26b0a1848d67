#include "agent/uplink/http_client.hpp"

#include <curl/curl.h>

#include <mutex>
#include <utility>

namespace meter::agent {
namespace {

std::size_t collect(char* data, std::size_t size, std::size_t count, void* target) {
  static_cast<std::string*>(target)->append(data, size * count);
  return size * count;
}

// The largest response body read: the central's answers are one short object
// per record, far below this.
constexpr std::size_t kMaxResponseBytes = 64 * 1024 * 1024;

std::size_t collect_bounded(char* data, std::size_t size, std::size_t count, void* target) {
  auto* out = static_cast<std::string*>(target);
  if (out->size() + size * count > kMaxResponseBytes) return 0;  // curl aborts the transfer
  return collect(data, size, count, target);
}

int check_abort(void* abort, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return abort != nullptr && static_cast<const std::atomic<bool>*>(abort)->load() ? 1 : 0;
}

}  // namespace

void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlTransport::Handle {
  CURL* curl = nullptr;
  Handle() = default;
  ~Handle() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
  // Owns the easy handle: a copy would clean it up twice.
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&&) = delete;
  Handle& operator=(Handle&&) = delete;
};

CurlTransport::CurlTransport(UplinkConfig config)
    : config_(std::move(config)), handle_(std::make_unique<Handle>()) {
  init_curl_once();
  handle_->curl = curl_easy_init();
}

CurlTransport::~CurlTransport() = default;

HttpAnswer CurlTransport::post(const HttpPost& request) {
  HttpAnswer outcome;
  CURL* curl = handle_->curl;
  if (curl == nullptr) {
    outcome.transport_error = "curl_easy_init failed";
    return outcome;
  }
  curl_easy_reset(curl);  // keeps the connection cache, drops every option
  const std::string authorization = "Authorization: Bearer " + request.bearer_token;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, authorization.c_str());
  if (request.gzip) headers = curl_slist_append(headers, "Content-Encoding: gzip");
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
  char error_buffer[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_bounded);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &outcome.body);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (request.abort != nullptr) {
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, check_abort);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, const_cast<std::atomic<bool>*>(request.abort));
  }
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(config_.timeout_ms));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(config_.connect_timeout_ms));
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "meter-agent");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);  // a redirect must not carry the token away
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, config_.verify ? 1L : 0L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, config_.verify ? 2L : 0L);
  if (!config_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, config_.ca_file.c_str());
  if (!config_.cert_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, config_.cert_file.c_str());
    curl_easy_setopt(curl, CURLOPT_SSLKEY, config_.key_file.c_str());
  }
  const CURLcode code = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (code != CURLE_OK) {
    outcome.transport_error = std::string(curl_easy_strerror(code)) +
                              (error_buffer[0] ? std::string(": ") + error_buffer : "");
    outcome.tls_failure = code == CURLE_PEER_FAILED_VERIFICATION ||
                          code == CURLE_SSL_CONNECT_ERROR || code == CURLE_SSL_CACERT_BADFILE ||
                          code == CURLE_SSL_CERTPROBLEM;
    outcome.body.clear();
    return outcome;
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &outcome.status);
  curl_off_t uploaded = 0;
  curl_easy_getinfo(curl, CURLINFO_SIZE_UPLOAD_T, &uploaded);
  outcome.bytes_sent = static_cast<std::int64_t>(uploaded);
  curl_off_t retry_after = -1;
  if (curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK && retry_after > 0) {
    outcome.retry_after_ms = static_cast<std::int64_t>(retry_after) * 1000;
  }
  return outcome;
}

}  // namespace meter::agent
