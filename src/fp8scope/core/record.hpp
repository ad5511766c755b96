#pragma once
// One record per sweep point, with exactly one outcome. Probe-specific sections (timing,
// metrics, accuracy, cublas, ...) live in `data` and are written beside the fixed fields.
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace fp8scope::core {

using json = nlohmann::json;

enum class Outcome {
  ok,                     // ran, correct
  heuristic_unsupported,  // cuBLASLt said NOT_SUPPORTED (or refused the descriptors)
  no_algorithm,           // the heuristic succeeded but returned no algorithm
  run_rejected,           // algorithms offered, but cublasLtMatmul refused to run
  incorrect,              // ran, error above tolerance
  nonfinite,              // NaN/Inf appeared
  oom,                    // device memory could not be allocated
  crashed,                // the worker process died (signal, exit, sticky CUDA error, timeout)
  skipped,                // not run, with a reason (e.g. no GPU)
};

inline constexpr int kSchemaVersion = 1;

std::string_view to_string(Outcome o);
std::optional<Outcome> parse_outcome(std::string_view s);
const std::vector<std::string>& outcome_names();

struct Record {
  std::string key;  // stable point key
  json params = json::object();
  Outcome outcome = Outcome::ok;
  std::string reason;          // for every outcome but ok: why
  json data = json::object();  // sections: timing, metrics, accuracy, cublas, ...
};

json to_json(const Record& r);
// Throws InputError naming the problem when `j` is not a record.
Record record_from_json(const json& j);

// Convenience for probes: a record with an outcome and reason.
Record make_record(std::string key, json params, Outcome o, std::string reason = {});

}  // namespace fp8scope::core
