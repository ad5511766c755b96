#include "fp8scope/core/gpu_spin.cuh"

namespace fp8scope::core {
namespace {
__global__ void spin_kernel(std::int64_t cycles) {
  const long long start = clock64();
  while (clock64() - start < cycles) {
  }
}
}  // namespace

void gpu_spin(cudaStream_t stream, std::int64_t cycles) { spin_kernel<<<1, 1, 0, stream>>>(cycles); }

}  // namespace fp8scope::core
