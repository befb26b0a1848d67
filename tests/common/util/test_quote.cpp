// Quoting input text inside error messages (common/util/quote.hpp): the three
// shapes the messages use, pinned byte for byte.
#include <catch2/catch.hpp>
#include <string>

#include "common/util/quote.hpp"

using meter::NonAscii;
using meter::quoted;
using meter::quoted_short;

TEST_CASE("quoted escapes control bytes, DEL, non-ASCII and backslashes, and shows 64 bytes",
          "[quote]") {
  CHECK(quoted("") == "''");
  CHECK(quoted("kWh") == "'kWh'");
  CHECK(quoted(std::string("a\0b", 3)) == "'a\\x00b'");
  CHECK(quoted("\n\x7f\\") == "'\\x0a\\x7f\\x5c'");
  CHECK(quoted("\xc3\xa4") == "'\\xc3\\xa4'");
  CHECK(quoted(std::string(64, 'x')) == "'" + std::string(64, 'x') + "'");
  CHECK(quoted(std::string(65, 'x')) == "'" + std::string(64, 'x') + "...' (65 bytes)");
}

TEST_CASE("quoted_short escapes control bytes and DEL, non-ASCII as asked, and cuts at the limit",
          "[quote]") {
  CHECK(quoted_short("", 4, NonAscii::escape) == "''");
  CHECK(quoted_short("a\tb\x7f", 8, NonAscii::keep) == "'a\\x09b\\x7f'");
  CHECK(quoted_short("a\\b", 8, NonAscii::escape) == "'a\\b'");  // backslashes as they are
  CHECK(quoted_short("Z\xc3\xa4hler", 16, NonAscii::keep) == "'Z\xc3\xa4hler'");
  CHECK(quoted_short("Z\xc3\xa4hler", 16, NonAscii::escape) == "'Z\\xc3\\xa4hler'");
  CHECK(quoted_short("abcd", 4, NonAscii::escape) == "'abcd'");
  CHECK(quoted_short("abcde", 4, NonAscii::escape) == "'abcd...'");
  CHECK(quoted_short("\x01\x02\x03", 2, NonAscii::keep) == "'\\x01\\x02...'");
}
