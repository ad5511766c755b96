// Fused softmax cross-entropy over the real vocabulary (the padded columns take no part), with
// its gradient: one block per row.
#include "fp8scope/model/kernels.cuh"

#include <cfloat>

namespace fp8scope::model {
namespace {

__device__ float block_reduce(float v, bool is_max) {
  __shared__ float buf[32];
  for (int o = 16; o > 0; o /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, other) : v + other;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) buf[warp] = v;
  __syncthreads();
  v = lane < blockDim.x / 32 ? buf[lane] : (is_max ? -FLT_MAX : 0.0f);
  for (int o = 16; o > 0; o /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, other) : v + other;
  }
  return v;
}

__global__ void cross_entropy_kernel(float* losses, bf16* dlogits, const float* logits, const int* targets, int N, int V, int Vp) {
  const std::int64_t row = blockIdx.x;
  const float* z = logits + row * Vp;
  float m = -FLT_MAX;
  for (int v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, z[v]);
  m = block_reduce(m, true);
  float s = 0;
  for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(z[v] - m);
  s = block_reduce(s, false);
  const int target = targets[row];
  if (threadIdx.x == 0) losses[row] = -(z[target] - m - logf(s));
  const float inv_n = 1.0f / N;
  for (int v = threadIdx.x; v < Vp; v += blockDim.x) {
    const float p = v < V ? expf(z[v] - m) / s : 0.0f;
    dlogits[row * Vp + v] = __float2bfloat16((p - (v == target ? 1.0f : 0.0f)) * inv_n);
  }
}

}  // namespace

void cross_entropy_forward_backward(float* losses, bf16* dlogits, const float* logits, const int* targets, int N, int V, int Vp,
                                    cudaStream_t s) {
  cross_entropy_kernel<<<N, 512, 0, s>>>(losses, dlogits, logits, targets, N, V, Vp);
}

}  // namespace fp8scope::model
