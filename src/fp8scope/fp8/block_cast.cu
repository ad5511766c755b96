#include "fp8scope/fp8/block_cast.cuh"
#include "fp8scope/fp8/cast_device.cuh"

#include <cub/device/device_radix_sort.cuh>

namespace fp8scope::fp8 {
namespace {

using bf16 = __nv_bfloat16;

// A CTA casts one 128 x 128 tile: every 1x128 block of either copy and every 128x128 block
// lies inside one tile, so block scales need nothing from other CTAs. Thread t holds 8
// consecutive values of 8 tile rows: columns 8 (t % 16) .. +7, rows t / 16 + 16 i. A row's
// amax is then a reduction over 16 lanes, a column's over the thread's 8 rows, the other half
// of the warp and the 8 warps.
constexpr int kEdge = 128;
constexpr int kThreads = 256;
constexpr unsigned kFull = 0xffffffffu;

// Magnitude for the block amax: a non-finite value makes the block's amax inf (dequantisation
// scale 1, model_block_dequant), so the value reaches the cast and the taps see it.
__device__ __forceinline__ float magnitude(float x) { return isfinite(x) ? fabsf(x) : INFINITY; }
// Non-negative floats order like their bits.
__device__ __forceinline__ void atomic_max_nonneg(float* a, float v) { atomicMax(reinterpret_cast<unsigned*>(a), __float_as_uint(v)); }

__device__ __forceinline__ float bf16_at(const uint4& raw, int j) {
  const unsigned w = j < 2 ? raw.x : j < 4 ? raw.y : j < 6 ? raw.z : raw.w;
  return __uint_as_float(j % 2 ? (w & 0xFFFF0000u) : (w << 16));  // little-endian: element 2k is the low half
}

// The thread's 8 x 8 values of the tile at (r0, c0); zeros outside the matrix.
__device__ __forceinline__ void load_tile(const bf16* in, int rows, int cols, int r0, int c0, bool vec, uint4 (&raw)[8]) {
  const int c = c0 + (threadIdx.x % 16) * 8;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int r = r0 + threadIdx.x / 16 + 16 * i;
    if (r < rows && vec && c + 8 <= cols) {
      raw[i] = *reinterpret_cast<const uint4*>(in + std::size_t(r) * cols + c);
    } else {
      unsigned h[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) h[j] = r < rows && c + j < cols ? __bfloat16_as_ushort(in[std::size_t(r) * cols + c + j]) : 0u;
      raw[i] = make_uint4(h[0] | h[1] << 16, h[2] | h[3] << 16, h[4] | h[5] << 16, h[6] | h[7] << 16);
    }
  }
}

__device__ __forceinline__ float half_warp_max(float v) {
#pragma unroll
  for (int off = 8; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(kFull, v, off));
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(kFull, v, off));
  return v;
}

// The tile's column maxima: each thread's 8 columns over its rows, the two half-warps (same
// columns), then the 8 warps. Returns thread t's column t (t < 128), 0 for the others.
__device__ __forceinline__ float tile_column_max(float (&colm)[8], float (*part)[kEdge]) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int j = 0; j < 8; ++j) colm[j] = fmaxf(colm[j], __shfl_xor_sync(kFull, colm[j], 16));
  if (lane < 16)
#pragma unroll
    for (int j = 0; j < 8; ++j) part[warp][lane * 8 + j] = colm[j];
  __syncthreads();
  float m = 0.0f;
  if (threadIdx.x < kEdge)
    for (int w = 0; w < kThreads / 32; ++w) m = fmaxf(m, part[w][threadIdx.x]);
  return m;
}

