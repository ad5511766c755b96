#pragma once
// Times device work with CUDA events: warm-up, then samples with the L2 flushed before each
// one, until there are at least min_samples and the relative IQR is under the target, or the
// time cap or max_samples is reached. The SM clock is read (NVML) after every sample so that
// throttled runs show. CUDA builds only.
#include "fp8scope/core/gpu_timer_options.hpp"
#include "fp8scope/core/stats.hpp"

#include <cuda_runtime.h>

#include <functional>
#include <string>
#include <vector>

namespace fp8scope::core {

struct Timing {
  std::vector<double> ms;
  Stats stats;
  double mean_sm_clock_mhz = 0;  // 0 when NVML is not available
  bool converged = false;        // stopped because the noise target was met
};

class GpuTimer {
 public:
  GpuTimer(cudaStream_t stream, std::string pci_bus_id, std::size_t l2_bytes);
  ~GpuTimer();
  GpuTimer(const GpuTimer&) = delete;
  GpuTimer& operator=(const GpuTimer&) = delete;
  Timing time(const std::function<void()>& launch, const TimingOptions& opt);
  void flush_l2();

 private:
  cudaStream_t stream_;
  std::string pci_;
  void* flush_ = nullptr;
  std::size_t flush_bytes_;
  cudaEvent_t start_{}, stop_{};
};

nlohmann::json to_json(const Timing& t);

}  // namespace fp8scope::core
