#include <catch2/catch.hpp>

#include "common/buffer/redelivery.hpp"

using meter::RedeliveryIndex;

TEST_CASE("the redelivery index finds earlier copies within its window, newest first",
          "[redelivery]") {
  RedeliveryIndex index(3);
  const auto a = RedeliveryIndex::content_hash("t", "a", 1);
  const auto b = RedeliveryIndex::content_hash("t", "b", 1);
  CHECK(a != b);
  CHECK(RedeliveryIndex::content_hash("t", "a", 0) != a);  // QoS is part of the content
  index.add(1, a, 100, false);
  index.add(2, b, 200, false);
  index.add(3, a, 300, true);
  auto copies = index.candidates(a, 4);
  REQUIRE(copies.size() == 2);
  CHECK(copies[0].seq == 3);
  CHECK(copies[0].dup);
  CHECK(copies[1].seq == 1);
  CHECK(copies[1].received_ms == 100);
  CHECK(index.candidates(a, 3).size() == 1);  // only copies before the message itself
  index.add(4, b, 400, false);                // seq 1 leaves the window of 3
  CHECK(index.candidates(a, 5).size() == 1);
  CHECK(index.through_seq() == 4);
  index.clear();
  CHECK(index.through_seq() == -1);
  CHECK(index.candidates(b, 5).empty());
}
