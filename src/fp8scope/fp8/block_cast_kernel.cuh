#pragma once
// The per-row / per-block cast kernel (block_cast.cuh) and its device helpers, shared by the
// files that compile it: block_cast_exact.cu and block_cast_pow2.cu each
// instantiate one way of taking the quotients (Quot) for every format and scale mode, so that
// the kernel's 36 instances build in parallel (in one file they took 205 s, the long pole of a
// clean build); block_cast.cu launches them (launch_block_cast) and holds the
// row / column amax pass, the division check and the amax quantiles. Internal to those files.
#include "fp8scope/core/cp_async.cuh"
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/fp8/block_cast.cuh"
#include "fp8scope/fp8/cast_device.cuh"

namespace fp8scope::fp8::block_cast_detail {

using bf16 = __nv_bfloat16;

// The cast works on 128 x 128 tiles: every 1x128 block of either copy and every 128x128 block
// lies inside one tile, so block scales need nothing from other tiles. A CTA loops over tiles
// (the next one's copies in flight, cp.async) and flushes its statistics once. Thread t loads
// 8 consecutive values of 8 tile rows: columns 8 (t % 16) .. +7, rows t / 16 + 16 i. A row's
// amax is then a reduction over 16 lanes, a column's over the thread's 8 rows, the other half
// of the warp and the 8 warps.
//
// Speed: a cast is memory-bound only if each value costs a handful of instructions. The
// amaxes are taken on packed BF16 magnitude bits (two per 32-bit SIMD maximum), the codes
// come from the paired conversion (two values per instruction), the quotients by a block's
// scale from its reciprocal (divide_by_scale, a product and two exact corrections; one product
// where the scale is a power of two), and a vector without a non-finite value counts its
// statistics from its maximum: saturations only in the vector holding the block's amax and
// underflows only when a code is zero; anything else takes the value-by-value path, out of
// line. The kernel's time follows its instruction count and its hot loop's size: the rows' and
// the columns' casts are loops, not unrolled, since unrolled the loop outgrew the instruction
// cache (more instructions, but faster; docs/performance.md).
constexpr int kEdge = 128;
constexpr int kThreads = 256;
constexpr unsigned kFull = 0xffffffffu;
constexpr unsigned kInfBits = 0x7F80u;  // BF16 +inf; NaN's magnitude bits lie above it

// A magnitude for the block amax from BF16 magnitude bits (sign cleared; non-negative values
// order like their bits): a non-finite value makes the block's amax inf (dequantisation scale
// 1, model_block_dequant), so the value reaches the cast and the taps see it.
__device__ __forceinline__ float magnitude_of_bits(unsigned m16) { return m16 >= kInfBits ? INFINITY : __uint_as_float(m16 << 16); }
__device__ __forceinline__ unsigned abs2(unsigned w) { return w & 0x7FFF7FFFu; }  // two BF16 magnitudes
// Non-negative floats order like their bits.
__device__ __forceinline__ void atomic_max_nonneg(float* a, float v) { atomicMax(reinterpret_cast<unsigned*>(a), __float_as_uint(v)); }

__device__ __forceinline__ float lo_bf16(unsigned w) { return __uint_as_float(w << 16); }  // little-endian: element 2k is the low half
__device__ __forceinline__ float hi_bf16(unsigned w) { return __uint_as_float(w & 0xFFFF0000u); }
// The low (half 0) or high (half 1) BF16 of a word as FP32 bits (its 16 bits on top, zeros
// below) where `half` is known only at run time: one byte permute by half_selector(half).
__device__ __forceinline__ unsigned half_selector(int half) { return half ? 0x3244u : 0x1044u; }
__device__ __forceinline__ float half_bf16(unsigned w, unsigned sel) { return __uint_as_float(__byte_perm(w, 0u, sel)); }
__device__ __forceinline__ float bf16_at(const uint4& raw, int j) {
  const unsigned w = j < 2 ? raw.x : j < 4 ? raw.y : j < 6 ? raw.z : raw.w;
  return j % 2 ? hi_bf16(w) : lo_bf16(w);
}
// The largest of 8 BF16 magnitudes, as bits.
__device__ __forceinline__ unsigned max_bits8(const uint4& raw) {
  const unsigned m2 = __vmaxu2(__vimax3_u16x2(abs2(raw.x), abs2(raw.y), abs2(raw.z)), abs2(raw.w));
  return max(m2 & 0xFFFFu, m2 >> 16);
}

// 8 values of row r from column c (16 bytes); zeros outside the matrix. A zero adds nothing to
// any statistic (not an amax, not an underflow), so the casts may cast the padding and only
// skip storing it.
__device__ __forceinline__ uint4 load8(const bf16* in, int rows, int cols, int r, int c, bool vec) {
  if (r < rows && vec && c + 8 <= cols) return *reinterpret_cast<const uint4*>(in + std::size_t(r) * cols + c);
  unsigned h[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) h[j] = r < rows && c + j < cols ? __bfloat16_as_ushort(in[std::size_t(r) * cols + c + j]) : 0u;
  return make_uint4(h[0] | h[1] << 16, h[2] | h[3] << 16, h[4] | h[5] << 16, h[6] | h[7] << 16);
}

// The thread's 8 x 8 values of the tile at (r0, c0): columns 8 (t % 16) .. +7 of rows t / 16 + 16 i.
__device__ __forceinline__ void load_tile(const bf16* in, int rows, int cols, int r0, int c0, bool vec, uint4 (&raw)[8]) {
#pragma unroll
  for (int i = 0; i < 8; ++i) raw[i] = load8(in, rows, cols, r0 + threadIdx.x / 16 + 16 * i, c0 + (threadIdx.x % 16) * 8, vec);
}

// A tile in shared memory as words of two BF16 columns: the row-wise 16-byte accesses and the
// transposed reads (32 consecutive words of one row per warp) are both free of bank conflicts.
using TileWords = unsigned[kEdge][kEdge / 2];
constexpr int kStages = 2;  // the tile being cast and the next one's copies in flight
constexpr int kStageBytes = int(sizeof(TileWords));

// Starts copying the thread's 8 vectors of the tile at (r0, c0) into `tile` (cp.async; the
// matrix's edges and unaligned matrices are loaded and stored directly) and commits a group,
// also when there is no tile, so that every pass waits on the same group count. A whole
// aligned tile (the common case) skips the per-vector bounds tests and address products: they
// were 6 % of the kernel's instructions (Nsight Compute, docs/performance.md).
__device__ __forceinline__ void issue_tile(const bf16* in, int rows, int cols, int r0, int c0, bool vec, bool any, TileWords& tile) {
  if (any) {
    const int c = c0 + (threadIdx.x % 16) * 8;
    unsigned* dst = &tile[threadIdx.x / 16][(threadIdx.x % 16) * 4];
    if (vec && r0 + kEdge <= rows && c0 + kEdge <= cols) {
      const bf16* src = in + std::size_t(r0 + threadIdx.x / 16) * cols + c;
      const std::size_t step = std::size_t(16) * cols;
#pragma unroll
      for (int i = 0; i < 8; ++i) core::cp_async16(dst + i * 16 * (kEdge / 2), src + i * step);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int r = r0 + threadIdx.x / 16 + 16 * i;
        if (r < rows && vec && c + 8 <= cols)
          core::cp_async16(dst + i * 16 * (kEdge / 2), in + std::size_t(r) * cols + c);
        else
          *reinterpret_cast<uint4*>(dst + i * 16 * (kEdge / 2)) = load8(in, rows, cols, r, c, vec);
      }
    }
  }
  core::cp_commit();
}

