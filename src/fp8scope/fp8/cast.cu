#include "fp8scope/fp8/cast.cuh"
#include "fp8scope/fp8/cast_kernels.cuh"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace fp8scope::fp8 {
namespace {

// fake_quantize: 8 elements (16 bytes of BF16) per thread and pass, cast to FP8 with
// statistics and written back dequantised as BF16; the n % 8 tail by one thread.
__global__ void fake_quantize_kernel(__nv_bfloat16* dq, const __nv_bfloat16* in, std::int64_t n, const float* scale_ptr, Format f,
                                     Overflow o, CastStats* stats) {
  const float scale = *scale_ptr, inv = 1.0f / scale, fmax = info(f).max;
  LocalStats st;
  const std::int64_t n8 = n / 8 * 8, stride = std::int64_t(gridDim.x) * blockDim.x * 8;
  for (std::int64_t base = (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) * 8; base < n8; base += stride) {
    const uint4 raw = *reinterpret_cast<const uint4*>(in + base);
    const __nv_bfloat16* v = reinterpret_cast<const __nv_bfloat16*>(&raw);
    uint4 deq;
    __nv_bfloat16* d = reinterpret_cast<__nv_bfloat16*>(&deq);
#pragma unroll
    for (int j = 0; j < 8; ++j) d[j] = __float2bfloat16(decode(cast_one(__bfloat162float(v[j]), scale, f, o, fmax, st), f) * inv);
    *reinterpret_cast<uint4*>(dq + base) = deq;
  }
  if (blockIdx.x == 0 && threadIdx.x == 0)
    for (std::int64_t i = n8; i < n; ++i)
      dq[i] = __float2bfloat16(decode(cast_one(__bfloat162float(in[i]), scale, f, o, fmax, st), f) * inv);
  flush_block(st, stats);
}

// The element-wise fallback for shapes the tile loop does not take: 32x32 tiles through
// shared memory so that both the row-major and the transposed writes are coalesced;
// blockIdx.z is the matrix of the batch. kCast: In (BF16 or FP32) in, cast with statistics;
// otherwise FP8 bytes in.
__device__ __forceinline__ float value_of(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float value_of(float x) { return x; }
template <bool kCast, class In = __nv_bfloat16>
__global__ void small_tile_transpose_kernel(std::uint8_t* out, std::uint8_t* out_t, const void* in_, int rows, int cols,
                                            const float* scale_ptr, Format f, Overflow o, CastStats* stats) {
  __shared__ std::uint8_t tile[32][33];
  const float scale = kCast ? *scale_ptr : 0.0f, fmax = info(f).max;
  const std::int64_t mat = std::int64_t(blockIdx.z) * rows * cols;
  out_t += mat;
  if (out) out += mat;
  LocalStats st;
  const int r0 = blockIdx.y * 32, c0 = blockIdx.x * 32;
  for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
    const int r = r0 + dy, c = c0 + threadIdx.x;
    if (r < rows && c < cols) {
      const std::int64_t i = mat + std::int64_t(r) * cols + c;
      const std::uint8_t q =
          kCast ? cast_one(value_of(static_cast<const In*>(in_)[i]), scale, f, o, fmax, st) : static_cast<const std::uint8_t*>(in_)[i];
      if (out) out[std::int64_t(r) * cols + c] = q;
      tile[dy][threadIdx.x] = q;
    }
  }
  __syncthreads();
  for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
    const int c = c0 + dy, r = r0 + threadIdx.x;
    if (r < rows && c < cols) out_t[std::int64_t(c) * rows + r] = tile[threadIdx.x][dy];
  }
  if (kCast) flush_block(st, stats);
}

__global__ void pack_amax_kernel(float* amax, unsigned long long* nonfinite, const CastStats* stats, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) amax[i] = stats[i].amax, nonfinite[i] = stats[i].nonfinite;
}

__global__ void unpack_amax_kernel(CastStats* stats, const float* amax, const unsigned long long* nonfinite, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) stats[i].amax = amax[i], stats[i].nonfinite = nonfinite[i];
}

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

void quantize(std::uint8_t* out, const __nv_bfloat16* in, std::int64_t n, const float* scale, Format f, Overflow o, CastStats* stats,
              cudaStream_t s) {
  with_kind(f, o, [&](auto k) {
    vector_cast_kernel<<<cast_blocks((n + 31) / 32, 256), 256, 0, s>>>(CastBf16Op<decltype(k)>{{scale}, {in}}, out, n, stats);
  });
}

void fake_quantize(__nv_bfloat16* out, const __nv_bfloat16* in, std::int64_t n, const float* scale, Format f, Overflow o, CastStats* stats,
                   cudaStream_t s) {
  fake_quantize_kernel<<<cast_blocks((n + 7) / 8, 256), 256, 0, s>>>(out, in, n, scale, f, o, stats);
}

