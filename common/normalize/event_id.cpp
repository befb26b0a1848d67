#include "common/normalize/event_id.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

namespace meter {

EventId compute_event_id(std::string_view device_id, std::string_view canonical_timestamp,
                         std::string_view metric_type, std::string_view canonical_value) {
  std::string input;
  input.reserve(device_id.size() + canonical_timestamp.size() + metric_type.size() +
                canonical_value.size() + 3);
  input.append(device_id).append("|").append(canonical_timestamp).append("|");
  input.append(metric_type).append("|").append(canonical_value);

  // The algorithm is fetched once and the context reused: EVP_sha256() makes
  // OpenSSL 3 look the algorithm up on every call and EVP_Digest allocates a
  // context, which together cost more than the hash itself (callgrind).
  static const EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  thread_local const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(
      EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  EventId id{};
  unsigned int length = 0;
  if (sha256 == nullptr || context == nullptr ||
      EVP_DigestInit_ex2(context.get(), sha256, nullptr) != 1 ||
      EVP_DigestUpdate(context.get(), input.data(), input.size()) != 1 ||
      EVP_DigestFinal_ex(context.get(), id.data(), &length) != 1 || length != id.size()) {
    throw std::runtime_error("sha256 failed in OpenSSL");
  }
  return id;
}

std::string to_hex(const EventId& id) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex(id.size() * 2, '0');
  for (std::size_t i = 0; i < id.size(); ++i) {
    hex[2 * i] = kDigits[id[i] >> 4];
    hex[2 * i + 1] = kDigits[id[i] & 0x0f];
  }
  return hex;
}

std::string hex_of_blob(std::string_view blob) {
  EventId id{};
  std::copy_n(blob.begin(), std::min(blob.size(), id.size()), id.begin());
  return to_hex(id);
}

std::optional<EventId> event_id_of_hex(std::string_view hex) {
  const auto nibble = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  if (hex.size() != 64) return std::nullopt;
  EventId id{};
  for (std::size_t i = 0; i < id.size(); ++i) {
    const int high = nibble(hex[2 * i]);
    const int low = nibble(hex[2 * i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    id[i] = static_cast<unsigned char>(high * 16 + low);
  }
  return id;
}

}  // namespace meter
