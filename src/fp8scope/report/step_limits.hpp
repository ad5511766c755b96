#pragma once
// The limit table of the training sections: each phase of a profiled step beside its bound --
// its GEMMs at the speed probe_gemm measured for those shapes (the fastest algorithm), the fused
// attention's FLOPs at the fastest BF16 GEMM rate measured, its bytes at the copy bandwidth
// bench_kernels measured -- so the distance to the hardware shows phase by phase.
#include "fp8scope/report/report.hpp"

#include <map>
#include <string>
#include <vector>

namespace fp8scope::report {

struct MeasuredRates {
  std::map<std::string, double> gemm_tflops;  // "fp8|m|n|k" or "bf16|m|n|k" -> fastest TFLOP/s measured
  double fastest_fp8 = 0, fastest_bf16 = 0;   // TFLOP/s over every shape measured
  double copy_gbs = 0;                        // device copy, bytes read + written per second / 1e9
  std::string gemm_from, copy_from;           // the files they came from
  bool any() const { return !gemm_tflops.empty() || copy_gbs > 0; }
};
MeasuredRates measured_rates(const std::vector<ReportInput>& inputs);

// Adds the table for the runs of a training sweep that carry a time split (nothing when no
// rate was measured or no run has a split).
void add_limit_table(const std::vector<core::Record>& records, const MeasuredRates& rates, json& section);

}  // namespace fp8scope::report
