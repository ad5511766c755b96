#include "fp8scope/core/json_input.hpp"

#include "fp8scope/core/error.hpp"

#include <fmt/format.h>

#include <fstream>
#include <map>
#include <sstream>
#include <vector>

namespace fp8scope::core {
using json = nlohmann::json;

std::pair<std::size_t, std::size_t> line_column(std::string_view text, std::size_t offset) {
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n')
      ++line, col = 1;
    else
      ++col;
  }
  return {line, col};
}

namespace {

// Offset just past the string literal that starts at text[i] == '"' (the text is valid JSON).
std::size_t string_end(std::string_view text, std::size_t i) {
  for (++i; i < text.size(); ++i) {
    if (text[i] == '\\')
      ++i;
    else if (text[i] == '"')
      return i + 1;
  }
  return text.size();
}

// The first key an object repeats, walking a document nlohmann has already accepted: a stack
// of open containers, each object with the keys seen so far (escapes decoded, so "\u0061" and
// "a" are one key) and where each was first seen.
void check_duplicate_keys(std::string_view text, const std::string& what) {
  struct Open {
    bool object;
    bool expect_key;
    std::map<std::string, std::size_t> keys;
  };
  std::vector<Open> stack;
  for (std::size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == '"') {
      const std::size_t end = string_end(text, i);
      if (!stack.empty() && stack.back().object && stack.back().expect_key) {
        const std::string key = json::parse(text.substr(i, end - i)).get<std::string>();
        auto [it, fresh] = stack.back().keys.emplace(key, i);
        if (!fresh) {
          const auto [l, c2] = line_column(text, i);
          const auto [l0, c0] = line_column(text, it->second);
          throw InputError(
              fmt::format("{}: duplicate key \"{}\" at line {}, column {} (first at line {}, column {})", what, key, l, c2, l0, c0));
        }
        stack.back().expect_key = false;
      }
      i = end;
      continue;
    }
    if (c == '{')
      stack.push_back({true, true, {}});
    else if (c == '[')
      stack.push_back({false, false, {}});
    else if (c == '}' || c == ']')
      stack.pop_back();
    else if (c == ',' && !stack.empty() && stack.back().object)
      stack.back().expect_key = true;
    ++i;
  }
}

}  // namespace

json parse_json_strict(std::string_view text, const std::string& what) {
  if (const auto nul = text.find('\0'); nul != std::string_view::npos) {
    const auto [l, c] = line_column(text, nul);
    throw InputError(fmt::format("{}: not valid JSON: a NUL byte at line {}, column {}", what, l, c));
  }
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    // nlohmann's message says where ("at line 3, column 5") and, for bytes after the document,
    // "expected end of input".
    const std::string msg = e.what();
    const auto pos = msg.find("parse error");
    const bool ends_early = msg.find("unexpected end of input") != std::string::npos;
    throw InputError(
        fmt::format("{}: not valid JSON{}: {}", what, ends_early ? " (truncated?)" : "", pos == std::string::npos ? msg : msg.substr(pos)));
  }
  check_duplicate_keys(text, what);
  return j;
}

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open file", path));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw InputError(fmt::format("{}: cannot read file", path));
  return parse_json_strict(ss.str(), path);
}

}  // namespace fp8scope::core
