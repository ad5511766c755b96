#include "fp8scope/fp8/block_cast_kernel.cuh"

#include <cub/device/device_radix_sort.cuh>

#include <algorithm>

namespace fp8scope::fp8 {
namespace {

using namespace block_cast_detail;

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
// scale both ways, over the scales fast() lets the fast path use (2^-76 <= d <= 2^100); a pair counts
// when the exact quotient lies in the FP8 range and the bits differ (quotients below 2^-20,
// which both FP8 formats round to a zero of their sign, may differ in their last FP32 bits).
__global__ void division_check_kernel(const float* scales, int n, unsigned long long* mismatches) {
  unsigned long long bad = 0;
  for (int i = blockIdx.x; i < n; i += gridDim.x) {
    const float d = scales[i], r = __frcp_rn(d);
    if (!(d >= 0x1p-76f && d <= 0x1p100f)) continue;
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
  cast_transpose_from(PlainSrc{in}, rows, cols, mode, f, o, rule, direct, transposed, scratch, col_sums, s);
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
