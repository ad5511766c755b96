// AdamW (decoupled weight decay) on FP32 master weights, writing the BF16 copy the forward
// pass reads; the gradient norm for clipping; FP32 -> BF16 casts.
#include "fp8scope/model/kernels.cuh"

namespace fp8scope::model {
namespace {

__global__ void cast_kernel(bf16* out, const float* in, std::int64_t n) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16(in[i]);
}

// One partial per block (fixed grid, fixed order), summed by sum_all: deterministic.
constexpr int kSumBlocks = 1024;

__global__ void sum_squares_kernel(float* partial, const float* x, std::int64_t n) {
  __shared__ float warp_sums[8];
  float s = 0;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    s += x[i] * x[i];
  for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0;
    for (int w = 0; w < 8; ++w) t += warp_sums[w];
    partial[blockIdx.x] = t;
  }
}

__global__ void adamw_kernel(float* p, bf16* pb, const float* g, float* m, float* v, std::int64_t n, float lr, float b1, float b2,
                             float eps, float wd, float grad_scale, float c1, float c2) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float gi = g[i] * grad_scale;
  const float mi = b1 * m[i] + (1.0f - b1) * gi;
  const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  const float update = (mi / c1) / (sqrtf(vi / c2) + eps);
  const float pi = p[i] - lr * (update + wd * p[i]);
  p[i] = pi;
  pb[i] = __float2bfloat16(pi);
}

}  // namespace

void cast_to_bf16(bf16* out, const float* in, std::int64_t n, cudaStream_t s) {
  cast_kernel<<<unsigned((n + 255) / 256), 256, 0, s>>>(out, in, n);
}

void sum_squares(float* out, float* scratch, const float* x, std::int64_t n, cudaStream_t s) {
  sum_squares_kernel<<<kSumBlocks, 256, 0, s>>>(scratch, x, n);
  sum_all(out, scratch, kSumBlocks, s);
}

void adamw_update(float* p, bf16* pb, const float* g, float* m, float* v, std::int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float grad_scale, int t, cudaStream_t s) {
  const float c1 = 1.0f - powf(beta1, float(t)), c2 = 1.0f - powf(beta2, float(t));
  adamw_kernel<<<unsigned((n + 255) / 256), 256, 0, s>>>(p, pb, g, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, c1, c2);
}

}  // namespace fp8scope::model
