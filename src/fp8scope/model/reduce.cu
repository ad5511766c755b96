// Deterministic reductions: kernels that sum over rows write one partial per block, and
// these kernels add the partials up in a fixed order. Float atomics would make every run
// round differently; probe_recipe promises bit-identical reruns.
#include "fp8scope/model/kernels.cuh"

namespace fp8scope::model {
namespace {

// 32 columns per block (coalesced rows of 128 bytes); the 32 threads of a column sum every
// 32nd row, then one of them adds the 32 partial sums in a fixed order.
__global__ void column_sum_add_kernel(float* dst, const float* partial, int rows, int cols, int ld) {
  __shared__ float sh[32][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  float s = 0;
  if (c < cols)
    for (int r = threadIdx.y; r < rows; r += 32) s += partial[std::int64_t(r) * ld + c];
  sh[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float t = 0;
    for (int k = 0; k < 32; ++k) t += sh[k][threadIdx.x];
    dst[c] += t;
  }
}

__global__ void sum_all_kernel(float* out, const float* partial, int n) {
  __shared__ float sh[1024];
  float s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (int(threadIdx.x) < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = sh[0];
}

}  // namespace

void column_sum_add(float* dst, const float* partial, int rows, int cols, int ld, cudaStream_t s) {
  column_sum_add_kernel<<<unsigned((cols + 31) / 32), dim3(32, 32), 0, s>>>(dst, partial, rows, cols, ld);
}

void sum_all(float* out, const float* partial, int n, cudaStream_t s) { sum_all_kernel<<<1, 1024, 0, s>>>(out, partial, n); }

}  // namespace fp8scope::model
