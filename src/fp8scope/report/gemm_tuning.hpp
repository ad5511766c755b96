#pragma once
// The training sections' view of the cuBLASLt algorithm choice (probe_train's gemm_algos):
// per run, how many GEMM shapes were timed, how many another candidate than the heuristic's
// first won, and the timed shapes' trial times summed (each shape once) with either choice;
// then each shape another candidate won, with both times.
#include "fp8scope/report/report.hpp"

#include <functional>
#include <string>
#include <vector>

namespace fp8scope::report {

// The shapes a training run's gemm_tuning lists (an empty array for a run without one).
json tuned_shapes(const core::Record& r);

// Adds the two tables for the runs whose record has gemm_tuning (nothing when none has).
void add_gemm_tuning_tables(const std::vector<core::Record>& records, const std::function<std::string(const json&)>& label_of,
                            json& section);

}  // namespace fp8scope::report
