#include "fp8scope/fp8/cast.cuh"
#include "fp8scope/fp8/cast_device.cuh"

#include <algorithm>

namespace fp8scope::fp8 {
namespace {

// fake_quantize's 8 elements (16 bytes of BF16): cast to FP8 with statistics, written back
// dequantised as 16 bytes of BF16.
__device__ __forceinline__ void fake_cast8(const uint4& raw, __nv_bfloat16* dq, std::int64_t base, float scale, float inv, Format f,
                                           Overflow o, float fmax, LocalStats& st) {
  const __nv_bfloat16* v = reinterpret_cast<const __nv_bfloat16*>(&raw);
  uint4 deq;
  __nv_bfloat16* d = reinterpret_cast<__nv_bfloat16*>(&deq);
#pragma unroll
  for (int j = 0; j < 8; ++j) d[j] = __float2bfloat16(decode(cast_one(__bfloat162float(v[j]), scale, f, o, fmax, st), f) * inv);
  *reinterpret_cast<uint4*>(dq + base) = deq;
}

// 8 elements (16 bytes of BF16) per thread and chunk, written as 8 bytes of FP8 (or 16 bytes
// of dequantised BF16 for fake_quantize); four chunks' loads in flight per thread, the tail
// one by one.
template <bool kDequant>
__global__ void quantize_kernel(std::uint8_t* out, __nv_bfloat16* dq, const __nv_bfloat16* in, std::int64_t n, const float* scale_ptr,
                                Format f, Overflow o, CastStats* stats) {
  const float scale = *scale_ptr, inv = 1.0f / scale, fmax = info(f).max;
  const Bf16Thresholds th = bf16_thresholds(scale, f);
  MagnitudeStats fast;
  LocalStats st;
  auto chunk = [&](const uint4& raw, std::int64_t at) {
    if (kDequant) fake_cast8(raw, dq, at, scale, inv, f, o, fmax, st);
    else *reinterpret_cast<uint2*>(out + at) = cast8_bf16(raw, scale, f, o, th, fast);
  };
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x * 8;
  std::int64_t base = (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) * 8;
  for (; base + 3 * stride + 8 <= n; base += 4 * stride) {
    uint4 raw[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) raw[j] = *reinterpret_cast<const uint4*>(in + base + j * stride);
#pragma unroll
    for (int j = 0; j < 4; ++j) chunk(raw[j], base + j * stride);
  }
  for (; base < n; base += stride) {
    if (base + 8 <= n) {
      chunk(*reinterpret_cast<const uint4*>(in + base), base);
    } else {
      for (std::int64_t i = base; i < n; ++i) {
        const std::uint8_t q = cast_one(__bfloat162float(in[i]), scale, f, o, fmax, st);
        if (kDequant) dq[i] = __float2bfloat16(decode(q, f) * inv);
        else out[i] = q;
      }
    }
  }
  flush_block(merged(st, fast.local()), stats);
}

// 32x32 tiles through shared memory so that both the row-major and the transposed writes are
// coalesced; blockIdx.z is the matrix of the batch.
__global__ void quantize_transpose_kernel(std::uint8_t* out, std::uint8_t* out_t, const __nv_bfloat16* in, int rows, int cols,
                                          const float* scale_ptr, Format f, Overflow o, CastStats* stats) {
  __shared__ std::uint8_t tile[32][33];
  const float scale = *scale_ptr, fmax = info(f).max;
  const std::int64_t mat = std::int64_t(blockIdx.z) * rows * cols;
  in += mat;
  out_t += mat;
  if (out) out += mat;
  LocalStats st;
  const int r0 = blockIdx.y * 32, c0 = blockIdx.x * 32;
  for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
    const int r = r0 + dy, c = c0 + threadIdx.x;
    if (r < rows && c < cols) {
      const std::uint8_t q = cast_one(__bfloat162float(in[std::int64_t(r) * cols + c]), scale, f, o, fmax, st);
      if (out) out[std::int64_t(r) * cols + c] = q;
      tile[dy][threadIdx.x] = q;
    }
  }
  __syncthreads();
  for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
    const int c = c0 + dy, r = r0 + threadIdx.x;
    if (r < rows && c < cols) out_t[std::int64_t(c) * rows + r] = tile[threadIdx.x][dy];
  }
  flush_block(st, stats);
}

