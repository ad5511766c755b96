#pragma once
// A kernel that keeps the GPU busy for a number of clock cycles, so that the host can enqueue
// the work to be timed (and its start event) before the GPU reaches it: the events then time
// the work, not the host's launch latency.
#include <cuda_runtime.h>

#include <cstdint>

namespace fp8scope::core {

void gpu_spin(cudaStream_t stream, std::int64_t cycles);

}  // namespace fp8scope::core
