#pragma once
// How a GEMM point is measured, and the sweep settings that set it (shared by probe_gemm
// and probe_vocab). Host-only: configs are validated on machines without a GPU too.
#include "fp8scope/core/config.hpp"
#include "fp8scope/core/gpu_timer_options.hpp"

#include <cstdint>
#include <vector>

namespace fp8scope::gemm {

struct GemmRunOptions {
  core::TimingOptions timing;      // per algorithm
  int algorithms = 8;              // how many of the heuristic's algorithms to verify and time
  bool autotune = true;            // time all of them (else only the heuristic's first)
  bool alignment_hints = false;    // tell the heuristic the real pointer alignments
  std::int64_t ref_columns = 256;  // output columns checked against the reference
  double tolerance_scale = 1.0;    // multiplies the format-justified tolerance
  int lt_log_level = 1;            // cuBLASLt log lines captured into the record
  std::uint64_t seed = 1;
  std::size_t workspace_bytes = 32u << 20;
  // Test hook: the A scale handed to cuBLASLt is multiplied by this while the reference uses
  // the true one, so a correct GEMM must be reported `incorrect` (points whose codes are drawn
  // directly with per-tensor scales; scale-mode points hand cuBLASLt their scale tensors).
  float planted_scale_error = 1.0f;
};

std::vector<core::ParamSpec> gemm_settings();
GemmRunOptions options_from_settings(const core::json& settings);

}  // namespace fp8scope::gemm