// Row-wise scaling's first read: the amax of every row and every column (zeroed before).
__global__ void __launch_bounds__(kThreads)
    line_amax_kernel(const bf16* in, int rows, int cols, bool vec, float* row_amax, float* col_amax) {
  __shared__ float part[kThreads / 32][kEdge];
  const int r0 = blockIdx.y * kEdge, c0 = blockIdx.x * kEdge;
  uint4 raw[8];
  load_tile(in, rows, cols, r0, c0, vec, raw);
  float colm[8] = {};
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    float rm = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float m = magnitude(bf16_at(raw[i], j));
      rm = fmaxf(rm, m);
      colm[j] = fmaxf(colm[j], m);
    }
    rm = half_warp_max(rm);
    const int r = r0 + threadIdx.x / 16 + 16 * i;
    if (threadIdx.x % 16 == 0 && r < rows) atomic_max_nonneg(row_amax + r, rm);
  }
  const float cm = tile_column_max(colm, part);
  if (threadIdx.x < kEdge && c0 + int(threadIdx.x) < cols) atomic_max_nonneg(col_amax + c0 + threadIdx.x, cm);
}

// One value of a per-block cast: round(x / d) in the format, with the statistics the CPU
// emulation counts (division, not a multiplication by 1 / d, as the emulation computes it).
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

__device__ __forceinline__ void store8(std::uint8_t* dst, const std::uint8_t (&q)[8], int valid, bool vec) {
  if (vec && valid == 8) {
    *reinterpret_cast<uint2*>(dst) =
        make_uint2(q[0] | q[1] << 8 | q[2] << 16 | unsigned(q[3]) << 24, q[4] | q[5] << 8 | q[6] << 16 | unsigned(q[7]) << 24);
  } else {
    for (int j = 0; j < valid; ++j) dst[j] = q[j];
  }
}

// The largest dequantisation scale of the CTA's blocks, one atomic per warp.
__device__ __forceinline__ void flush_max_dequant(float d, float* out) {
  d = warp_max(d);
  if (out && threadIdx.x % 32 == 0) atomic_max_nonneg(out, d);
}

