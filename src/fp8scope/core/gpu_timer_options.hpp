#pragma once
// How long and how often device work is timed (host-only, so configs validate without CUDA).
namespace fp8scope::core {

struct TimingOptions {
  int warmup = 3;
  int min_samples = 10;
  int max_samples = 200;
  double noise_target = 0.02;  // relative IQR at which sampling may stop
  double time_cap_s = 1.0;     // sampling stops after this much wall time (once min_samples)
};

}  // namespace fp8scope::core
