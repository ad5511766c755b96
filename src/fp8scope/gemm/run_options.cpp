#include "fp8scope/gemm/run_options.hpp"

namespace fp8scope::gemm {

using K = core::ParamSpec::Kind;

std::vector<core::ParamSpec> gemm_settings() {
  return {
      {"warmup", K::integer, 3, {}, 0, 1000, "untimed runs before sampling"},
      {"min_samples", K::integer, 10, {}, 1, 100000, "timed samples at least"},
      {"max_samples", K::integer, 200, {}, 1, 100000, "timed samples at most"},
      {"noise_target", K::number, 0.02, {}, 0, 1, "stop sampling once IQR/median is below this"},
      {"time_cap_s", K::number, 1.0, {}, 0, 600, "stop sampling an algorithm after this long"},
      {"algorithms", K::integer, 8, {}, 1, 64, "heuristic algorithms to verify and time"},
      {"autotune", K::boolean, true, {}, 0, 0, "time every returned algorithm, not only the first"},
      {"alignment_hints", K::boolean, false, {}, 0, 0, "tell the heuristic the real pointer alignments"},
      {"ref_columns", K::integer, 256, {}, 1, 1 << 20, "output columns compared with the FP32 reference"},
      {"tolerance_scale", K::number, 1.0, {}, 0, 1e6, "multiplies the format-justified error tolerance"},
      {"lt_log_level", K::integer, 1, {}, 0, 5, "cuBLASLt log level captured into records (0 = off)"},
      {"seed", K::integer, 1, {}, 0, 1e15, "random inputs"},
      {"workspace_mib", K::integer, 32, {}, 0, 4096, "cuBLASLt workspace"},
  };
}

GemmRunOptions options_from_settings(const core::json& s) {
  GemmRunOptions o;
  o.timing.warmup = s.value("warmup", 3);
  o.timing.min_samples = s.value("min_samples", 10);
  o.timing.max_samples = std::max(o.timing.min_samples, s.value("max_samples", 200));
  o.timing.noise_target = s.value("noise_target", 0.02);
  o.timing.time_cap_s = s.value("time_cap_s", 1.0);
  o.algorithms = s.value("algorithms", 8);
  o.autotune = s.value("autotune", true);
  o.alignment_hints = s.value("alignment_hints", false);
  o.ref_columns = s.value("ref_columns", 256);
  o.tolerance_scale = s.value("tolerance_scale", 1.0);
  o.lt_log_level = s.value("lt_log_level", 1);
  o.seed = s.value("seed", std::uint64_t(1));
  o.workspace_bytes = std::size_t(s.value("workspace_mib", 32)) << 20;
  return o;
}

}  // namespace fp8scope::gemm
