#pragma once
// The training sections' view of gelu_cast gemm_epilogue (the GELU and its gradient in
// cuBLASLt's epilogues): where each run's GELU ran (cuBLASLt may refuse an epilogue, and the
// run then falls back to the GELU kernels), and each run against its twin with the GELU
// kernels in the same file: the step, the GELU phase and the matmul phase.
#include "fp8scope/report/report.hpp"

#include <functional>
#include <string>
#include <vector>

namespace fp8scope::report {

// Where a training run's GELU ran, forward / backward: "kernel/kernel" for gelu_cast kernel
// (and records before the axis), else as its gelu_epilogue field says ("epilogue" where
// cuBLASLt took GELU_AUX_BIAS / DGELU_BGRAD, "kernel" where it refused).
std::string gelu_ran(const core::Record& r);
// Adds the two tables for the runs whose record has gelu_epilogue (nothing when none has).
void add_gelu_epilogue_tables(const std::vector<core::Record>& records, const std::function<std::string(const json&)>& label_of,
                              json& section);

}  // namespace fp8scope::report
