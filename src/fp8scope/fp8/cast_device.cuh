#pragma once
// Device-side pieces of an FP8 cast with statistics, shared by every kernel that writes FP8
// (the plain casts in cast.cu, the LayerNorm and GELU that write FP8 directly). A thread
// accumulates LocalStats; flush_block() reduces them over the block and adds them to
// CastStats.
#include "fp8scope/fp8/cast.cuh"

#include <cuda_fp8.h>

namespace fp8scope::fp8 {

struct LocalStats {  // one thread's counts (32-bit: a thread sees far fewer than 2^32 values)
  float amax = 0.0f;
  unsigned nonfinite = 0, saturated = 0, underflow = 0, nonfinite_out = 0;
};

// A code that decodes to NaN or inf.
__device__ __forceinline__ bool nonfinite_code(std::uint8_t q, Format f) {
  return f == Format::e4m3 ? (q & 0x7F) == 0x7F : (q & 0x7C) == 0x7C;
}

// Only the statistics of a value that is not cast (taps of high-precision tensors, the amax
// pass of current scaling).
__device__ __forceinline__ void observe_one(float x, LocalStats& st) {
  if (!isfinite(x)) {
    ++st.nonfinite;
    ++st.nonfinite_out;
  } else {
    st.amax = fmaxf(st.amax, fabsf(x));
  }
}

// The hardware conversion (cvt.rn.satfinite on sm_89+, CUDA's software path for nosat):
// the same codes as encode() (format.hpp), which the tests check value by value, at a
// fraction of the instructions.
__device__ __forceinline__ std::uint8_t encode_fast(float y, Format f, Overflow o) {
  return __nv_cvt_float_to_fp8(y, o == Overflow::satfinite ? __NV_SATFINITE : __NV_NOSAT, f == Format::e4m3 ? __NV_E4M3 : __NV_E5M2);
}

// Underflow without decoding: round-to-nearest-even sends |y| <= min_sub / 2 (the tie
// included) to zero and anything above to at least min_sub.
__device__ __forceinline__ std::uint8_t cast_one(float x, float scale, Format f, Overflow o, float fmax, LocalStats& st) {
  const bool finite = isfinite(x);
  const float ax = fabsf(x), ay = ax * scale;
  st.nonfinite += !finite;
  st.amax = finite ? fmaxf(st.amax, ax) : st.amax;
  st.saturated += finite && ay > fmax;
  st.underflow += ax != 0.0f && ay <= 0.5f * info(f).min_sub;
  const std::uint8_t q = encode_fast(x * scale, f, o);
  st.nonfinite_out += nonfinite_code(q, f);
  return q;
}

// Block-reduces and adds to *out once per block: many blocks hitting one address with atomics
// would serialise. Every thread of the block must call it (blockDim.x a multiple of 32, at
// most 1024, 1-D or 2-D with blockDim.x == 32).
__device__ __forceinline__ void flush_block(const LocalStats& st, CastStats* out) {
  if (!out) return;
  __shared__ float s_amax[32];
  __shared__ unsigned long long s_cnt[4][32];
  float amax = st.amax;
  unsigned long long c[4] = {st.nonfinite, st.saturated, st.underflow, st.nonfinite_out};
  for (int o = 16; o > 0; o /= 2) {
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
#pragma unroll
    for (int k = 0; k < 4; ++k) c[k] += __shfl_xor_sync(0xffffffffu, c[k], o);
  }
  const int tid = threadIdx.y * blockDim.x + threadIdx.x, warps = (blockDim.x * blockDim.y) / 32;
  if (tid % 32 == 0) {
    s_amax[tid / 32] = amax;
#pragma unroll
    for (int k = 0; k < 4; ++k) s_cnt[k][tid / 32] = c[k];
  }
  __syncthreads();
  if (tid == 0) {
    for (int w = 1; w < warps; ++w) {
      amax = fmaxf(amax, s_amax[w]);
#pragma unroll
      for (int k = 0; k < 4; ++k) c[k] += s_cnt[k][w];
    }
    atomicMax(reinterpret_cast<unsigned*>(&out->amax), __float_as_uint(amax));
    if (c[0]) atomicAdd(&out->nonfinite, c[0]);
    if (c[1]) atomicAdd(&out->saturated, c[1]);
    if (c[2]) atomicAdd(&out->underflow, c[2]);
    if (c[3]) atomicAdd(&out->nonfinite_out, c[3]);
  }
}

}  // namespace fp8scope::fp8
