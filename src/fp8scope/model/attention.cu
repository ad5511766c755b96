// Attention around its two batched GEMMs (scores = q k^T, y = probs v, done by cuBLASLt):
// moving heads in and out of [B, NH, T, HS], and the causal softmax forward and backward.
#include "fp8scope/model/kernels.cuh"

#include <cfloat>

namespace fp8scope::model {
namespace {

// qkv row (b,t) holds [3][NH][HS]; q/k/v are [B][NH][T][HS].
// Element i of a [B][NH][T][HS] tensor sits at row (b, t), channel h*HS + d of a [B][T][NH*HS]
// one; with `parts` tensors side by side in a row (qkv: 3) this is the offset of the first.
__device__ __forceinline__ std::int64_t row_offset(std::int64_t i, int T, int NH, int HS, int parts) {
  const int d = int(i % HS), t = int((i / HS) % T), h = int((i / (std::int64_t(HS) * T)) % NH);
  const std::int64_t b = i / (std::int64_t(HS) * T * NH);
  return (b * T + t) * parts * std::int64_t(NH) * HS + std::int64_t(h) * HS + d;
}

__global__ void split_heads_kernel(bf16* q, bf16* k, bf16* v, const bf16* qkv, int B, int T, int NH, int HS) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= std::int64_t(B) * NH * T * HS) return;
  const std::int64_t C = std::int64_t(NH) * HS;
  const std::int64_t src = row_offset(i, T, NH, HS, 3);
  q[i] = qkv[src];
  k[i] = qkv[src + C];
  v[i] = qkv[src + 2 * C];
}

__global__ void merge_qkv_grads_kernel(bf16* dqkv, const bf16* dq, const bf16* dk, const bf16* dv, int B, int T, int NH, int HS) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= std::int64_t(B) * NH * T * HS) return;
  const std::int64_t C = std::int64_t(NH) * HS;
  const std::int64_t dst = row_offset(i, T, NH, HS, 3);
  dqkv[dst] = dq[i];
  dqkv[dst + C] = dk[i];
  dqkv[dst + 2 * C] = dv[i];
}

// to_heads: [B,T,NH*HS] -> [B,NH,T,HS]; otherwise the reverse.
__global__ void permute_heads_kernel(bf16* out, const bf16* inp, int B, int T, int NH, int HS, bool to_heads) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= std::int64_t(B) * NH * T * HS) return;
  const std::int64_t flat = row_offset(i, T, NH, HS, 1);
  if (to_heads) out[i] = inp[flat];
  else out[flat] = inp[i];
}

__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per query row; keys 0..tq are visible.
__global__ void softmax_causal_forward_kernel(bf16* probs, const float* scores, int BH, int T) {
  const std::int64_t row = blockIdx.x * std::int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= std::int64_t(BH) * T) return;
  const int tq = int(row % T);
  const float* x = scores + row * T;
  float m = -FLT_MAX;
  for (int j = lane; j <= tq; j += 32) m = fmaxf(m, x[j]);
  m = warp_max(m);
  float s = 0;
  for (int j = lane; j <= tq; j += 32) s += expf(x[j] - m);
  const float inv = 1.0f / warp_sum(s);
  for (int j = lane; j < T; j += 32) probs[row * T + j] = __float2bfloat16(j <= tq ? expf(x[j] - m) * inv : 0.0f);
}

__global__ void softmax_causal_backward_kernel(bf16* dscores, const float* dprobs, const bf16* probs, float scale, int BH, int T) {
  const std::int64_t row = blockIdx.x * std::int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= std::int64_t(BH) * T) return;
  const int tq = int(row % T);
  float dot = 0;
  for (int j = lane; j <= tq; j += 32) dot += __bfloat162float(probs[row * T + j]) * dprobs[row * T + j];
  dot = warp_sum(dot);
  for (int j = lane; j < T; j += 32) {
    const float p = __bfloat162float(probs[row * T + j]);
    dscores[row * T + j] = __float2bfloat16(j <= tq ? p * (dprobs[row * T + j] - dot) * scale : 0.0f);
  }
}

unsigned blocks(std::int64_t n, int per_block) { return unsigned((n + per_block - 1) / per_block); }

}  // namespace

void split_heads(bf16* q, bf16* k, bf16* v, const bf16* qkv, int B, int T, int NH, int HS, cudaStream_t s) {
  split_heads_kernel<<<blocks(std::int64_t(B) * NH * T * HS, 256), 256, 0, s>>>(q, k, v, qkv, B, T, NH, HS);
}
void merge_qkv_grads(bf16* dqkv, const bf16* dq, const bf16* dk, const bf16* dv, int B, int T, int NH, int HS, cudaStream_t s) {
  merge_qkv_grads_kernel<<<blocks(std::int64_t(B) * NH * T * HS, 256), 256, 0, s>>>(dqkv, dq, dk, dv, B, T, NH, HS);
}
void merge_heads(bf16* out, const bf16* y, int B, int T, int NH, int HS, cudaStream_t s) {
  permute_heads_kernel<<<blocks(std::int64_t(B) * NH * T * HS, 256), 256, 0, s>>>(out, y, B, T, NH, HS, false);
}
void split_heads_single(bf16* y, const bf16* inp, int B, int T, int NH, int HS, cudaStream_t s) {
  permute_heads_kernel<<<blocks(std::int64_t(B) * NH * T * HS, 256), 256, 0, s>>>(y, inp, B, T, NH, HS, true);
}
void softmax_causal_forward(bf16* probs, const float* scores, int BH, int T, cudaStream_t s) {
  softmax_causal_forward_kernel<<<blocks(std::int64_t(BH) * T, 8), 256, 0, s>>>(probs, scores, BH, T);
}
void softmax_causal_backward(bf16* dscores, const float* dprobs, const bf16* probs, float scale, int BH, int T, cudaStream_t s) {
  softmax_causal_backward_kernel<<<blocks(std::int64_t(BH) * T, 8), 256, 0, s>>>(dscores, dprobs, probs, scale, BH, T);
}

}  // namespace fp8scope::model
