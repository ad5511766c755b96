#pragma once
// Device-side pieces of an FP8 cast with statistics, shared by every kernel that writes FP8
// (the plain casts in cast.cu, the LayerNorm and GELU that write FP8 directly). A thread
// accumulates LocalStats; flush_block() reduces them over the block and adds them to
// CastStats.
#include "fp8scope/fp8/cast.cuh"
#include "fp8scope/fp8/cast_thresholds.hpp"

#include <cuda_fp8.h>

namespace fp8scope::fp8 {

// Most blocks a kernel that writes FP8 with statistics launches: enough to fill an H100/H200
// (4 blocks of 256 threads per SM) with the loops striding; each block flushes its statistics
// with a few same-address atomics, so more blocks cost more than they hide.
constexpr int kMaxCastBlocks = 132 * 4;

// Blocks for `items` units of work of `threads` threads each, at most kMaxCastBlocks.
inline unsigned cast_blocks(std::int64_t items, int threads) {
  const std::int64_t b = (items + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : (b < kMaxCastBlocks ? b : kMaxCastBlocks));
}

struct LocalStats {  // one thread's counts (32-bit: a thread sees far fewer than 2^32 values)
  float amax = 0.0f;
  unsigned nonfinite = 0, saturated = 0, underflow = 0, nonfinite_out = 0;
};

// The statistics of two sets of values together.
__device__ __forceinline__ LocalStats merged(LocalStats a, const LocalStats& b) {
  a.amax = fmaxf(a.amax, b.amax);
  a.nonfinite += b.nonfinite, a.saturated += b.saturated, a.underflow += b.underflow, a.nonfinite_out += b.nonfinite_out;
  return a;
}

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

// Codes that decode to NaN or inf among the 4 codes of a word.
__device__ __forceinline__ unsigned nonfinite_codes4(unsigned q, Format f) {
  const unsigned mask = f == Format::e4m3 ? 0x7F7F7F7Fu : 0x7C7C7C7Cu;
  return __popc(__vcmpeq4(q & mask, mask)) / 8;
}

// Bit 7 of each byte set where that code is a zero (+0 or -0): per byte, (b & 0x7F) + 0x7F
// sets bit 7 unless b & 0x7F is 0, and cannot carry into the next byte.
__device__ __forceinline__ unsigned zero_code_bytes(unsigned q) { return ~((q & 0x7F7F7F7Fu) + 0x7F7F7F7Fu) & 0x80808080u; }

// The fast path: cast_one's "saturated" and "underflow" tests as comparisons of the magnitude's
// bits with thresholds found once per thread (cast_thresholds.hpp); the statistics of a value
// then take a few integer operations, and the conversion is the paired instruction.
struct MagnitudeStats {  // a thread's counts on the fast path; amax as FP32 magnitude bits
  unsigned amax_bits = 0, nonfinite = 0, saturated = 0, underflow = 0, nonfinite_out = 0;
  __device__ LocalStats local() const {
    LocalStats st;
    st.amax = __uint_as_float(amax_bits);
    st.nonfinite = nonfinite, st.saturated = saturated, st.underflow = underflow, st.nonfinite_out = nonfinite_out;
    return st;
  }
  // One value's statistics from its magnitude bits and the thresholds in the same units.
  __device__ __forceinline__ void add(unsigned mag, unsigned inf_bits, unsigned shift, unsigned sat, unsigned under) {
    const bool finite = mag < inf_bits;
    nonfinite += !finite;
    amax_bits = finite ? max(amax_bits, mag << shift) : amax_bits;
    saturated += finite && mag > sat;
    underflow += mag - 1u < under;  // 0 < mag <= under
  }
  __device__ __forceinline__ void add_codes(uint2 q, Format f) { nonfinite_out += nonfinite_codes4(q.x, f) + nonfinite_codes4(q.y, f); }
};

// A format and overflow mode fixed at compile time. The kernels that cast in their inner loop
// are compiled once per pair and with_kind() launches the one asked for: with the mode a
// runtime value every conversion branched on it (the no-saturation path is a software one), and
// those branches were a fifth of the cast kernels' instructions.
template <Format F, Overflow O>
struct Kind {
  static constexpr Format format = F;
  static constexpr Overflow overflow = O;
};

// Calls fn(Kind<f, o>{}).
template <class Fn>
inline void with_kind(Format f, Overflow o, Fn&& fn) {
  const bool sat = o == Overflow::satfinite;
  if (f == Format::e4m3) {
    if (sat)
      fn(Kind<Format::e4m3, Overflow::satfinite>{});
    else
      fn(Kind<Format::e4m3, Overflow::nosat>{});
  } else {
    if (sat)
      fn(Kind<Format::e5m2, Overflow::satfinite>{});
    else
      fn(Kind<Format::e5m2, Overflow::nosat>{});
  }
}

template <class K>
__device__ __forceinline__ unsigned cvt2(float a, float b) {
  return __nv_cvt_float2_to_fp8x2(make_float2(a, b), K::overflow == Overflow::satfinite ? __NV_SATFINITE : __NV_NOSAT,
                                  K::format == Format::e4m3 ? __NV_E4M3 : __NV_E5M2);
}

// Whether none of 8 codes is a zero. A value underflows exactly when it is nonzero and its code
// is zero, so a vector without a zero code has no underflow to count.
__device__ __forceinline__ bool no_zero_code(uint2 q) { return (zero_code_bytes(q.x) | zero_code_bytes(q.y)) == 0; }

// Casts 8 BF16 values (16 bytes) to 8 FP8 codes (8 bytes) with the statistics of cast_one.
// Most vectors hold no non-finite, saturating or (hence) non-finite-encoding value: when the
// vector's largest magnitude is below th.clean only amax and the underflows are counted, and
// the underflows only when a code is zero. The largest magnitude is taken two BF16 halves at a
// time (16-bit SIMD maximum).
template <class K>
__device__ __forceinline__ uint2 cast8_bf16(const uint4& raw, float scale, const Bf16Thresholds& th, MagnitudeStats& st) {
  const unsigned w[4] = {raw.x, raw.y, raw.z, raw.w};
  unsigned q[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) q[i] = cvt2<K>(__uint_as_float(w[i] << 16) * scale, __uint_as_float(w[i] & 0xFFFF0000u) * scale);
  const unsigned m2 = __vmaxu2(__vimax3_u16x2(w[0] & 0x7FFF7FFFu, w[1] & 0x7FFF7FFFu, w[2] & 0x7FFF7FFFu), w[3] & 0x7FFF7FFFu);
  const unsigned vmax = max(m2 & 0xFFFFu, m2 >> 16);
  const uint2 out = make_uint2(q[0] | (q[1] << 16), q[2] | (q[3] << 16));
  if (vmax < th.clean) {
    st.amax_bits = max(st.amax_bits, vmax << 16);
    if (!no_zero_code(out))
#pragma unroll
      for (int i = 0; i < 4; ++i) st.underflow += ((w[i] & 0x7FFFu) - 1u < th.under) + (((w[i] >> 16) & 0x7FFFu) - 1u < th.under);
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      st.add(w[i] & 0x7FFFu, 0x7F80u, 16, th.sat, th.under);
      st.add((w[i] >> 16) & 0x7FFFu, 0x7F80u, 16, th.sat, th.under);
    }
    st.add_codes(out, K::format);
  }
  return out;
}

// Casts 8 FP32 values (computed in registers by a fused kernel) the same way.
template <class K>
__device__ __forceinline__ uint2 cast8_f32(const float (&y)[8], float scale, const CastThresholds& th, MagnitudeStats& st) {
  unsigned q[4], mag[8], vmax = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) vmax = max(vmax, mag[i] = __float_as_uint(y[i]) & 0x7FFFFFFFu);
#pragma unroll
  for (int i = 0; i < 4; ++i) q[i] = cvt2<K>(y[2 * i] * scale, y[2 * i + 1] * scale);
  const uint2 out = make_uint2(q[0] | (q[1] << 16), q[2] | (q[3] << 16));
  if (vmax < th.clean) {
    st.amax_bits = max(st.amax_bits, vmax);
    if (!no_zero_code(out))
#pragma unroll
      for (int i = 0; i < 8; ++i) st.underflow += mag[i] - 1u < th.under;
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) st.add(mag[i], 0x7F800000u, 0, th.sat, th.under);
    st.add_codes(out, K::format);
  }
  return out;
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
