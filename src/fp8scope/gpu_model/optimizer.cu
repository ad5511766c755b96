// AdamW (decoupled weight decay) on FP32 master weights, writing the BF16 copy or the FP8
// codes the forward pass reads; the gradient norm for clipping; FP32 -> BF16 casts.
#include "fp8scope/fp8/cast_device.cuh"
#include "fp8scope/gpu_model/kernels.cuh"

namespace fp8scope::gpu_model {
namespace {

__global__ void cast_kernel(bf16* out, const float* in, std::int64_t n) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16(in[i]);
}

// One partial per block (fixed grid, fixed order), summed by sum_all: deterministic.
constexpr int kSumBlocks = 1024;

template <bool kSquare>
__global__ void sum_kernel(float* partial, const float* x, std::int64_t n) {
  __shared__ float warp_sums[8];
  float s = 0;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    s += kSquare ? x[i] * x[i] : x[i];
  for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0;
    for (int w = 0; w < 8; ++w) t += warp_sums[w];
    partial[blockIdx.x] = t;
  }
}

// One parameter's AdamW step: updates m and v, returns the new parameter.
__device__ __forceinline__ float adamw_one(float p, float g, float& m, float& v, float lr, float b1, float b2, float eps, float decay,
                                           float grad_scale, float c1, float c2) {
  const float gi = g * grad_scale;
  m = b1 * m + (1.0f - b1) * gi;
  v = b2 * v + (1.0f - b2) * gi * gi;
  const float update = (m / c1) / (sqrtf(v / c2) + eps);
  return p - lr * (update + decay * p);
}

// One block per chunk of at most kAdamwChunk elements (8 per thread). A chunk whose offset,
// size and copy's offset are multiples of 4 moves 16 bytes per load (every GPT-2 tensor). A
// chunk with an FP8 slot writes codes instead of a BF16 copy, with the statistics a cast from
// the master counts (fp8::cast_one: the same codes and counts as the forward pass's cast).
__global__ void __launch_bounds__(256)
    adamw_kernel(float* __restrict__ p, bf16* __restrict__ pb, const float* __restrict__ g, float* __restrict__ m, float* __restrict__ v,
                 const AdamwChunk* chunks, const AdamwStep* step, const float* grad_sq, const AdamwFp8Codes fp8c) {
  const AdamwStep st = *step;
  const float lr = st.lr, b1 = st.beta1, b2 = st.beta2, eps = st.eps, wd = st.weight_decay, c1 = st.c1, c2 = st.c2;
  // Clipping by the global norm: the same IEEE square root and division the host computed
  // before the step moved onto the device.
  const float norm = sqrtf(*grad_sq);
  const float grad_scale = st.grad_clip > 0.0f && norm > st.grad_clip ? st.grad_clip / norm : 1.0f;
  const AdamwChunk ch = chunks[blockIdx.x];
  const std::int64_t offset = ch.offset;
  const int size = ch.size;
  const float decay = ch.decay ? wd : 0.0f;
  const bool codes = ch.slot >= 0;
  bf16* copy = !codes && ch.copy >= 0 ? pb + ch.copy : nullptr;  // element j of the chunk at copy[j]
  std::uint8_t* q = codes ? fp8c.codes + ch.copy : nullptr;      // or its code at q[j]
  const float scale = codes ? fp8c.scales[std::int64_t(ch.slot) * fp8c.scale_stride] : 0.0f;
  const fp8::Format f = fp8c.format;
  const fp8::Overflow o = fp8c.overflow;
  const float fmax = fp8::info(f).max;
  fp8::LocalStats cs;
  if (offset % 4 == 0 && size % 4 == 0 && (ch.copy < 0 || ch.copy % 4 == 0)) {
#pragma unroll
    for (int k = 0; k < kAdamwChunk / 1024; ++k) {
      const int j = 4 * (threadIdx.x + 256 * k);
      if (j >= size) break;
      const std::int64_t i = offset + j;
      const float4 pi = *reinterpret_cast<const float4*>(p + i), gi = *reinterpret_cast<const float4*>(g + i);
      float4 mi = *reinterpret_cast<const float4*>(m + i), vi = *reinterpret_cast<const float4*>(v + i);
      float4 po;
      po.x = adamw_one(pi.x, gi.x, mi.x, vi.x, lr, b1, b2, eps, decay, grad_scale, c1, c2);
      po.y = adamw_one(pi.y, gi.y, mi.y, vi.y, lr, b1, b2, eps, decay, grad_scale, c1, c2);
      po.z = adamw_one(pi.z, gi.z, mi.z, vi.z, lr, b1, b2, eps, decay, grad_scale, c1, c2);
      po.w = adamw_one(pi.w, gi.w, mi.w, vi.w, lr, b1, b2, eps, decay, grad_scale, c1, c2);
      *reinterpret_cast<float4*>(p + i) = po;
      *reinterpret_cast<float4*>(m + i) = mi;
      *reinterpret_cast<float4*>(v + i) = vi;
      if (copy) {
        __nv_bfloat162 h[2] = {__floats2bfloat162_rn(po.x, po.y), __floats2bfloat162_rn(po.z, po.w)};
        *reinterpret_cast<uint2*>(copy + j) = *reinterpret_cast<const uint2*>(h);
      } else if (q) {
        const unsigned word =
            unsigned(fp8::cast_one(po.x, scale, f, o, fmax, cs)) | unsigned(fp8::cast_one(po.y, scale, f, o, fmax, cs)) << 8 |
            unsigned(fp8::cast_one(po.z, scale, f, o, fmax, cs)) << 16 | unsigned(fp8::cast_one(po.w, scale, f, o, fmax, cs)) << 24;
        *reinterpret_cast<unsigned*>(q + j) = word;
      }
    }
  } else {
    for (int j = threadIdx.x; j < size; j += blockDim.x) {
      const std::int64_t i = offset + j;
      float mi = m[i], vi = v[i];
      const float po = adamw_one(p[i], g[i], mi, vi, lr, b1, b2, eps, decay, grad_scale, c1, c2);
      m[i] = mi, v[i] = vi, p[i] = po;
      if (copy) copy[j] = __float2bfloat16(po);
      if (q) q[j] = fp8::cast_one(po, scale, f, o, fmax, cs);
    }
  }
  if (codes) fp8::flush_block(cs, fp8c.stats + ch.slot);  // the whole block: one chunk, one slot
}

}  // namespace

