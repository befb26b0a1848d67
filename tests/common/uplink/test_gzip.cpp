#include <catch2/catch.hpp>
#include <random>
#include <string>

#include "common/uplink/gzip.hpp"
#include "support/gunzip.hpp"

using namespace meter;

TEST_CASE("gzip round-trips and writes one gzip member", "[gzip]") {
  std::mt19937 random(7);
  std::string data;
  for (int i = 0; i < 100000; ++i) data += static_cast<char>('a' + random() % 4);
  for (int level : {1, 6, 9}) {
    auto packed = gzip_compress(data, level);
    REQUIRE(packed);
    REQUIRE(packed->size() > 10);
    CHECK(static_cast<unsigned char>((*packed)[0]) == 0x1f);  // RFC 1952 magic
    CHECK(static_cast<unsigned char>((*packed)[1]) == 0x8b);
    CHECK(packed->size() < data.size() / 2);
    auto unpacked = meter::testing::gunzip(*packed, data.size());
    REQUIRE(unpacked);
    CHECK(*unpacked == data);
  }
  auto empty = gzip_compress("", 6);
  REQUIRE(empty);
  CHECK(meter::testing::gunzip(*empty, 10).value().empty());
}

TEST_CASE("gunzip refuses truncated members, trailing bytes and output over its cap", "[gzip]") {
  auto packed = gzip_compress(std::string(10000, 'x'), 6).value();
  CHECK_FALSE(meter::testing::gunzip(packed.substr(0, packed.size() - 3), 1 << 20));
  CHECK_FALSE(meter::testing::gunzip(packed + "junk", 1 << 20));
  CHECK_FALSE(meter::testing::gunzip(packed, 9999));
  CHECK_FALSE(gzip_compress("x", 0));
}