__global__ void transpose_fp8_kernel(std::uint8_t* out_t, const std::uint8_t* in, int rows, int cols) {
  __shared__ std::uint8_t tile[32][33];
  const int r0 = blockIdx.y * 32, c0 = blockIdx.x * 32;
  for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
    const int r = r0 + dy, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[dy][threadIdx.x] = in[std::int64_t(r) * cols + c];
  }
  __syncthreads();
  for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
    const int c = c0 + dy, r = r0 + threadIdx.x;
    if (r < rows && c < cols) out_t[std::int64_t(c) * rows + r] = tile[threadIdx.x][dy];
  }
}

// The fast path for the shapes of the model (rows and columns multiples of 8): 64x64 tiles,
// 16-byte BF16 loads and 8-byte FP8 stores both along the rows and along the transposed rows,
// the transpose through shared memory. kCast: BF16 in, cast with statistics; otherwise FP8
// bytes in (a plain transpose, for the fused LayerNorm/GELU outputs).
constexpr int kTile = 64, kTileThreads = 256;
constexpr int kTileStride = kTile + 4;  // 68-byte rows: 8 rows apart land in different banks

template <bool kCast>
__global__ void tile_transpose_kernel(std::uint8_t* out, std::uint8_t* out_t, const void* in_, int rows, int cols, const float* scale_ptr,
                                      Format f, Overflow o, CastStats* stats) {
  __shared__ __align__(16) std::uint8_t tile[kTile * kTileStride];
  const std::int64_t mat = std::int64_t(blockIdx.z) * rows * cols;
  out_t += mat;
  if (out) out += mat;
  const float scale = kCast ? *scale_ptr : 0.0f;
  const Bf16Thresholds th = kCast ? bf16_thresholds(scale, f) : Bf16Thresholds{};
  MagnitudeStats st;
  const int tiles_x = (cols + kTile - 1) / kTile, tiles = tiles_x * ((rows + kTile - 1) / kTile);
  // A capped grid walks the tiles: one statistics flush per block, not per tile.
  for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int r0 = (t / tiles_x) * kTile, c0 = (t % tiles_x) * kTile;
    for (int v = threadIdx.x; v < kTile * kTile / 8; v += kTileThreads) {
      const int tr = v / 8, tc = (v % 8) * 8, r = r0 + tr, c = c0 + tc;
      std::uint32_t lo = 0, hi = 0;
      if (r < rows && c < cols) {
        const std::int64_t i = mat + std::int64_t(r) * cols + c;
        if constexpr (kCast) {
          const uint2 q = cast8_bf16(*reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(in_) + i), scale, f, o, th, st);
          lo = q.x, hi = q.y;
          if (out) *reinterpret_cast<uint2*>(out + std::int64_t(r) * cols + c) = q;
        } else {
          const uint2 raw = *reinterpret_cast<const uint2*>(static_cast<const std::uint8_t*>(in_) + i);
          lo = raw.x, hi = raw.y;
        }
      }
      *reinterpret_cast<std::uint32_t*>(&tile[tr * kTileStride + tc]) = lo;
      *reinterpret_cast<std::uint32_t*>(&tile[tr * kTileStride + tc + 4]) = hi;
    }
    __syncthreads();
    for (int v = threadIdx.x; v < kTile * kTile / 8; v += kTileThreads) {
      const int tc = v / 8, tr = (v % 8) * 8, c = c0 + tc, r = r0 + tr;
      if (c < cols && r < rows) {
        std::uint32_t lo = 0, hi = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          lo |= std::uint32_t(tile[(tr + j) * kTileStride + tc]) << (8 * j);
          hi |= std::uint32_t(tile[(tr + 4 + j) * kTileStride + tc]) << (8 * j);
        }
        *reinterpret_cast<uint2*>(out_t + std::int64_t(c) * rows + r) = make_uint2(lo, hi);
      }
    }
    __syncthreads();  // the tile is refilled by the next iteration
  }
  if (kCast) flush_block(st.local(), stats);
}

