#pragma once
// Programmatic dependent launch (Hopper): a small reduction that follows a large kernel
// (column_sum_add after a bias-gradient pass) is launched early, its blocks waiting on the
// GPU for the first kernel's results, so its launch and ramp-up overlap the first kernel's
// tail instead of following it (0.5-2 us per pair on an H200). The first kernel allows it with allow_dependent_launch() (a no-op when
// the next launch did not ask for it); the second, launched with the attribute
// (launch_dependent), calls wait_for_prerequisite_grid() before it reads anything: that
// returns once the first grid has completed and its writes are visible.
#include <cuda_runtime.h>

namespace fp8scope::core {

__device__ __forceinline__ void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void wait_for_prerequisite_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Launches kernel<<<grid, block, 0, s>>>(args...) as a dependent launch: it may start before
// the stream's previous kernel ends, so the kernel must call wait_for_prerequisite_grid() first.
template <class... Params, class... Args>
cudaError_t launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t s, Args... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.stream = s;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...);
}

}  // namespace fp8scope::core