// The maxima of the 8 tile rows a thread holds part of (v[i]: its part of row i), reduced over
// the 16 lanes that share them and scattered: lane l ends with row (l % 16) / 2's. Each step
// halves the rows a lane keeps and sends the other half to its partner: 8 shuffles instead of
// 32 for eight full reductions, and no select by a lane-dependent index (which the compiler
// turned into an array in local memory).
__device__ __forceinline__ unsigned row_max_scatter(const unsigned (&v)[8]) {
  const int l = threadIdx.x % 16;
  unsigned a[4], b[2];
#pragma unroll
  for (int k = 0; k < 4; ++k) {  // lanes 0-7 keep rows 0-3, lanes 8-15 rows 4-7
    const bool up = l & 8;
    a[k] = max(up ? v[k + 4] : v[k], __shfl_xor_sync(kFull, up ? v[k] : v[k + 4], 8));
  }
#pragma unroll
  for (int k = 0; k < 2; ++k) {  // then two of those four
    const bool up = l & 4;
    b[k] = max(up ? a[k + 2] : a[k], __shfl_xor_sync(kFull, up ? a[k] : a[k + 2], 4));
  }
  const bool up = l & 2;
  const unsigned c = max(up ? b[1] : b[0], __shfl_xor_sync(kFull, up ? b[0] : b[1], 2));
  return max(c, __shfl_xor_sync(kFull, c, 1));
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(kFull, v, off));
  return v;
}

__device__ __forceinline__ unsigned long long warp_sum_u64(unsigned long long v) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(kFull, v, off);
  return v;
}

