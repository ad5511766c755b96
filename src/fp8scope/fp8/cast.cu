#include "fp8scope/fp8/cast.cuh"

namespace fp8scope::fp8 {
namespace {

struct Local {
  float amax = 0.0f;
  unsigned long long nonfinite = 0, saturated = 0, underflow = 0;
};

__device__ __forceinline__ std::uint8_t cast_one(float x, float scale, Format f, Overflow o, float fmax, Local& st) {
  if (!isfinite(x)) {
    ++st.nonfinite;
  } else {
    st.amax = fmaxf(st.amax, fabsf(x));
  }
  const float y = x * scale;
  if (isfinite(x) && fabsf(y) > fmax) ++st.saturated;
  const std::uint8_t q = encode(y, f, o);
  if (x != 0.0f && isfinite(x) && (q & 0x7F) == 0) ++st.underflow;
  return q;
}

__device__ void flush(const Local& st, CastStats* out) {
  float amax = st.amax;
  unsigned long long nf = st.nonfinite, sat = st.saturated, uf = st.underflow;
  for (int o = 16; o > 0; o /= 2) {
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    nf += __shfl_xor_sync(0xffffffffu, nf, o);
    sat += __shfl_xor_sync(0xffffffffu, sat, o);
    uf += __shfl_xor_sync(0xffffffffu, uf, o);
  }
  if ((threadIdx.x & 31) == 0) {
    // amax >= 0, so its bits order like unsigned integers.
    atomicMax(reinterpret_cast<unsigned*>(&out->amax), __float_as_uint(amax));
    if (nf) atomicAdd(&out->nonfinite, nf);
    if (sat) atomicAdd(&out->saturated, sat);
    if (uf) atomicAdd(&out->underflow, uf);
  }
}

// 8 elements (16 bytes of BF16) per thread and iteration, written as 8 bytes of FP8.
__global__ void quantize_kernel(std::uint8_t* out, const __nv_bfloat16* in, std::int64_t n, const float* scale_ptr, Format f,
                                Overflow o, CastStats* stats) {
  const float scale = *scale_ptr, fmax = info(f).max;
  Local st;
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x * 8;
  for (std::int64_t base = (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) * 8; base < n; base += stride) {
    if (base + 8 <= n) {
      uint4 raw = *reinterpret_cast<const uint4*>(in + base);
      const __nv_bfloat16* v = reinterpret_cast<const __nv_bfloat16*>(&raw);
      uint2 packed;
      std::uint8_t* q = reinterpret_cast<std::uint8_t*>(&packed);
#pragma unroll
      for (int j = 0; j < 8; ++j) q[j] = cast_one(__bfloat162float(v[j]), scale, f, o, fmax, st);
      *reinterpret_cast<uint2*>(out + base) = packed;
    } else {
      for (std::int64_t i = base; i < n; ++i) out[i] = cast_one(__bfloat162float(in[i]), scale, f, o, fmax, st);
    }
  }
  flush(st, stats);
}

// 32x32 tiles through shared memory so that both the row-major and the transposed writes are
// coalesced.
__global__ void quantize_transpose_kernel(std::uint8_t* out, std::uint8_t* out_t, const __nv_bfloat16* in, int rows, int cols,
                                          const float* scale_ptr, Format f, Overflow o, CastStats* stats) {
  __shared__ std::uint8_t tile[32][33];
  const float scale = *scale_ptr, fmax = info(f).max;
  Local st;
  const int r0 = blockIdx.y * 32, c0 = blockIdx.x * 32;
  for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
    const int r = r0 + dy, c = c0 + threadIdx.x;
    if (r < rows && c < cols) {
      const std::uint8_t q = cast_one(__bfloat162float(in[std::int64_t(r) * cols + c]), scale, f, o, fmax, st);
      out[std::int64_t(r) * cols + c] = q;
      tile[dy][threadIdx.x] = q;
    }
  }
  __syncthreads();
  for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
    const int c = c0 + dy, r = r0 + threadIdx.x;
    if (r < rows && c < cols) out_t[std::int64_t(c) * rows + r] = tile[threadIdx.x][dy];
  }
  flush(st, stats);
}

}  // namespace

void quantize(std::uint8_t* out, const __nv_bfloat16* in, std::int64_t n, const float* scale, Format f, Overflow o,
              CastStats* stats, cudaStream_t s) {
  const std::int64_t threads = (n + 7) / 8;
  const std::int64_t blocks = (threads + 255) / 256;
  quantize_kernel<<<unsigned(blocks < 132 * 8 ? (blocks < 1 ? 1 : blocks) : 132 * 8), 256, 0, s>>>(out, in, n, scale, f, o, stats);
}

void quantize_transpose(std::uint8_t* out, std::uint8_t* out_t, const __nv_bfloat16* in, int rows, int cols, const float* scale,
                        Format f, Overflow o, CastStats* stats, cudaStream_t s) {
  dim3 grid(unsigned((cols + 31) / 32), unsigned((rows + 31) / 32));
  quantize_transpose_kernel<<<grid, dim3(32, 8), 0, s>>>(out, out_t, in, rows, cols, scale, f, o, stats);
}

}  // namespace fp8scope::fp8
