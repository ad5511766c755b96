#pragma once
// Strict JSON for every file a user hands us (sweeps, suites, policies, result files): on top of
// nlohmann's syntax check, a document must be all the file holds (nlohmann stops silently at a
// NUL byte, so "{...}\0garbage" would pass) and no object may repeat a key (nlohmann keeps the
// last one, so a sweep with "steps" twice would run a value the reader may not have meant).
// Every problem is one InputError naming the file, the line and the column.
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace fp8scope::core {

// Parses `text`; `what` names it in messages (a path, or "path:line" for a JSONL line).
nlohmann::json parse_json_strict(std::string_view text, const std::string& what);

// Reads and parses a file; InputError when it cannot be opened or is not strict JSON.
nlohmann::json read_json_file(const std::string& path);

// 1-based line and column of byte `offset` of `text`.
std::pair<std::size_t, std::size_t> line_column(std::string_view text, std::size_t offset);

}  // namespace fp8scope::core