// The maxima (BF16 magnitude bits) of the thread's vectors, of one whole row of its 16 lanes
// (row_max_scatter) and of its 8 columns over its rows (packed, two per word).
struct TileMaxima {
  unsigned vec[8];   // the thread's own 8 values of its row i (tile row t / 16 + 16 i)
  unsigned row;      // the whole tile row t / 16 + 16 ((t % 16) / 2)
  unsigned col2[4];  // columns 8 (t % 16) + 2k, +1 over the thread's rows
};
__device__ __forceinline__ TileMaxima tile_maxima(const uint4 (&raw)[8]) {
  TileMaxima m;
#pragma unroll
  for (int k = 0; k < 4; ++k) m.col2[k] = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    m.vec[i] = max_bits8(raw[i]);
    m.col2[0] = __vmaxu2(m.col2[0], abs2(raw[i].x)), m.col2[1] = __vmaxu2(m.col2[1], abs2(raw[i].y));
    m.col2[2] = __vmaxu2(m.col2[2], abs2(raw[i].z)), m.col2[3] = __vmaxu2(m.col2[3], abs2(raw[i].w));
  }
  m.row = row_max_scatter(m.vec);
  return m;
}

// The tile's column maxima: the two half-warps (same columns), then the 8 warps. Returns
// thread t's column t (t < 128), 0 for the others.
__device__ __forceinline__ float tile_column_max(const unsigned (&col2)[4], unsigned (*part)[kEdge]) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const unsigned v = __vmaxu2(col2[k], __shfl_xor_sync(kFull, col2[k], 16));
    if (lane < 16) part[warp][lane * 8 + 2 * k] = v & 0xFFFFu, part[warp][lane * 8 + 2 * k + 1] = v >> 16;
  }
  __syncthreads();
  unsigned m = 0;
  if (threadIdx.x < kEdge)
    for (int w = 0; w < kThreads / 32; ++w) m = max(m, part[w][threadIdx.x]);
  return magnitude_of_bits(m);
}

// The tile's column sums of its BF16 values (a bias gradient's partial row for the tile's row of
// tiles), in a fixed order (each thread's 8 rows, the two half-warps, the 8 warps), so the sum
// does not depend on scheduling. `part` must be free (all threads past their last read of it);
// ends with a barrier.
__device__ __forceinline__ void tile_column_sums(const uint4 (&raw)[8], unsigned (*part)[kEdge], float* out, int c0, int cols) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) s[j] += bf16_at(raw[i], j);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    s[j] += __shfl_xor_sync(kFull, s[j], 16);
    if (lane < 16) part[warp][lane * 8 + j] = __float_as_uint(s[j]);
  }
  __syncthreads();
  if (threadIdx.x < kEdge && c0 + int(threadIdx.x) < cols) {
    float t = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) t += __uint_as_float(part[w][threadIdx.x]);
    out[c0 + threadIdx.x] = t;
  }
}

// x / d rounded as __fdiv_rn rounds it, from r = __frcp_rn(d) computed once per block: the
// product x * r, corrected twice by its exact residual x - d q (Markstein's iteration, as
// CUDA's own division runs it, without its range check). Five instructions instead of ten and
// a branch; the same bits as __fdiv_rn wherever the quotient is finite and within the FP8
// range (|x / d| <= 65536), which block_division_mismatches() checks for every BF16 value
// against every scale the casts derive. The sign is copied back for x = -0.
__device__ __forceinline__ float divide_by_scale(float x, float d, float r) {
  const float q0 = __fmul_rn(x, r);
  const float q1 = __fmaf_rn(__fmaf_rn(-d, q0, x), r, q0);
  const float q2 = __fmaf_rn(__fmaf_rn(-d, q1, x), r, q1);
  return copysignf(q2, x);
}

// One value of a per-block cast, the value-by-value path: round(x / d) in the format, with the
// statistics the CPU emulation counts (division, as the emulation computes it).
template <class K>
__device__ __forceinline__ std::uint8_t cast_scaled(float x, float d, LocalStats& st) {
  const bool finite = isfinite(x);
  const float y = __fdiv_rn(x, d);
  st.nonfinite += !finite;
  st.amax = finite ? fmaxf(st.amax, fabsf(x)) : st.amax;
  st.saturated += finite && fabsf(y) > info(K::format).max;
  const std::uint8_t q = encode_fast(y, K::format, K::overflow);
  st.underflow += finite && x != 0.0f && (q & 0x7F) == 0;
  st.nonfinite_out += nonfinite_code(q, K::format);
  return q;
}