void cast_to_bf16(bf16* out, const float* in, std::int64_t n, cudaStream_t s) {
  cast_kernel<<<unsigned((n + 255) / 256), 256, 0, s>>>(out, in, n);
}

void sum_squares(float* out, float* scratch, const float* x, std::int64_t n, cudaStream_t s) {
  sum_kernel<true><<<kSumBlocks, 256, 0, s>>>(scratch, x, n);
  sum_all(out, scratch, kSumBlocks, s);
}

void sum_values(float* out, float* scratch, const float* x, std::int64_t n, cudaStream_t s) {
  sum_kernel<false><<<kSumBlocks, 256, 0, s>>>(scratch, x, n);
  sum_all(out, scratch, kSumBlocks, s);
}

void adamw_update_chunks(float* p, bf16* pb, const float* g, float* m, float* v, const AdamwChunk* chunks, int n_chunks,
                         const AdamwStep* step, const float* grad_sq, const AdamwFp8Codes& fp8, cudaStream_t s) {
  if (n_chunks > 0) adamw_kernel<<<unsigned(n_chunks), 256, 0, s>>>(p, pb, g, m, v, chunks, step, grad_sq, fp8);
}

std::vector<AdamwChunk> adamw_chunks(const std::vector<AdamwTensor>& tensors) {
  std::vector<AdamwChunk> out;
  for (const AdamwTensor& t : tensors)
    for (std::int64_t at = 0; at < t.size; at += kAdamwChunk)
      out.push_back({t.offset + at, t.copy >= 0 ? t.copy + at : -1, std::int32_t(t.copy >= 0 ? t.slot : -1),
                     std::int16_t(t.size - at < kAdamwChunk ? t.size - at : kAdamwChunk), std::int16_t(t.decay)});
  return out;
}

}  // namespace fp8scope::gpu_model