void quantize_transpose(std::uint8_t* out, std::uint8_t* out_t, const __nv_bfloat16* in, int rows, int cols, const float* scale, Format f,
                        Overflow o, CastStats* stats, cudaStream_t s, int batch) {
  if (tile_cast_fits(rows, cols)) {
    with_kind(f, o, [&](auto k) {
      using Op = CastBf16Op<decltype(k)>;
      launch_tile_cast_transpose<Op, false>(Op{{scale}, {in}}, out, out_t, nullptr, rows, cols, stats, s, batch);
    });
    return;
  }
  const dim3 grid(unsigned((cols + 31) / 32), unsigned((rows + 31) / 32), unsigned(batch));
  small_tile_transpose_kernel<true><<<grid, dim3(32, 8), 0, s>>>(out, out_t, in, rows, cols, scale, f, o, stats);
}

void quantize(std::uint8_t* out, const float* in, std::int64_t n, const float* scale, Format f, Overflow o, CastStats* stats,
              cudaStream_t s) {
  with_kind(f, o, [&](auto k) {
    using Op = CastF32Op<decltype(k)>;
    vector_cast_kernel<<<cast_blocks((n + 31) / 32, 256), 256, 0, s>>>(Op{{scale}, in}, out, n, stats);
  });
}

void quantize_transpose(std::uint8_t* out, std::uint8_t* out_t, const float* in, int rows, int cols, const float* scale, Format f,
                        Overflow o, CastStats* stats, cudaStream_t s) {
  if (tile_cast_fits(rows, cols)) {
    with_kind(f, o, [&](auto k) {
      using Op = CastF32Op<decltype(k)>;
      launch_tile_cast_transpose<Op, false>(Op{{scale}, in, cols}, out, out_t, nullptr, rows, cols, stats, s);
    });
    return;
  }
  const dim3 grid(unsigned((cols + 31) / 32), unsigned((rows + 31) / 32), 1);
  small_tile_transpose_kernel<true, float><<<grid, dim3(32, 8), 0, s>>>(out, out_t, in, rows, cols, scale, f, o, stats);
}

namespace {
// Tiles per block of quantize_transpose_many's largest matrix: enough for the copy pipeline to
// overlap, few enough that the matrices' blocks interleave across the GPU.
constexpr int kTilesPerManyBlock = 8;

template <class K>
__global__ void __launch_bounds__(kTileThreads, 4) cast_transpose_many_kernel(const CastTransposeJob* jobs) {
  const CastTransposeJob j = jobs[blockIdx.z];
  using Op = CastBf16Op<K>;
  tile_cast_transpose_tiles<Op, false>(Op{{j.scale}, {j.in}}, j.out, j.out_t, nullptr, j.rows, j.cols, j.stats, 0, int(blockIdx.x),
                                       int(gridDim.x));
}
}  // namespace

namespace {
// The casts of many FP32 matrices in one launch give each matrix ceil(size / share) blocks of at
// most `share` units each (quantize_many: tiles; quantize_rows_many: elements, a multiple of
// `unit`, one pass of its vector loop), with share such that all of the launch's blocks fit in
// one wave of kMaxCastBlocks: the blocks' work is even. (The same number of blocks for every
// matrix, as before, left the small matrices' blocks with one tile and pushed the large ones'
// into a second wave: a layer's weights from their masters moved at half the copy bandwidth.)
inline std::int64_t per_block_share(std::int64_t total, int n, std::int64_t unit) {
  const std::int64_t slots = std::max(1, kMaxCastBlocks - n), units = (total + unit - 1) / unit;
  return std::max<std::int64_t>(1, (units + slots - 1) / slots) * unit;
}

template <class K>
__global__ void __launch_bounds__(kTileThreads, 4) cast_many_f32_kernel(const CastJobF32* jobs, int per_block) {
  const CastJobF32 j = jobs[blockIdx.z];
  const int blocks = (cast_tiles(j.rows, j.cols) + per_block - 1) / per_block;
  if (int(blockIdx.x) >= blocks) return;
  using Op = CastF32Op<K>;
  tile_cast_transpose_tiles<Op, false>(Op{{j.scale}, j.in, j.cols}, j.out, j.out_t, nullptr, j.rows, j.cols, j.stats, 0, int(blockIdx.x),
                                       blocks);
}

// One pass of quantize_rows_many's vector loop over a block: 256 threads, 4 vectors of 8.
constexpr std::int64_t kRowsPass = 256 * 8 * 4;

// Block x of matrix z casts elements [x chunk, (x + 1) chunk) of it.
template <class K>
__global__ void __launch_bounds__(256, 4) cast_rows_many_f32_kernel(const CastJobF32* jobs, std::int64_t chunk) {
  const CastJobF32 j = jobs[blockIdx.z];
  const std::int64_t n = std::int64_t(j.rows) * j.cols, begin = std::int64_t(blockIdx.x) * chunk;
  if (begin >= n) return;
  using Op = CastF32Op<K>;
  Op op{{j.scale}, j.in, j.cols};
  op.setup();
  MagnitudeStats fast;
  vector_cast_range(op, j.out, begin + std::int64_t(threadIdx.x) * 8, n < begin + chunk ? n : begin + chunk, 256 * 8, fast);
  flush_block(fast.local(), j.stats);
}
}  // namespace