// The value-by-value paths of 8 values (a vector of the direct copy) and of 32 (a column of the
// transpose's block, read again from the staged tile: rows kEdge / 2 words apart, the low or
// high halves): codes and the statistics they add. Out of line: inlined at each of their 10
// call sites they made the kernel's code several times larger than its hot loop, which then
// missed the instruction cache.
struct Slow8 {
  uint2 q;
  LocalStats st;
};
template <class K>
__device__ __noinline__ Slow8 cast8_slow(uint4 raw, float d) {
  Slow8 o{};
  std::uint8_t q[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) q[j] = cast_scaled<K>(bf16_at(raw, j), d, o.st);
  o.q = make_uint2(q[0] | q[1] << 8 | q[2] << 16 | unsigned(q[3]) << 24, q[4] | q[5] << 8 | q[6] << 16 | unsigned(q[7]) << 24);
  return o;
}
struct Slow32 {
  unsigned q[8];
  LocalStats st;
};
template <class K>
__device__ __noinline__ Slow32 cast32_slow(const unsigned* col, int half, float d) {
  Slow32 o{};
  const unsigned sel = half_selector(half);
  for (int k = 0; k < 8; ++k) {
    unsigned word = 0;
    for (int j = 0; j < 4; ++j) {
      const unsigned w = col[(4 * k + j) * (kEdge / 2)];
      word |= unsigned(cast_scaled<K>(half_bf16(w, sel), d, o.st)) << (8 * j);
    }
    o.q[k] = word;
  }
  return o;
}

// Whether a block's scale lies where divide_by_scale is exact, so that its vectors may take the
// fast path: where the reciprocal and the residuals stay normal FP32 numbers, d <= 2^100, and
// d >= 2^-76, so that any value whose residual would not (|x| < 2^-102) has |x / d| < 2^-26, a
// zero in both formats either way. (block_division_mismatches checks the division over it.)
__device__ __forceinline__ bool scale_in_fast_range(float d) { return d >= 0x1p-76f && d <= 0x1p100f; }

// How the fast path takes a block's quotients x / d and counts their saturations (one way for
// a whole launch):
// - exact: divide_by_scale, and each value's saturation compared. FP32 scales, and any scale at
//   a negative margin, where any value may saturate.
// - pow2: power-of-two scales at margin >= 0: the reciprocal is exact and one rounded product
//   is the rounded quotient. At margin >= 0 only the values equal to a block's amax can
//   saturate: d >= amax / fmt_max (1 - 2^-24), and the next BF16 magnitude below the amax is at
//   most amax (1 - 2^-8), so its quotient stays below fmt_max. The block's saturation key says
//   whether the amax's quotient does (divisor_of), and only the vector holding the amax counts,
//   instead of a compare per value.
// (FP32 scales at margin >= 0 counted saturations that way too, f059679: no gain measured on an
// H100, 2080 against 2089 us for the 16384 x 50304 cast, so they take the exact path. Two
// products bounding the quotient, by the reciprocal rounded down and up, whose codes decide
// where they agree, take fewer instructions than the exact division but twice the conversions;
// they measured 10 % slower on an H100, the conversions' throughput being the likely cost.)
enum class Quot { exact, pow2 };
constexpr unsigned kNoSaturation = 0xFFFFFFFEu;  // no value of the block saturates
constexpr unsigned kSlowBlock = 0xFFFFFFFFu;     // the block goes value by value (see takes_fast_path)

// A block's scale as the fast path uses it: with its reciprocal and saturation key.
struct Divisor {
  float d, r;
  unsigned key;
};
template <Quot Q>
__device__ __forceinline__ Divisor divisor_of(float amax, float d, float fmax) {
  Divisor v{d, __frcp_rn(d), kNoSaturation};
  if (!scale_in_fast_range(d)) {
    v.key = kSlowBlock;
  } else if constexpr (Q != Quot::exact) {
    // The block amax is a BF16 magnitude (or inf): its bits are the key. The reciprocal of a
    // power of two is exact, so the product is the rounded quotient.
    if (!(amax <= 3.40282347e38f))
      v.key = kSlowBlock;
    else if (__fmul_rn(amax, v.r) > fmax)
      v.key = __float_as_uint(amax) >> 16;
  }
  return v;
}
__device__ __forceinline__ Divisor shfl_divisor(const Divisor& v, int src) {
  return {__shfl_sync(kFull, v.d, src, 16), __shfl_sync(kFull, v.r, src, 16), __shfl_sync(kFull, v.key, src, 16)};
}

