#include "common/event_id.hpp"

#include <openssl/evp.h>

#include <stdexcept>

namespace meter {

EventId compute_event_id(std::string_view device_id, std::string_view canonical_timestamp,
                         std::string_view metric_type, std::string_view canonical_value) {
  std::string input;
  input.reserve(device_id.size() + canonical_timestamp.size() + metric_type.size() +
                canonical_value.size() + 3);
  input.append(device_id).append("|").append(canonical_timestamp).append("|");
  input.append(metric_type).append("|").append(canonical_value);

  EventId id{};
  unsigned int length = 0;
  if (EVP_Digest(input.data(), input.size(), id.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length != id.size()) {
    throw std::runtime_error("sha256 failed in OpenSSL");
  }
  return id;
}

std::string to_hex(const EventId& id) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex(id.size() * 2, '0');
  for (std::size_t i = 0; i < id.size(); ++i) {
    hex[2 * i] = digits[id[i] >> 4];
    hex[2 * i + 1] = digits[id[i] & 0x0f];
  }
  return hex;
}

}  // namespace meter
