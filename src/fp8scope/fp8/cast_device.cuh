#pragma once
// Device-side pieces of an FP8 cast with statistics, shared by every kernel that writes FP8
// (the plain casts in cast.cu, the LayerNorm and GELU that write FP8 directly). A thread
// accumulates Local counts; flush() reduces them over the warp and adds them to CastStats.
#include "fp8scope/fp8/cast.cuh"

#include <cuda_fp8.h>

namespace fp8scope::fp8 {

struct LocalStats {
  float amax = 0.0f;
  unsigned long long nonfinite = 0, saturated = 0, underflow = 0, nonfinite_out = 0;
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

__device__ __forceinline__ std::uint8_t cast_one(float x, float scale, Format f, Overflow o, float fmax, LocalStats& st) {
  const bool finite = isfinite(x);
  if (!finite) ++st.nonfinite;
  else st.amax = fmaxf(st.amax, fabsf(x));
  const float y = x * scale;
  if (finite && fabsf(y) > fmax) ++st.saturated;
  const std::uint8_t q = encode_fast(y, f, o);
  if (x != 0.0f && finite && (q & 0x7F) == 0) ++st.underflow;
  if (nonfinite_code(q, f)) ++st.nonfinite_out;
  return q;
}

// Warp-reduces and adds to *out (lane 0 of each warp). Every lane of the warp must call it.
__device__ __forceinline__ void flush(const LocalStats& st, CastStats* out) {
  if (!out) return;
  float amax = st.amax;
  unsigned long long nf = st.nonfinite, sat = st.saturated, uf = st.underflow, nfo = st.nonfinite_out;
  for (int o = 16; o > 0; o /= 2) {
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    nf += __shfl_xor_sync(0xffffffffu, nf, o);
    sat += __shfl_xor_sync(0xffffffffu, sat, o);
    uf += __shfl_xor_sync(0xffffffffu, uf, o);
    nfo += __shfl_xor_sync(0xffffffffu, nfo, o);
  }
  if ((threadIdx.x & 31) == 0) {
    // amax >= 0, so its bits order like unsigned integers (max is order-independent, so the
    // result is deterministic).
    atomicMax(reinterpret_cast<unsigned*>(&out->amax), __float_as_uint(amax));
    if (nf) atomicAdd(&out->nonfinite, nf);
    if (sat) atomicAdd(&out->saturated, sat);
    if (uf) atomicAdd(&out->underflow, uf);
    if (nfo) atomicAdd(&out->nonfinite_out, nfo);
  }
}

}  // namespace fp8scope::fp8