// Whether a vector (its largest magnitude's bits) of a block takes the fast path: every vector
// without a non-finite value of a block whose scale is in scale_in_fast_range and, where
// saturations are counted from the amax (pow2), whose amax is finite; divisor_of marks the
// other blocks kSlowBlock. Taking the vectors that may saturate
// too matters: the vector holding a block's amax often does (amax / d rounds above the
// format's largest value), and one such lane sent its whole warp down the slow path.
__device__ __forceinline__ bool takes_fast_path(unsigned vmax_bits, const Divisor& v) {
  return vmax_bits < kInfBits && v.key != kSlowBlock;
}

// How many of the two BF16 values of w have magnitude bits `bits`.
__device__ __forceinline__ unsigned count_equal2(unsigned w, unsigned bits) { return __popc(__vcmpeq2(abs2(w), bits * 0x10001u)) / 16; }

// Underflows among 4 codes (one word) of 4 BF16 values (a: values 0 and 1, b: 2 and 3): the
// non-zero values whose code is +-0, counted byte-parallel.
__device__ __forceinline__ unsigned underflows4(unsigned codes, unsigned a, unsigned b) {
  const unsigned nonzero = __byte_perm(__vcmpne2(abs2(a), 0u), __vcmpne2(abs2(b), 0u), 0x6420);  // 0xFF per non-zero value
  return __popc(zero_code_bytes(codes) & nonzero);
}

// Two values divided by the block's scale and converted, their saturations compared where any
// value may saturate (Quot::exact).
template <class K, Quot Q>
__device__ __forceinline__ unsigned cast2_by_scale(float a, float b, const Divisor& v, LocalStats& st) {
  constexpr float fmax = info(K::format).max;
  const float ya = Q == Quot::pow2 ? __fmul_rn(a, v.r) : divide_by_scale(a, v.d, v.r);
  const float yb = Q == Quot::pow2 ? __fmul_rn(b, v.r) : divide_by_scale(b, v.d, v.r);
  if constexpr (Q == Quot::exact) st.saturated += (fabsf(ya) > fmax) + (fabsf(yb) > fmax);
  return cvt2<K>(ya, yb);
}

// 8 BF16 values of one block (16 bytes) -> 8 codes, with their statistics.
template <class K, Quot Q>
__device__ __forceinline__ uint2 cast8_by_scale(const uint4& raw, unsigned vmax_bits, const Divisor& v, LocalStats& st) {
  const unsigned w[4] = {raw.x, raw.y, raw.z, raw.w};
  if (takes_fast_path(vmax_bits, v)) {
    const unsigned sat0 = st.saturated;
    unsigned q[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) q[k] = cast2_by_scale<K, Q>(lo_bf16(w[k]), hi_bf16(w[k]), v, st);
    if (Q != Quot::exact && vmax_bits == v.key)
      st.saturated += count_equal2(w[0], v.key) + count_equal2(w[1], v.key) + count_equal2(w[2], v.key) + count_equal2(w[3], v.key);
    const uint2 out = make_uint2(q[0] | (q[1] << 16), q[2] | (q[3] << 16));
    st.amax = fmaxf(st.amax, __uint_as_float(vmax_bits << 16));
    if (!no_zero_code(out)) st.underflow += underflows4(out.x, w[0], w[1]) + underflows4(out.y, w[2], w[3]);
    if (K::overflow == Overflow::nosat && st.saturated != sat0)
      st.nonfinite_out += nonfinite_codes4(out.x, K::format) + nonfinite_codes4(out.y, K::format);
    return out;
  }
  const Slow8 slow = cast8_slow<K>(raw, v.d);
  st = merged(st, slow.st);
  return slow.q;
}

