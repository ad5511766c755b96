// Attention around its two batched GEMMs (scores = q k^T, y = probs v, done by cuBLASLt):
// moving heads in and out of [B, NH, T, HS], and the causal softmax forward and backward.
#include "fp8scope/core/fast_math.cuh"
#include "fp8scope/fp8/cast_kernels.cuh"
#include "fp8scope/gpu_model/kernels.cuh"

#include <cfloat>

namespace fp8scope::gpu_model {
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
  if (to_heads)
    out[i] = inp[flat];
  else
    out[flat] = inp[i];
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

// The same two softmaxes eight columns per lane with 16-byte accesses (T % 8 == 0, as every
// GPT context is): a warp covers 256 columns a step. The one-column loops above moved 4-byte
// scores and 2-byte probabilities per instruction and reached 56 % (backward) and 73 %
// (forward) of the copy bandwidth on an H200 at GPT-2 124M sizes; these reach 74 % and 81 %. Columns past the diagonal
// are written as zeros without being read, so a row reads only its visible half.
constexpr int kVec = 8, kWarpCols = 32 * kVec;

__device__ __forceinline__ void load8_f32(const float* p, float (&v)[8]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

// One pass for the running (max, sum of exponentials), as the cross-entropy forms them, and one
// that writes the probabilities (the scores read again, from L2: a row is at most a few KB).
__global__ void softmax_causal_forward_vec_kernel(bf16* probs, const float* scores, int BH, int T) {
  const std::int64_t row = blockIdx.x * std::int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= std::int64_t(BH) * T) return;
  const int tq = int(row % T);
  const float* x = scores + row * T;
  // m starts at -FLT_MAX / 2 so that m log2 e stays finite (a masked column's -inf gives 0).
  float m = -FLT_MAX / 2, s = 0.0f;
#pragma unroll 2
  for (int c = lane * kVec; c <= tq; c += kWarpCols) {
    float v[8];
    load8_f32(x + c, v);
    float mx = -INFINITY;
#pragma unroll
    for (int k = 0; k < kVec; ++k) mx = fmaxf(mx, v[k] = c + k <= tq ? v[k] : -INFINITY);
    if (mx > m) s *= core::exp2_fast((m - mx) * core::kLog2e), m = mx;
    const float ml = m * core::kLog2e;
#pragma unroll
    for (int k = 0; k < kVec; ++k) s += core::exp2_fast(fmaf(v[k], core::kLog2e, -ml));
  }
  const float wm = warp_max(m);
  const float ws = warp_sum(s * core::exp2_fast((m - wm) * core::kLog2e));
  const float ml = wm * core::kLog2e, inv = 1.0f / ws;
  uint4* out = reinterpret_cast<uint4*>(probs + row * T);
  for (int c = lane * kVec; c < T; c += kWarpCols) {
    float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (c <= tq) {
      load8_f32(x + c, v);
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[k] = c + k <= tq ? core::exp2_fast(fmaf(v[k], core::kLog2e, -ml)) * inv : 0.0f;
    }
    out[c / kVec] = fp8::pack8(v);
  }
}

__global__ void softmax_causal_backward_vec_kernel(bf16* dscores, const float* dprobs, const bf16* probs, float scale, int BH, int T) {
  const std::int64_t row = blockIdx.x * std::int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= std::int64_t(BH) * T) return;
  const int tq = int(row % T);
  const float* dp = dprobs + row * T;
  const uint4* p8 = reinterpret_cast<const uint4*>(probs + row * T);
  float dot = 0;
#pragma unroll 2
  for (int c = lane * kVec; c <= tq; c += kWarpCols) {
    float p[8], d[8];
    fp8::unpack8(p8[c / kVec], p);
    load8_f32(dp + c, d);
#pragma unroll
    for (int k = 0; k < kVec; ++k) dot += c + k <= tq ? p[k] * d[k] : 0.0f;
  }
  dot = warp_sum(dot);
  uint4* out = reinterpret_cast<uint4*>(dscores + row * T);
  for (int c = lane * kVec; c < T; c += kWarpCols) {
    float g[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (c <= tq) {
      float p[8], d[8];
      fp8::unpack8(p8[c / kVec], p);
      load8_f32(dp + c, d);
#pragma unroll
      for (int k = 0; k < kVec; ++k) g[k] = c + k <= tq ? p[k] * (d[k] - dot) * scale : 0.0f;
    }
    out[c / kVec] = fp8::pack8(g);
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
// Eight rows (a warp each) per block; 16-byte accesses where rows start 16-byte aligned
// (T % 8 == 0, cudaMalloc'd tensors).
void softmax_causal_forward(bf16* probs, const float* scores, int BH, int T, cudaStream_t s) {
  if (T % kVec == 0)
    softmax_causal_forward_vec_kernel<<<blocks(std::int64_t(BH) * T, 8), 256, 0, s>>>(probs, scores, BH, T);
  else
    softmax_causal_forward_kernel<<<blocks(std::int64_t(BH) * T, 8), 256, 0, s>>>(probs, scores, BH, T);
}
void softmax_causal_backward(bf16* dscores, const float* dprobs, const bf16* probs, float scale, int BH, int T, cudaStream_t s) {
  if (T % kVec == 0)
    softmax_causal_backward_vec_kernel<<<blocks(std::int64_t(BH) * T, 8), 256, 0, s>>>(dscores, dprobs, probs, scale, BH, T);
  else
    softmax_causal_backward_kernel<<<blocks(std::int64_t(BH) * T, 8), 256, 0, s>>>(dscores, dprobs, probs, scale, BH, T);
}

}  // namespace fp8scope::gpu_model
