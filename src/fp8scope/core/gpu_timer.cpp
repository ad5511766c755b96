#include "fp8scope/core/gpu_timer.hpp"

#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/core/gpu_spin.cuh"
#include "fp8scope/core/nvml.hpp"

#include <chrono>

namespace fp8scope::core {

GpuTimer::GpuTimer(cudaStream_t stream, std::string pci, std::size_t l2_bytes)
    : stream_(stream), pci_(std::move(pci)), flush_bytes_(2 * l2_bytes) {
  FP8S_CUDA(cudaMalloc(&flush_, flush_bytes_));
  FP8S_CUDA(cudaEventCreate(&start_));
  FP8S_CUDA(cudaEventCreate(&stop_));
}

GpuTimer::~GpuTimer() {
  cudaFree(flush_);
  cudaEventDestroy(start_);
  cudaEventDestroy(stop_);
}

void GpuTimer::flush_l2() { FP8S_CUDA(cudaMemsetAsync(flush_, 0, flush_bytes_, stream_)); }

Timing GpuTimer::time(const std::function<void()>& launch, const TimingOptions& opt) {
  for (int i = 0; i < opt.warmup; ++i) launch();
  FP8S_CUDA(cudaStreamSynchronize(stream_));
  Timing t;
  double clock_sum = 0;
  int clock_n = 0;
  auto& nvml = Nvml::instance();
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    gpu_spin(stream_, 100'000);  // ~50 us: the launches below queue up behind it
    flush_l2();                  // every sample starts cold, as a GEMM in a training step does
    FP8S_CUDA(cudaEventRecord(start_, stream_));
    launch();
    FP8S_CUDA(cudaEventRecord(stop_, stream_));
    FP8S_CUDA(cudaEventSynchronize(stop_));
    float ms = 0;
    FP8S_CUDA(cudaEventElapsedTime(&ms, start_, stop_));
    t.ms.push_back(ms);
    if (nvml.available())
      if (auto c = nvml.sm_clock_mhz(pci_)) {
        clock_sum += *c;
        ++clock_n;
      }
    const int n = int(t.ms.size());
    if (n >= opt.max_samples) break;
    if (n >= opt.min_samples) {
      if (compute_stats(t.ms).rel_iqr <= opt.noise_target) {
        t.converged = true;
        break;
      }
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > opt.time_cap_s) break;
    }
  }
  t.stats = compute_stats(t.ms);
  t.mean_sm_clock_mhz = clock_n ? clock_sum / clock_n : 0;
  return t;
}

nlohmann::json to_json(const Timing& t) {
  nlohmann::json j = to_json(t.stats);
  j["unit"] = "ms";
  j["mean_sm_clock_mhz"] = t.mean_sm_clock_mhz;
  j["converged"] = t.converged;
  return j;
}

}  // namespace fp8scope::core