template <class K, ScaleMode M>
__global__ void __launch_bounds__(kThreads)
    block_cast_kernel(const bf16* in, int rows, int cols, bool vec, int margin, ScaleGeometry gd, ScaleGeometry gt, BlockCastCopy dc,
                      BlockCastCopy tc, const float* row_amax, const float* col_amax) {
  __shared__ __align__(16) bf16 tile[kEdge][kEdge + 8];  // +8: a column read hits 8 banks, not 1
  __shared__ float part[kThreads / 32][kEdge];
  __shared__ float col_dequant[kEdge];
  __shared__ float warp_part[kThreads / 32];
  constexpr Format F = K::format;
  const int r0 = blockIdx.y * kEdge, c0 = blockIdx.x * kEdge, lane16 = threadIdx.x % 16;
  uint4 raw[8];
  load_tile(in, rows, cols, r0, c0, vec, raw);
  float rowm[8], colm[8] = {};
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    *reinterpret_cast<uint4*>(&tile[threadIdx.x / 16 + 16 * i][lane16 * 8]) = raw[i];
    rowm[i] = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float m = magnitude(bf16_at(raw[i], j));
      rowm[i] = fmaxf(rowm[i], m);
      colm[j] = fmaxf(colm[j], m);
    }
    rowm[i] = half_warp_max(rowm[i]);
  }
  const float cm = tile_column_max(colm, part);
  float tile_amax = 0.0f;
  if constexpr (M == ScaleMode::blk128) {
    const float w = warp_max(cm);
    if (threadIdx.x % 32 == 0) warp_part[threadIdx.x / 32] = w;
    __syncthreads();
    for (int i = 0; i < kThreads / 32; ++i) tile_amax = fmaxf(tile_amax, warp_part[i]);
  }

  // The transpose's scales: one per tile column (a row of the transpose).
  float tdq = 0.0f;
  if (threadIdx.x < kEdge) {
    const int c = c0 + threadIdx.x;
    const float a = M == ScaleMode::vec128 ? cm : M == ScaleMode::blk128 ? tile_amax : (c < cols ? col_amax[c] : 0.0f);
    const float d = model_block_dequant(M, a, F, margin);
    col_dequant[threadIdx.x] = d;
    const bool writes = tc.codes && c < cols && (M == ScaleMode::vec128 || (M == ScaleMode::outer_vec && r0 == 0));
    if (writes) {
      tc.lt[gt.lt_offset(c, r0 / kEdge)] = d;
      if (tc.block_amax) tc.block_amax[gt.block_of(c, r0)] = a;
    }
    if (M == ScaleMode::blk128 && tc.codes && threadIdx.x == 0) {
      tc.lt[gt.lt_offset(c0 / kEdge, r0 / kEdge)] = d;
      if (tc.block_amax) tc.block_amax[gt.block_of(c0, r0)] = a;
    }
    tdq = c < cols ? d : 0.0f;
  }
  if (tc.codes) flush_max_dequant(tdq, tc.max_dequant);
  __syncthreads();

  // The matrix itself, scaled along its rows.
  LocalStats st;
  float ddq = 0.0f;
  if (dc.codes) {
    const int c = c0 + lane16 * 8, valid = min(8, cols - c);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int r = r0 + threadIdx.x / 16 + 16 * i;
      if (r >= rows || valid <= 0) continue;
      const float a = M == ScaleMode::vec128 ? rowm[i] : M == ScaleMode::blk128 ? tile_amax : row_amax[r];
      const float d = model_block_dequant(M, a, F, margin);
      ddq = fmaxf(ddq, d);
      std::uint8_t q[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) q[j] = j < valid ? cast_scaled<K>(bf16_at(raw[i], j), d, st) : 0;
      store8(dc.codes + std::size_t(r) * cols + c, q, valid, vec);
      const bool writes = lane16 == 0 && (M == ScaleMode::vec128 || (M == ScaleMode::outer_vec && c0 == 0) ||
                                          (M == ScaleMode::blk128 && threadIdx.x == 0 && i == 0));
      if (writes) {
        dc.lt[gd.lt_offset(r / gd.bo, c0 / kEdge)] = d;
        if (dc.block_amax) dc.block_amax[gd.block_of(r, c0)] = a;
      }
    }
    flush_max_dequant(ddq, dc.max_dequant);
  }

  // The transpose [cols][rows], scaled along the original columns: thread t writes 16
  // consecutive rows of one column per step (one 16-byte store), a warp 32 neighbouring
  // columns, so its shared-memory reads are of one tile row (no bank conflicts).
  LocalStats stt;
  if (tc.codes) {
    const bool tvec = vec && rows % 16 == 0;
#pragma unroll 1
    for (int k = 0; k < kEdge * kEdge / 16 / kThreads; ++k) {
      const int item = k * kThreads + threadIdx.x, c = item % kEdge, rc = (item / kEdge) * 16;
      const int gc = c0 + c, valid = min(16, rows - (r0 + rc));
      if (gc >= cols || valid <= 0) continue;
      const float d = col_dequant[c];
      std::uint8_t q[16];
#pragma unroll
      for (int j = 0; j < 16; ++j) q[j] = j < valid ? cast_scaled<K>(__bfloat162float(tile[rc + j][c]), d, stt) : 0;
      std::uint8_t* dst = tc.codes + std::size_t(gc) * rows + r0 + rc;
      if (tvec && valid == 16) {
        unsigned w[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) w[i] = q[4 * i] | q[4 * i + 1] << 8 | q[4 * i + 2] << 16 | unsigned(q[4 * i + 3]) << 24;
        *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
      } else {
        for (int j = 0; j < valid; ++j) dst[j] = q[j];
      }
    }
  }
  flush_block(st, dc.codes ? dc.stats : nullptr);
  __syncthreads();  // flush_block's shared scratch is used again
  flush_block(stt, tc.codes ? tc.stats : nullptr);
}

