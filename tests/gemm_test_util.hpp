#pragma once
// For the GEMM probe's gpu tests: measurement options that keep a point to a few samples.
#include "fp8scope/gemm/run_options.hpp"

inline fp8scope::gemm::GemmRunOptions quick_gemm_options() {
  fp8scope::gemm::GemmRunOptions o;
  o.timing.min_samples = 3;
  o.timing.max_samples = 5;
  o.timing.warmup = 1;
  o.algorithms = 2;
  return o;
}