// 32 BF16 values of one column of the transpose's block, the low (half 0) or high (half 1)
// halves of w (read from `col` in the staged tile) -> 32 codes in q (8 words).
template <class K, Quot Q>
__device__ __forceinline__ void cast32_by_scale(const unsigned (&w)[32], const unsigned* col, int half, unsigned vmax_bits,
                                                const Divisor& v, unsigned (&q)[8], LocalStats& st) {
  const unsigned sel = half_selector(half);
  auto value = [&](int j) { return half_bf16(w[j], sel); };
  // Values j and j + 1 as one word of two BF16 (j the low half).
  auto pair = [&](int j) { return __byte_perm(w[j], w[j + 1], half ? 0x7632 : 0x5410); };
  if (takes_fast_path(vmax_bits, v)) {
    const unsigned sat0 = st.saturated;
#pragma unroll
    for (int k = 0; k < 8; ++k)
      q[k] = cast2_by_scale<K, Q>(value(4 * k), value(4 * k + 1), v, st) |
             (cast2_by_scale<K, Q>(value(4 * k + 2), value(4 * k + 3), v, st) << 16);
    if (Q != Quot::exact && vmax_bits == v.key)
#pragma unroll
      for (int k = 0; k < 16; ++k) st.saturated += count_equal2(pair(2 * k), v.key);
    st.amax = fmaxf(st.amax, __uint_as_float(vmax_bits << 16));
#pragma unroll
    for (int k = 0; k < 4; ++k)
      if (!no_zero_code(make_uint2(q[2 * k], q[2 * k + 1])))
        st.underflow += underflows4(q[2 * k], pair(8 * k), pair(8 * k + 2)) + underflows4(q[2 * k + 1], pair(8 * k + 4), pair(8 * k + 6));
    if (K::overflow == Overflow::nosat && st.saturated != sat0)
#pragma unroll
      for (int k = 0; k < 8; ++k) st.nonfinite_out += nonfinite_codes4(q[k], K::format);
    return;
  }
  const Slow32 slow = cast32_slow<K>(col, half, v.d);
  st = merged(st, slow.st);
#pragma unroll
  for (int k = 0; k < 8; ++k) q[k] = slow.q[k];
}

__device__ __forceinline__ void store8(std::uint8_t* dst, uint2 q, int valid, bool vec) {
  if (vec && valid == 8) {
    *reinterpret_cast<uint2*>(dst) = q;
  } else {
    for (int j = 0; j < valid; ++j) dst[j] = std::uint8_t((j < 4 ? q.x : q.y) >> (8 * (j % 4)));
  }
}

// The largest dequantisation scale of the CTA's blocks, one atomic per warp.
__device__ __forceinline__ void flush_max_dequant(float d, float* out) {
  d = warp_max(d);
  if (out && threadIdx.x % 32 == 0) atomic_max_nonneg(out, d);
}

