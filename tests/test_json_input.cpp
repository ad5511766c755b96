// Strict JSON input: what nlohmann alone accepts silently (a NUL and bytes after it, repeated
// keys) is refused with the line and column; keys compare after their escapes are decoded.
#include "fp8scope/core/error.hpp"
#include "fp8scope/core/json_input.hpp"

#include <gtest/gtest.h>

using fp8scope::core::InputError;
using fp8scope::core::parse_json_strict;

namespace {
std::string error_of(const std::string& text) {
  try {
    parse_json_strict(text, "f.json");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(JsonInput, AcceptsPlainDocuments) {
  EXPECT_EQ(error_of(R"({"a": [1, {"a": 2}], "b": {"a": "a"}, "c": "\"a\""})"), "");  // same key in other objects is fine
  EXPECT_EQ(error_of("  [1, 2]\n\n"), "");
  EXPECT_EQ(parse_json_strict(R"({"x":[{"y":1},{"y":2}]})", "f")["x"][1]["y"], 2);
}

TEST(JsonInput, RefusesBytesAfterTheDocument) {
  EXPECT_EQ(error_of(std::string("{\"a\":1}\n") + std::string(1, '\0') + "junk"), "f.json: not valid JSON: a NUL byte at line 2, column 1");
  EXPECT_NE(error_of("{\"a\":1}\n{\"b\":2}").find("line 2, column 1"), std::string::npos);
  EXPECT_NE(error_of("{\"a\":1} x").find("expected end of input"), std::string::npos);
  EXPECT_NE(error_of("{\"a\":").find("(truncated?)"), std::string::npos);
}

TEST(JsonInput, RefusesRepeatedKeysWithBothPlaces) {
  EXPECT_EQ(error_of("{\"axes\": {\"m\": [1],\n           \"m\": [2]}}"),
            "f.json: duplicate key \"m\" at line 2, column 12 (first at line 1, column 11)");
  // Escapes are decoded before comparing: \u0061 is "a".
  EXPECT_NE(error_of(R"({"a": 1, "\u0061": 2})").find("duplicate key \"a\""), std::string::npos);
  // A string value equal to a key is not a key; nested arrays of objects are checked each.
  EXPECT_EQ(error_of(R"({"k": "k", "l": [{"k": 1}, {"k": 2}]})"), "");
  EXPECT_NE(error_of(R"([{"k": 1}, {"k": 1, "k": 2}])").find("duplicate key \"k\" at line 1, column 21"), std::string::npos);
}