__global__ void amax_quantiles_kernel(const float* sorted, std::int64_t n, float* out) {
  // sorted ascending: zeros first, non-finite blocks (inf) last.
  auto first = [&](auto pred) {
    std::int64_t lo = 0, hi = n;
    while (lo < hi) {
      const std::int64_t mid = (lo + hi) / 2;
      if (pred(sorted[mid]))
        hi = mid;
      else
        lo = mid + 1;
    }
    return lo;
  };
  const std::int64_t finite = first([](float v) { return v == INFINITY; });
  const std::int64_t nonzero = first([](float v) { return v > 0.0f; });
  out[0] = nonzero < finite ? sorted[nonzero] : 0.0f;
  out[1] = finite > 0 ? sorted[finite / 2] : 0.0f;
}

}  // namespace

void block_cast_transpose(const bf16* in, int rows, int cols, ScaleMode mode, Format f, Overflow o, int margin, const BlockCastCopy& direct,
                          const BlockCastCopy& transposed, float* scratch, cudaStream_t s) {
  if (rows <= 0 || cols <= 0) return;
  const ScaleGeometry gd = scale_geometry(mode, rows, cols), gt = scale_geometry(mode, cols, rows);
  const dim3 grid(unsigned((cols + kEdge - 1) / kEdge), unsigned((rows + kEdge - 1) / kEdge));
  const bool vec = cols % 8 == 0 && reinterpret_cast<std::uintptr_t>(in) % 16 == 0 &&
                   (!direct.codes || reinterpret_cast<std::uintptr_t>(direct.codes) % 8 == 0) &&
                   (!transposed.codes || reinterpret_cast<std::uintptr_t>(transposed.codes) % 16 == 0);
  float *row_amax = nullptr, *col_amax = nullptr;
  if (mode == ScaleMode::outer_vec) {
    row_amax = scratch, col_amax = scratch + rows;
    cudaMemsetAsync(scratch, 0, block_cast_scratch_floats(rows, cols) * sizeof(float), s);
    line_amax_kernel<<<grid, kThreads, 0, s>>>(in, rows, cols, vec, row_amax, col_amax);
  }
  with_kind(f, o, [&](auto k) {
    using K = decltype(k);
    switch (mode) {
      case ScaleMode::outer_vec:
        block_cast_kernel<K, ScaleMode::outer_vec>
            <<<grid, kThreads, 0, s>>>(in, rows, cols, vec, margin, gd, gt, direct, transposed, row_amax, col_amax);
        break;
      case ScaleMode::vec128:
        block_cast_kernel<K, ScaleMode::vec128>
            <<<grid, kThreads, 0, s>>>(in, rows, cols, vec, margin, gd, gt, direct, transposed, nullptr, nullptr);
        break;
      case ScaleMode::blk128:
        block_cast_kernel<K, ScaleMode::blk128>
            <<<grid, kThreads, 0, s>>>(in, rows, cols, vec, margin, gd, gt, direct, transposed, nullptr, nullptr);
        break;
      default: break;  // the microscaling modes are not model recipes (the caller picks one of the three)
    }
  });
}

std::size_t block_amax_sort_temp_bytes(std::int64_t n) {
  std::size_t bytes = 0;
  cub::DeviceRadixSort::SortKeys(nullptr, bytes, static_cast<const float*>(nullptr), static_cast<float*>(nullptr), n);
  return bytes;
}

void block_amax_quantiles(const float* block_amax, std::int64_t n, float* sorted, void* temp, std::size_t temp_bytes, float* out,
                          cudaStream_t s) {
  if (n <= 0) return;
  cub::DeviceRadixSort::SortKeys(temp, temp_bytes, block_amax, sorted, n, 0, 32, s);
  amax_quantiles_kernel<<<1, 1, 0, s>>>(sorted, n, out);
}

}  // namespace fp8scope::fp8