// col_sums (may be null): the column sums of the input, one row of partial sums per row of tiles
// ([ceil(rows / 128)][cols]; the bias gradient of a gradient's cast).
template <class K, ScaleMode M, Quot Q>
__global__ void __launch_bounds__(kThreads, 2)
    block_cast_kernel(const bf16* in, int rows, int cols, bool vec, BlockScaleRule rule, ScaleGeometry gd, ScaleGeometry gt,
                      BlockCastCopy dc, BlockCastCopy tc, const float* row_amax, const float* col_amax, float* col_sums) {
  // kStages tiles (dynamic shared memory): the next tile's copies land while this one is cast.
  extern __shared__ __align__(16) unsigned char staged[];
  __shared__ unsigned part[kThreads / 32][kEdge];
  __shared__ Divisor col_div[kEdge];
  __shared__ float warp_part[kThreads / 32];
  constexpr Format F = K::format;
  constexpr float fmax = info(F).max;
  const int lane16 = threadIdx.x % 16, tiles_x = (cols + kEdge - 1) / kEdge, tiles = tiles_x * ((rows + kEdge - 1) / kEdge);
  // The geometries are the launch's mode: their offsets' switches fold away.
  __builtin_assume(gd.mode == M && gt.mode == M);
  // Statistics and the largest dequantisation scales accumulate over the CTA's tiles and are
  // flushed once: a CTA per tile made the step's casts wait on same-address atomics.
  LocalStats st, stt;
  float ddq = 0.0f, tdq = 0.0f;
  auto stage_tile = [&](int k) -> TileWords& { return *reinterpret_cast<TileWords*>(staged + k * kStageBytes); };
  // Tile t is (t / tiles_x, t % tiles_x); the next tile of the CTA, t + gridDim.x, steps both
  // without a division (one per tile was 2 % of the kernel's instructions).
  const int step_r = int(gridDim.x) / tiles_x * kEdge, step_c = int(gridDim.x) % tiles_x * kEdge, width = tiles_x * kEdge;
  auto next = [&](int r, int c, int& rn, int& cn) {
    rn = r + step_r, cn = c + step_c;
    if (cn >= width) cn -= width, rn += kEdge;
  };
  int r0 = int(blockIdx.x) / tiles_x * kEdge, c0 = int(blockIdx.x) % tiles_x * kEdge;  // the tile being cast
  issue_tile(in, rows, cols, r0, c0, vec, int(blockIdx.x) < tiles, stage_tile(0));
  int stage = 0;
  for (int t = blockIdx.x; t < tiles; t += gridDim.x, stage ^= 1) {
    int rn, cn;
    next(r0, c0, rn, cn);
    // The other stage was last read by the previous pass, which ended with a barrier.
    issue_tile(in, rows, cols, rn, cn, vec, t + int(gridDim.x) < tiles, stage_tile(stage ^ 1));
    core::cp_wait<1>();  // this tile's group has landed (for this thread) ...
    __syncthreads();     // ... and for every thread
    TileWords& tile = stage_tile(stage);
    uint4 raw[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) raw[i] = *reinterpret_cast<const uint4*>(&tile[threadIdx.x / 16 + 16 * i][lane16 * 4]);
    const TileMaxima m = tile_maxima(raw);
    const float cm = tile_column_max(m.col2, part);
    float tile_amax = 0.0f;
    if constexpr (M == ScaleMode::blk128) {
      const float w = warp_max(cm);
      if (threadIdx.x % 32 == 0) warp_part[threadIdx.x / 32] = w;
      __syncthreads();
      for (int i = 0; i < kThreads / 32; ++i) tile_amax = fmaxf(tile_amax, warp_part[i]);
    }

    // The transpose's scales: one per tile column (a row of the transpose).
    if (threadIdx.x < kEdge) {
      const int c = c0 + threadIdx.x;
      const float a = M == ScaleMode::vec128 ? cm : M == ScaleMode::blk128 ? tile_amax : (c < cols ? col_amax[c] : 0.0f);
      const float d = model_block_dequant(M, a, F, rule);
      col_div[threadIdx.x] = divisor_of<Q>(a, d, fmax);
      const bool writes = tc.codes && c < cols && (M == ScaleMode::vec128 || (M == ScaleMode::outer_vec && r0 == 0));
      if (writes) {
        tc.lt[gt.lt_offset(c, r0 / kEdge)] = d;
        if (tc.block_amax) tc.block_amax[gt.block_of(c, r0)] = a;
      }
      if (M == ScaleMode::blk128 && tc.codes && threadIdx.x == 0) {
        tc.lt[gt.lt_offset(c0 / kEdge, r0 / kEdge)] = d;
        if (tc.block_amax) tc.block_amax[gt.block_of(c0, r0)] = a;
      }
      if (c < cols) tdq = fmaxf(tdq, d);
    }
    __syncthreads();
    if (col_sums) tile_column_sums(raw, part, col_sums + std::size_t(r0 / kEdge) * cols, c0, cols);

    // The matrix itself, scaled along its rows. Row i's scale and reciprocal are computed once
    // per 16 lanes (lanes 2i and 2i + 1 of them, which hold its maximum) and broadcast: computed
    // by every lane for each of its 8 rows they cost as much as the casts. Lane 2i also
    // stores row i's scale (and block amax), once per tile: stored inside the loop by one lane
    // of 16 for each row, the divergent stores and their offsets were 17 % of the kernel's
    // instructions (Nsight Compute, docs/performance.md).
    if (dc.codes) {
      const int c = c0 + lane16 * 8, valid = min(8, cols - c), row0 = r0 + threadIdx.x / 16;
      float my_a = tile_amax;
      const int my_r = row0 + 16 * (lane16 / 2);  // the row whose scale this lane derives
      if constexpr (M != ScaleMode::blk128)
        my_a = M == ScaleMode::vec128 ? magnitude_of_bits(m.row) : (my_r < rows ? row_amax[my_r] : 0.0f);
      const Divisor my_v = divisor_of<Q>(my_a, model_block_dequant(M, my_a, F, rule), fmax);
      if (lane16 % 2 == 0 && my_r < rows) {
        ddq = fmaxf(ddq, my_v.d);
        const bool writes =
            M == ScaleMode::vec128 || (M == ScaleMode::outer_vec && c0 == 0) || (M == ScaleMode::blk128 && threadIdx.x == 0);
        if (writes) {
          dc.lt[gd.lt_offset(M == ScaleMode::blk128 ? r0 / kEdge : my_r, c0 / kEdge)] = my_v.d;  // blocks of 128 rows or of one
          if (dc.block_amax) dc.block_amax[gd.block_of(my_r, c0)] = my_a;
        }
      }
      // A loop, not unrolled: each row's vector is read again from the staged tile and its
      // maximum taken again, so that the loop body is one row's code (unrolled, the 8 rows'
      // copies made the hot loop larger than the instruction cache).
      std::uint8_t* dst = dc.codes + std::size_t(row0) * cols + c;
      const std::size_t step = std::size_t(16) * cols;
#pragma unroll 1
      for (int i = 0; i < 8; ++i, dst += step) {
        const Divisor v = M == ScaleMode::blk128 ? my_v : shfl_divisor(my_v, 2 * i);
        if (row0 + 16 * i >= rows || valid <= 0) continue;
        const uint4 x = *reinterpret_cast<const uint4*>(&tile[threadIdx.x / 16 + 16 * i][lane16 * 4]);
        store8(dst, cast8_by_scale<K, Q>(x, max_bits8(x), v, st), valid, vec);
      }
    }

    // The transpose [cols][rows], scaled along the original columns: thread t casts 32
    // consecutive rows of two neighbouring columns (one 32-bit shared-memory word per row) and
    // writes 32 bytes of each of two transpose rows; a warp reads 32 consecutive words of a tile
    // row (no bank conflicts).
    if (tc.codes) {
      const int cp = threadIdx.x % (kEdge / 2), rc = (threadIdx.x / (kEdge / 2)) * 32;
      const int valid = min(32, rows - (r0 + rc));
      unsigned w[32], vm = 0;
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        w[j] = tile[rc + j][cp];
        vm = __vmaxu2(vm, abs2(w[j]));
      }
      const bool tvec = vec && rows % 16 == 0 && valid == 32;
#pragma unroll 1
      for (int half = 0; half < 2; ++half) {  // a loop: one column's code (see the rows above)
        const int gc = c0 + 2 * cp + half;
        unsigned q[8];
        cast32_by_scale<K, Q>(w, &tile[rc][cp], half, half ? vm >> 16 : vm & 0xFFFFu, col_div[2 * cp + half], q, stt);
        if (gc >= cols || valid <= 0) continue;
        std::uint8_t* dst = tc.codes + std::size_t(gc) * rows + r0 + rc;
        if (tvec) {
          reinterpret_cast<uint4*>(dst)[0] = make_uint4(q[0], q[1], q[2], q[3]);
          reinterpret_cast<uint4*>(dst)[1] = make_uint4(q[4], q[5], q[6], q[7]);
        } else {
#pragma unroll
          for (int j = 0; j < 32; ++j)
            if (j < valid) dst[j] = std::uint8_t(q[j / 4] >> (8 * (j % 4)));
        }
      }
    }
    __syncthreads();  // the next pass refills this stage's buffer and the maxima
    r0 = rn, c0 = cn;
  }
  core::cp_wait<0>();  // no copy outlives the block
  if (dc.codes) flush_max_dequant(ddq, dc.max_dequant);
  if (tc.codes) flush_max_dequant(tdq, tc.max_dequant);
  flush_block(st, dc.codes ? dc.stats : nullptr);
  __syncthreads();  // flush_block's shared scratch is used again
  flush_block(stt, tc.codes ? tc.stats : nullptr);
}

