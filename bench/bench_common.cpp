#include "bench_common.hpp"

#include "fp8scope/core/gpu_spin.cuh"

#include <algorithm>
#include <map>
#include <vector>

namespace fp8scope::bench {

const std::string& gpu_problem() {
  static const std::string problem = [] {
    const core::json g = core::gpu_env(0);
    return g["gpu"].is_null() ? "no GPU: " + g.value("gpu_reason", std::string("?")) : std::string();
  }();
  return problem;
}

void add_env_context() { benchmark::AddCustomContext("fp8scope_env", core::capture_env(0, false).dump()); }

cudaStream_t stream() {
  static cudaStream_t s = [] {
    cudaStream_t st;
    FP8S_CUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    return st;
  }();
  return s;
}

namespace {
core::DeviceBuffer& flush_buffer() {
  static core::DeviceBuffer b(256u << 20);  // well above the H200's 60 MiB L2
  return b;
}

// Start and stop events around one launch, which is queued behind a GPU spin (so the launch
// overhead is hidden) and an L2 flush (so the launch reads from memory).
struct EventTimer {
  cudaEvent_t start, stop;
  EventTimer() {
    FP8S_CUDA(cudaEventCreate(&start));
    FP8S_CUDA(cudaEventCreate(&stop));
  }
  ~EventTimer() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  float ms(const std::function<void()>& launch) {
    core::gpu_spin(stream(), 50'000);
    FP8S_CUDA(cudaMemsetAsync(flush_buffer().get(), 0, flush_buffer().size(), stream()));
    FP8S_CUDA(cudaEventRecord(start, stream()));
    launch();
    FP8S_CUDA(cudaEventRecord(stop, stream()));
    FP8S_CUDA(cudaEventSynchronize(stop));
    float t = 0;
    FP8S_CUDA(cudaEventElapsedTime(&t, start, stop));
    return t;
  }
};

// Median read+write bytes per second of device-to-device copies of `bytes`, timed as the
// benchmarks are.
double measure_copy(std::size_t bytes) {
  core::DeviceBuffer a(bytes), b(bytes);
  FP8S_CUDA(cudaMemsetAsync(a.get(), 1, bytes, stream()));
  EventTimer timer;
  std::vector<float> ms;
  for (int i = 0; i < 12; ++i) {
    const float t = timer.ms([&] { cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, stream()); });
    if (i >= 2) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  return 2.0 * double(bytes) / (ms[ms.size() / 2] * 1e-3);
}
}  // namespace

double run_timed(benchmark::State& state, const std::function<void()>& launch) {
  EventTimer timer;
  launch();  // warm-up (plans, first-touch)
  FP8S_CUDA(cudaStreamSynchronize(stream()));
  double total = 0;
  for (auto _ : state) {
    const double secs = timer.ms(launch) * 1e-3;
    state.SetIterationTime(secs);
    total += secs;
  }
  FP8S_CUDA(cudaGetLastError());
  return total;
}

double copy_bandwidth() {
  static const double bw = measure_copy(std::size_t(1) << 30);
  return bw;
}

double copy_bandwidth_moving(double bytes_moved) {
  static std::map<std::size_t, double> cache;
  const std::size_t copy_bytes = std::max<std::size_t>(256, std::size_t(bytes_moved / 2) / 256 * 256);
  auto it = cache.find(copy_bytes);
  if (it == cache.end()) it = cache.emplace(copy_bytes, measure_copy(copy_bytes)).first;
  return it->second;
}

}  // namespace fp8scope::bench
