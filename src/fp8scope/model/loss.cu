// Fused softmax cross-entropy over the real vocabulary (the padded columns take no part), with
// its gradient: one block per row.
#include "fp8scope/model/kernels.cuh"

#include <cfloat>

namespace fp8scope::model {
namespace {

// One pass for the running max and the sum of exponentials (rescaled when the max moves),
// combined across the block; a second pass writes the gradient.
__global__ void cross_entropy_kernel(float* losses, bf16* dlogits, const float* logits, const int* targets, int N, int V, int Vp) {
  __shared__ float sm[32], ss[32];
  const std::int64_t row = blockIdx.x;
  const float* z = logits + row * Vp;
  float m = -FLT_MAX, s = 0.0f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float x = z[v];
    if (x > m) {
      s = s * expf(m - x) + 1.0f;
      m = x;
    } else {
      s += expf(x - m);
    }
  }
  // (m, s) pairs combine as m = max, s = s_a e^(m_a - m) + s_b e^(m_b - m).
  for (int o = 16; o > 0; o /= 2) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    const float mm = fmaxf(m, m2);
    s = s * expf(m - mm) + s2 * expf(m2 - mm);
    m = mm;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  if (lane == 0) sm[warp] = m, ss[warp] = s;
  __syncthreads();
  m = lane < warps ? sm[lane] : -FLT_MAX;
  s = lane < warps ? ss[lane] : 0.0f;
  for (int o = 16; o > 0; o /= 2) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    const float mm = fmaxf(m, m2);
    s = (s == 0.0f ? 0.0f : s * expf(m - mm)) + (s2 == 0.0f ? 0.0f : s2 * expf(m2 - mm));
    m = mm;
  }
  const int target = targets[row];
  if (threadIdx.x == 0) losses[row] = -(z[target] - m - logf(s));
  const float inv_s = 1.0f / s, inv_n = 1.0f / N;
  for (int v = threadIdx.x; v < Vp; v += blockDim.x) {
    const float p = v < V ? expf(z[v] - m) * inv_s : 0.0f;
    dlogits[row * Vp + v] = __float2bfloat16((p - (v == target ? 1.0f : 0.0f)) * inv_n);
  }
}

}  // namespace

void cross_entropy_forward_backward(float* losses, bf16* dlogits, const float* logits, const int* targets, int N, int V, int Vp,
                                    cudaStream_t s) {
  cross_entropy_kernel<<<N, 512, 0, s>>>(losses, dlogits, logits, targets, N, V, Vp);
}

}  // namespace fp8scope::model
