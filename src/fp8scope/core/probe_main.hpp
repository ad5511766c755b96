#pragma once
// The shared command line of every probe executable: parse flags, load and validate the
// sweep, capture the environment, run the points crash-safely, fold the results. A probe
// supplies its schema and a function that measures one point.
#include "fp8scope/core/config.hpp"
#include "fp8scope/core/env.hpp"
#include "fp8scope/core/record.hpp"
#include "fp8scope/core/result_store.hpp"

#include <functional>
#include <string>

namespace fp8scope::core {

struct ProbeContext {
  json settings;  // validated settings of the sweep
  json env;       // captured environment (env["gpu"] null without a GPU)
  int device = 0;
};

struct ProbeDef {
  ProbeSchema schema;
  std::string summary;    // one line for --help
  bool needs_gpu = true;  // without a GPU every point is recorded as skipped
  // Called once per process that measures (the worker), returns the per-point function.
  std::function<std::function<Record(const json&, const std::string&)>(const ProbeContext&)> make_point_fn;
  // Optional: checks each point before anything runs ("" = fine); a problem is bad input
  // (one line, exit 2), e.g. a model that cannot be built or cannot fit, or a file it names
  // that cannot be used. settings: the sweep's validated settings.
  std::function<std::string(const json& point, const json& settings, const json& env)> check_point;
  // Optional: after folding, e.g. to print a verdict; may add to the result's meta.
  std::function<void(ResultFile&)> on_finished;
  // Optional: what --list prints after each point's key (probe_train: the device memory the
  // point will take), without running anything.
  std::function<std::string(const json& point)> describe_point;
};

int probe_main(int argc, char** argv, const ProbeDef& def);

}  // namespace fp8scope::core