void quantize_many(const CastJobF32* jobs, int n, const ManyCastSizes& sizes, Format f, Overflow o, cudaStream_t s) {
  if (n <= 0) return;
  const int per_block = int(per_block_share(sizes.total_tiles, n, 1));
  const dim3 grid(unsigned((sizes.max_tiles + per_block - 1) / per_block), 1, unsigned(n));
  with_kind(f, o, [&](auto k) {
    using Op = CastF32Op<decltype(k)>;
    constexpr int smem = tile_smem_bytes<Op>();
    static_assert(smem <= 40 * 1024, "the FP32 tile stages fit the default shared memory");
    cast_many_f32_kernel<decltype(k)><<<grid, kTileThreads, smem, s>>>(jobs, per_block);
  });
}

void quantize_rows_many(const CastJobF32* jobs, int n, const ManyCastSizes& sizes, Format f, Overflow o, cudaStream_t s) {
  if (n <= 0) return;
  const std::int64_t chunk = per_block_share(sizes.total_elements, n, kRowsPass);
  const dim3 grid(unsigned((sizes.max_elements + chunk - 1) / chunk), 1, unsigned(n));
  with_kind(f, o, [&](auto k) { cast_rows_many_f32_kernel<decltype(k)><<<grid, 256, 0, s>>>(jobs, chunk); });
}

void quantize_transpose_many(const CastTransposeJob* jobs, int n, int max_tiles, Format f, Overflow o, cudaStream_t s) {
  if (n <= 0) return;
  const dim3 grid(unsigned((max_tiles + kTilesPerManyBlock - 1) / kTilesPerManyBlock), 1, unsigned(n));
  with_kind(f, o, [&](auto k) {
    cast_transpose_many_kernel<decltype(k)><<<grid, kTileThreads, tile_smem_bytes<CastBf16Op<decltype(k)>>(), s>>>(jobs);
  });
}

void quantize_transpose_dbias(std::uint8_t* out, std::uint8_t* out_t, float* bias_partial, const __nv_bfloat16* in, int rows, int cols,
                              const float* scale, Format f, Overflow o, CastStats* stats, cudaStream_t s) {
  with_kind(f, o, [&](auto k) {
    using Op = CastBf16Op<decltype(k)>;
    launch_tile_cast_transpose<Op, true>(Op{{scale}, {in}}, out, out_t, bias_partial, rows, cols, stats, s);
  });
}

namespace {
// The byte transpose of an FP8 matrix whose rows and columns are multiples of 16: a block per
// 128 x 128-byte tile, 16-byte loads and stores (the tile loop's 64 x 64 tiles with 8-byte
// copies moved the LM head's 824 MB gradient at 60 % of copy bandwidth). A thread loads four
// 16-byte row pieces into shared memory, then reads a 16-row x 4-byte block as 16 words,
// transposes it as four 4x4 blocks of bytes, and stores four 16-byte pieces of transposed rows.
// Shared memory rows are 128 bytes whose 16-byte groups are XOR-swizzled by the row's 16-row
// block, so that both the row-piece stores and the column-block reads are free of bank
// conflicts.
constexpr int kT16 = 128;
__device__ __forceinline__ int swizzled_word(int row, int word) {
  return row * (kT16 / 4) + ((((word >> 2) ^ (2 * ((row >> 4) & 3)))) << 2) + (word & 3);
}

// What the codes of one 16-byte piece say (transpose_fp8_counting): NaN/inf codes, codes of the
// format's largest magnitude, zero codes.
__device__ __forceinline__ void count_codes(const uint4& v, Format f, LocalStats& st) {
  const unsigned w[4] = {v.x, v.y, v.z, v.w};
  const unsigned top = f == Format::e4m3 ? 0x7Eu : 0x7Bu;
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const auto q = std::uint8_t(w[i / 4] >> (8 * (i % 4)));
    const unsigned mag = q & 0x7Fu;
    const bool nonfinite = nonfinite_code(q, f);
    st.nonfinite += nonfinite, st.nonfinite_out += nonfinite;
    st.saturated += mag == top;
    st.underflow += mag == 0;
  }
}

