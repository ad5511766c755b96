#include "fp8scope/fp8/block_cast_kernel.cuh"

#include <cub/device/device_radix_sort.cuh>

#include <algorithm>

namespace fp8scope::fp8 {
namespace {

using namespace block_cast_detail;

// The casts' CTAs loop over tiles: two resident per SM of an H100 / H200 (132 SMs).
constexpr unsigned kMaxBlockCastCtas = 132 * 2;

// Row-wise scaling's first read: the amax of every row and every column (zeroed before).
__global__ void __launch_bounds__(kThreads)
    line_amax_kernel(const bf16* in, int rows, int cols, bool vec, float* row_amax, float* col_amax) {
  __shared__ unsigned part[kThreads / 32][kEdge];
  const int r0 = blockIdx.y * kEdge, c0 = blockIdx.x * kEdge;
  uint4 raw[8];
  load_tile(in, rows, cols, r0, c0, vec, raw);
  const TileMaxima m = tile_maxima(raw);
  const int r = r0 + threadIdx.x / 16 + 16 * ((threadIdx.x % 16) / 2);  // the row m.row covers (two lanes hold it)
  if (threadIdx.x % 2 == 0 && r < rows) atomic_max_nonneg(row_amax + r, magnitude_of_bits(m.row));
  const float cm = tile_column_max(m.col2, part);
  if (threadIdx.x < kEdge && c0 + int(threadIdx.x) < cols) atomic_max_nonneg(col_amax + c0 + threadIdx.x, cm);
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

// Every finite BF16 value (the 65536 bit patterns less the non-finite ones) divided by each
// scale both ways, over the scales the fast path takes (scale_in_fast_range); a pair counts
// when the exact quotient lies in the FP8 range and the bits differ (quotients below 2^-20,
// which both FP8 formats round to a zero of their sign, may differ in their last FP32 bits).
__global__ void division_check_kernel(const float* scales, int n, unsigned long long* mismatches) {
  unsigned long long bad = 0;
  for (int i = blockIdx.x; i < n; i += gridDim.x) {
    const float d = scales[i], r = __frcp_rn(d);
    if (!scale_in_fast_range(d)) continue;
    const bool pow2 = (__float_as_uint(d) & 0x7FFFFFu) == 0;  // a normal power of two
    for (unsigned b = threadIdx.x; b < 65536u; b += blockDim.x) {
      if ((b & 0x7F80u) == 0x7F80u) continue;
      const float x = __uint_as_float(b << 16), exact = __fdiv_rn(x, d);
      if (!(fabsf(exact) <= 65536.0f)) continue;
      // Every scale through the corrected product; a power of two also through the one product
      // the casts then use (cast2_by_scale).
      const float fast[2] = {divide_by_scale(x, d, r), pow2 ? __fmul_rn(x, r) : exact};
      for (float f : fast) {
        if (__float_as_uint(exact) == __float_as_uint(f)) continue;
        const bool both_tiny = fabsf(exact) < 0x1p-20f && fabsf(f) < 0x1p-20f && signbit(exact) == signbit(f);
        bad += !both_tiny;
      }
    }
  }
  bad = warp_sum_u64(bad);
  if (threadIdx.x % 32 == 0 && bad) atomicAdd(mismatches, bad);
}

}  // namespace

void block_cast_transpose(const bf16* in, int rows, int cols, ScaleMode mode, Format f, Overflow o, BlockScaleRule rule,
                          const BlockCastCopy& direct, const BlockCastCopy& transposed, float* scratch, cudaStream_t s, float* col_sums) {
  if (rows <= 0 || cols <= 0) return;
  const ScaleGeometry gd = scale_geometry(mode, rows, cols), gt = scale_geometry(mode, cols, rows);
  const dim3 grid(unsigned((cols + kEdge - 1) / kEdge), unsigned((rows + kEdge - 1) / kEdge));
  const unsigned ctas = std::min(grid.x * grid.y, kMaxBlockCastCtas);
  const bool vec = cols % 8 == 0 && reinterpret_cast<std::uintptr_t>(in) % 16 == 0 &&
                   (!direct.codes || reinterpret_cast<std::uintptr_t>(direct.codes) % 8 == 0) &&
                   (!transposed.codes || reinterpret_cast<std::uintptr_t>(transposed.codes) % 16 == 0);
  float *row_amax = nullptr, *col_amax = nullptr;
  if (mode == ScaleMode::outer_vec) {
    row_amax = scratch, col_amax = scratch + rows;
    cudaMemsetAsync(scratch, 0, block_cast_scratch_floats(rows, cols) * sizeof(float), s);
    line_amax_kernel<<<grid, kThreads, 0, s>>>(in, rows, cols, vec, row_amax, col_amax);
  }
  const CastLaunch l{in, rows, cols, vec, mode, f, o, rule, gd, gt, direct, transposed, row_amax, col_amax, col_sums, ctas, s};
  // Power-of-two scales at margin >= 0: one product a value, saturations counted from the
  // block's amax; otherwise the corrected division, each value's saturation compared.
  if (rule.pow2 && rule.margin >= 0)
    launch_block_cast<Quot::pow2>(l);
  else
    launch_block_cast<Quot::exact>(l);
}

void block_division_mismatches(const float* scales, int n, unsigned long long* mismatches, cudaStream_t s) {
  if (n > 0) division_check_kernel<<<1024, 256, 0, s>>>(scales, n, mismatches);
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