// One launch of block_cast_kernel: the arguments block_cast_transpose derived.
struct CastLaunch {
  const bf16* in;
  int rows, cols;
  bool vec;  // 16-byte loads and 8- / 16-byte stores (see block_cast_transpose)
  ScaleMode mode;
  Format f;
  Overflow o;
  BlockScaleRule rule;
  ScaleGeometry gd, gt;
  BlockCastCopy direct, transposed;
  const float *row_amax, *col_amax;  // outer_vec only, else null
  float* col_sums;                   // may be null
  unsigned ctas;
  cudaStream_t s;
};

// Launches block_cast_kernel<K, mode, Q> for the launch's format and overflow mode (K).
template <Quot Q>
void launch_block_cast(const CastLaunch& l) {
  constexpr int smem = kStages * kStageBytes;
  auto launch = [&](auto* kernel) {
    core::allow_dynamic_smem(kernel, smem);
    kernel<<<l.ctas, kThreads, smem, l.s>>>(l.in, l.rows, l.cols, l.vec, l.rule, l.gd, l.gt, l.direct, l.transposed, l.row_amax, l.col_amax,
                                            l.col_sums);
  };
  with_kind(l.f, l.o, [&](auto k) {
    using K = decltype(k);
    switch (l.mode) {
      case ScaleMode::outer_vec: launch(block_cast_kernel<K, ScaleMode::outer_vec, Q>); break;
      case ScaleMode::vec128: launch(block_cast_kernel<K, ScaleMode::vec128, Q>); break;
      case ScaleMode::blk128: launch(block_cast_kernel<K, ScaleMode::blk128, Q>); break;
      default: break;  // the microscaling modes are not model recipes (the caller picks one of the three)
    }
  });
}
// Each instance is compiled in its own file (block_cast_<quot>.cu).
extern template void launch_block_cast<Quot::exact>(const CastLaunch&);
extern template void launch_block_cast<Quot::pow2>(const CastLaunch&);

}  // namespace fp8scope::fp8::block_cast_detail