// kCount: also count the codes into stats (transpose_fp8_counting). ld: in's row stride (bytes,
// a multiple of 16; cols for a whole matrix, more for a slice of columns).
template <bool kCount>
__global__ void __launch_bounds__(256)
    transpose16_kernel(std::uint8_t* out_t, const std::uint8_t* in, int rows, int cols, std::int64_t ld, Format f, CastStats* stats) {
  __shared__ __align__(16) unsigned tile[kT16 * kT16 / 4];
  const int tiles_x = (cols + kT16 - 1) / kT16;
  const int r0 = int(blockIdx.x / unsigned(tiles_x)) * kT16, c0 = int(blockIdx.x % unsigned(tiles_x)) * kT16;
  {  // rows tr + 32 k, bytes 16 g .. 16 g + 15 of each
    const int tr = threadIdx.x / 8, g = threadIdx.x % 8;
    uint4 v[4];
    LocalStats st;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int r = r0 + tr + 32 * k, c = c0 + 16 * g;
      const bool inside = r < rows && c < cols;
      v[k] = inside ? *reinterpret_cast<const uint4*>(in + std::int64_t(r) * ld + c) : make_uint4(0, 0, 0, 0);
      if (kCount && inside) count_codes(v[k], f, st);
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) *reinterpret_cast<uint4*>(&tile[swizzled_word(tr + 32 * k, 4 * g)]) = v[k];
    if (kCount) flush_block(st, stats);  // every thread, before any returns
  }
  __syncthreads();
  // Lanes: 4 row blocks (rb) x 8 column blocks (cb) per warp, so that the 16 words a lane reads
  // fall in 32 different banks across the warp, and 4 lanes write 64 consecutive bytes.
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int rb = lane % 4 + 4 * (warp & 1), cb = lane / 4 + 8 * (warp >> 1);
  const int r = r0 + 16 * rb;
  if (r >= rows) return;
  unsigned a[16];
#pragma unroll
  for (int j = 0; j < 16; ++j) a[j] = tile[swizzled_word(16 * rb + j, cb)];
  unsigned q[4][4];  // q[i][k]: transposed row 4 cb + i, bytes 4 k .. 4 k + 3 of its 16
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    unsigned b[4] = {a[4 * k], a[4 * k + 1], a[4 * k + 2], a[4 * k + 3]};
    transpose4x4(b);
#pragma unroll
    for (int i = 0; i < 4; ++i) q[i][k] = b[i];
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int c = c0 + 4 * cb + i;
    if (c < cols) *reinterpret_cast<uint4*>(out_t + std::int64_t(c) * rows + r) = make_uint4(q[i][0], q[i][1], q[i][2], q[i][3]);
  }
}

unsigned transpose16_tiles(int rows, int cols) { return unsigned(std::int64_t((rows + kT16 - 1) / kT16) * ((cols + kT16 - 1) / kT16)); }
}  // namespace

void transpose_fp8(std::uint8_t* out_t, const std::uint8_t* in, int rows, int cols, cudaStream_t s) {
  if (rows % 16 == 0 && cols % 16 == 0) {
    transpose16_kernel<false><<<transpose16_tiles(rows, cols), 256, 0, s>>>(out_t, in, rows, cols, cols, Format::e4m3, nullptr);
    return;
  }
  if (tile_cast_fits(rows, cols)) {
    launch_tile_cast_transpose<CopyFp8Op, false>(CopyFp8Op{in}, nullptr, out_t, nullptr, rows, cols, nullptr, s);
    return;
  }
  const dim3 grid(unsigned((cols + 31) / 32), unsigned((rows + 31) / 32));
  small_tile_transpose_kernel<false>
      <<<grid, dim3(32, 8), 0, s>>>(nullptr, out_t, in, rows, cols, nullptr, Format::e4m3, Overflow::satfinite, nullptr);
}

void transpose_fp8_counting(std::uint8_t* out_t, const std::uint8_t* in, int rows, int cols, Format f, CastStats* stats, cudaStream_t s) {
  if (rows % 16 || cols % 16) throw std::invalid_argument("transpose_fp8_counting: rows and columns must be multiples of 16");
  transpose16_kernel<true><<<transpose16_tiles(rows, cols), 256, 0, s>>>(out_t, in, rows, cols, cols, f, stats);
}

void transpose_fp8_columns(std::uint8_t* out_t, const std::uint8_t* in, int rows, int cols, std::int64_t ld, cudaStream_t s) {
  if (ld == cols) return transpose_fp8(out_t, in, rows, cols, s);  // the whole matrix: any shape
  if (rows % 16 || cols % 16 || ld % 16 || ld < cols)
    throw std::invalid_argument(fmt::format(
        "transpose_fp8_columns: rows {}, columns {} and row stride {} must be multiples of 16 (stride >= columns)", rows, cols, ld));
  transpose16_kernel<false><<<transpose16_tiles(rows, cols), 256, 0, s>>>(out_t, in, rows, cols, ld, Format::e4m3, nullptr);
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