unsigned tile_grid(int rows, int cols, int batch) {
  const std::int64_t tiles = std::int64_t((cols + kTile - 1) / kTile) * ((rows + kTile - 1) / kTile);
  const std::int64_t cap = std::max<std::int64_t>(1, kMaxCastBlocks / batch);
  return unsigned(tiles < cap ? tiles : cap);
}

__global__ void pack_amax_kernel(float* amax, unsigned long long* nonfinite, const CastStats* stats, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) amax[i] = stats[i].amax, nonfinite[i] = stats[i].nonfinite;
}

__global__ void unpack_amax_kernel(CastStats* stats, const float* amax, const unsigned long long* nonfinite, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) stats[i].amax = amax[i], stats[i].nonfinite = nonfinite[i];
}

bool tile_path(int rows, int cols) { return rows % 8 == 0 && cols % 8 == 0; }

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__global__ void stats_kernel(const T* in, std::int64_t n, CastStats* stats) {
  LocalStats st;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    observe_one(to_float(in[i]), st);
  flush_block(st, stats);
}

}  // namespace

void quantize(std::uint8_t* out, const __nv_bfloat16* in, std::int64_t n, const float* scale, Format f, Overflow o,
              CastStats* stats, cudaStream_t s) {
  quantize_kernel<false><<<cast_blocks((n + 7) / 8, 256), 256, 0, s>>>(out, nullptr, in, n, scale, f, o, stats);
}

void fake_quantize(__nv_bfloat16* out, const __nv_bfloat16* in, std::int64_t n, const float* scale, Format f, Overflow o,
                   CastStats* stats, cudaStream_t s) {
  quantize_kernel<true><<<cast_blocks((n + 7) / 8, 256), 256, 0, s>>>(nullptr, out, in, n, scale, f, o, stats);
}

void quantize_transpose(std::uint8_t* out, std::uint8_t* out_t, const __nv_bfloat16* in, int rows, int cols, const float* scale,
                        Format f, Overflow o, CastStats* stats, cudaStream_t s, int batch) {
  if (tile_path(rows, cols)) {
    dim3 grid(tile_grid(rows, cols, batch), 1, unsigned(batch));
    tile_transpose_kernel<true><<<grid, kTileThreads, 0, s>>>(out, out_t, in, rows, cols, scale, f, o, stats);
    return;
  }
  dim3 grid(unsigned((cols + 31) / 32), unsigned((rows + 31) / 32), unsigned(batch));
  quantize_transpose_kernel<<<grid, dim3(32, 8), 0, s>>>(out, out_t, in, rows, cols, scale, f, o, stats);
}

void transpose_fp8(std::uint8_t* out_t, const std::uint8_t* in, int rows, int cols, cudaStream_t s) {
  if (tile_path(rows, cols)) {
    dim3 grid(tile_grid(rows, cols, 1), 1, 1);
    tile_transpose_kernel<false><<<grid, kTileThreads, 0, s>>>(nullptr, out_t, in, rows, cols, nullptr, Format::e4m3,
                                                               Overflow::satfinite, nullptr);
    return;
  }
  dim3 grid(unsigned((cols + 31) / 32), unsigned((rows + 31) / 32));
  transpose_fp8_kernel<<<grid, dim3(32, 8), 0, s>>>(out_t, in, rows, cols);
}

void tensor_stats(const __nv_bfloat16* in, std::int64_t n, CastStats* stats, cudaStream_t s) {
  stats_kernel<<<cast_blocks(n, 256), 256, 0, s>>>(in, n, stats);
}
void tensor_stats(const float* in, std::int64_t n, CastStats* stats, cudaStream_t s) {
  stats_kernel<<<cast_blocks(n, 256), 256, 0, s>>>(in, n, stats);
}

void pack_amax(float* amax, unsigned long long* nonfinite, const CastStats* stats, int n, cudaStream_t s) {
  if (n > 0) pack_amax_kernel<<<unsigned((n + 255) / 256), 256, 0, s>>>(amax, nonfinite, stats, n);
}

void unpack_amax(CastStats* stats, const float* amax, const unsigned long long* nonfinite, int n, cudaStream_t s) {
  if (n > 0) unpack_amax_kernel<<<unsigned((n + 255) / 256), 256, 0, s>>>(stats, amax, nonfinite, n);
}

}  // namespace fp8scope::fp8
