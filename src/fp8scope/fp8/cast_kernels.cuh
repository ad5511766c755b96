#pragma once
// The two loops every FP8-writing elementwise kernel is made of, templated on what happens to
// one 8-element vector (an "op"), so that the plain casts (cast.cu) and the casts fused into
// the MLP's GELU (mlp.cu) share one tuned memory pattern:
//  - vector_cast_kernel: a flat tensor, 8 elements per thread and vector, four vectors' loads
//    in flight per thread (also on the last pass), the n % 8 tail by one thread.
//  - tile_cast_transpose_kernel: a row-major matrix and its transpose, 64x64 tiles through
//    shared memory with 16-byte loads, 8-byte stores of the matrix and 4-byte stores of the
//    transpose (each thread transposes a 4x4 block of codes in registers). The inputs of the next
//    tiles are copied to shared memory with cp.async while the current one is cast and
//    stored (two tiles ahead for one input, one for two), and the column sums of the values
//    before the cast (a bias gradient) come out of the same pass when asked for.
// An op provides
//   using Raw = ...;                        one vector's inputs: kStreams vectors of kVecBytes
//   static constexpr int kStreams, kVecBytes;   (16: BF16 inputs, 8: FP8 bytes)
//   static constexpr bool kStats;           whether it produces cast statistics
//   __device__ void setup();                reads the scale (a device pointer), per thread
//   __device__ const void* stream(int s) const;     input s (element i at byte i * kVecBytes / 8)
//   __device__ uint2 cast(const Raw&, MagnitudeStats&, float* hp) const;
//       the 8 FP8 codes; hp (may be null) receives the 8 values that were cast, unscaled
// optionally, for the tile loop (one matrix, no batch),
//   __device__ std::int64_t offset(int s, int r, int c) const;   input s's element for output
//       (r, c), when the inputs are not laid out as the output (another row stride, columns
//       taken from elsewhere; default: r * cols + c)
//   __device__ void begin_tile(int c0);     called before the casts of the tile at column c0
//   static constexpr bool kStreamsShareSectors;   the streams interleave within 32-byte
//       sectors (two halves of one array): copied through L1
//   using Extra = ...;  __device__ Extra extra(std::int64_t i) const;
//       a narrower second input (not staged: a plain load at element i of the output layout,
//       issued before the tile's staged copies are waited for); the cast is then
//       cast(raw, extra, st, hp)
// optionally, for both loops,
//   __device__ void side(std::int64_t i, const Raw&) const;   a second output of the vector at
//       element i (the GELU casts' E4M3 copy of their input); side_one(i) for one element
// and, for the vector loop,
//   __device__ Raw load(std::int64_t i) const;                   the vector at element i
//   __device__ std::uint8_t cast_one(std::int64_t i, LocalStats&) const;   one element (tail)
#include "fp8scope/core/cp_async.cuh"
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/core/dependent_launch.cuh"
#include "fp8scope/fp8/cast_device.cuh"

#include <type_traits>
#include <utility>

namespace fp8scope::fp8 {

// Unpacks 8 BF16 values (16 bytes) to floats.
__device__ __forceinline__ void unpack8(const uint4& raw, float* out) {
  const unsigned w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = __uint_as_float(w[i] << 16);
    out[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
  }
}

// Rounds 8 floats to BF16 (nearest even) and packs them into 16 bytes, two per instruction.
__device__ __forceinline__ uint4 pack8(const float (&v)[8]) {
  uint4 out;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&out);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
  return out;
}

// What every casting op holds: the scale (a device pointer, read once per thread by setup),
// the format and overflow mode as a compile-time Kind (with_kind picks the instance), and the
// thresholds its statistics use (Bf16Thresholds for BF16 values, CastThresholds for values
// computed in FP32).
template <class Thresholds, class K>
struct ScaledCast {
  const float* scale_ptr;
  float scale = 0.0f;
  Thresholds th{};
  __device__ void setup() {
    scale = *scale_ptr;
    if constexpr (std::is_same_v<Thresholds, Bf16Thresholds>)
      th = bf16_thresholds(scale, K::format);
    else
      th = cast_thresholds(scale, K::format);
  }
  // One value the slow way (a tensor's tail).
  __device__ std::uint8_t cast_value(float x, LocalStats& st) const {
    return fp8::cast_one(x, scale, K::format, K::overflow, info(K::format).max, st);
  }
};

// The input side of an op that reads one BF16 tensor, 8 elements (16 bytes) per vector.
struct Bf16Input {
  using Raw = uint4;
  static constexpr int kStreams = 1, kVecBytes = 16;
  const __nv_bfloat16* in;
  __device__ const void* stream(int) const { return in; }
  __device__ Raw load(std::int64_t i) const { return *reinterpret_cast<const uint4*>(in + i); }
};

// The plain cast of a BF16 tensor: CastBf16Op<K>{{scale}, {in}}.
template <class K>
struct CastBf16Op : ScaledCast<Bf16Thresholds, K>, Bf16Input {
  static constexpr bool kStats = true;
  __device__ uint2 cast(const Raw& r, MagnitudeStats& st, float* hp) const {
    if (hp) unpack8(r, hp);
    return cast8_bf16<K>(r, this->scale, this->th, st);
  }
  __device__ std::uint8_t cast_one(std::int64_t i, LocalStats& st) const { return this->cast_value(__bfloat162float(in[i]), st); }
};

// The plain cast of an FP32 tensor (a weight cast from its FP32 master, which then needs no BF16
// copy): CastF32Op<K>{{scale}, in, cols}. A vector is 8 floats, 32 bytes: the tile loop stages
// it as two 16-byte streams over the same array, the second 4 floats on (offset counts the
// stream's 2-byte units: float e of the matrix is unit 2 e; cols: the matrix's row length).
template <class K>
struct CastF32Op : ScaledCast<CastThresholds, K> {
  struct Raw {
    uint4 lo, hi;
  };
  static constexpr int kStreams = 2, kVecBytes = 16;
  // The two streams interleave in 16-byte pieces: the tile loop copies them through L1. Copied
  // around it, the transposed weight casts of GPT-2 774M moved 0.56 of the copy bandwidth on an
  // H100 (57 us a layer; the row-major vector loop, whose loads go through L1, 0.84), with two
  // stages as with three.
  static constexpr bool kStreamsShareSectors = true;
  static constexpr bool kStats = true;
  const float* in;
  int cols = 0;
  __device__ const void* stream(int) const { return in; }
  __device__ std::int64_t offset(int s, int r, int c) const { return 2 * (std::int64_t(r) * cols + c) + 8 * s; }
  __device__ Raw load(std::int64_t i) const {
    return {*reinterpret_cast<const uint4*>(in + i), *reinterpret_cast<const uint4*>(in + i + 4)};
  }
  __device__ uint2 cast(const Raw& r, MagnitudeStats& st, float* hp) const {
    float y[8];
    const uint4 w[2] = {r.lo, r.hi};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      y[4 * h] = __uint_as_float(w[h].x), y[4 * h + 1] = __uint_as_float(w[h].y);
      y[4 * h + 2] = __uint_as_float(w[h].z), y[4 * h + 3] = __uint_as_float(w[h].w);
    }
    if (hp)
#pragma unroll
      for (int e = 0; e < 8; ++e) hp[e] = y[e];
    return cast8_f32<K>(y, this->scale, this->th, st);
  }
  __device__ std::uint8_t cast_one(std::int64_t i, LocalStats& st) const { return this->cast_value(in[i], st); }
};

// FP8 bytes moved as they are (the transpose of an FP8 tensor another kernel wrote).
struct CopyFp8Op {
  using Raw = uint2;
  static constexpr int kStreams = 1, kVecBytes = 8;
  static constexpr bool kStats = false;
  const std::uint8_t* in;
  __device__ void setup() {}
  __device__ const void* stream(int) const { return in; }
  __device__ Raw load(std::int64_t i) const { return *reinterpret_cast<const uint2*>(in + i); }
  __device__ uint2 cast(const Raw& r, MagnitudeStats&, float*) const { return r; }
  __device__ std::uint8_t cast_one(std::int64_t i, LocalStats&) const { return in[i]; }
};

// Whether an op has the optional side output / extra input (C++17: the CUDA sources build as
// C++17).
template <class Op, class = void>
struct HasSide : std::false_type {};
template <class Op>
struct HasSide<Op, std::void_t<decltype(std::declval<const Op&>().side(0, std::declval<const typename Op::Raw&>()))>> : std::true_type {};
template <class Op, class = void>
struct ExtraOf : std::false_type {
  using type = char;  // unused
};
template <class Op>
struct ExtraOf<Op, std::void_t<typename Op::Extra>> : std::true_type {
  using type = typename Op::Extra;
};

// The vector loop's body: the vectors at first, first + stride, ... below end (element
// indices, multiples of 8), four vectors' loads in flight per thread.
template <class Op>
__device__ __forceinline__ void vector_cast_range(const Op& op, std::uint8_t* out, std::int64_t first, std::int64_t end,
                                                  std::int64_t stride, MagnitudeStats& fast) {
  for (std::int64_t base = first; base < end; base += 4 * stride) {
    typename Op::Raw raw[4];
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (base + j * stride < end) raw[j] = op.load(base + j * stride);
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (base + j * stride < end) {
        *reinterpret_cast<uint2*>(out + base + j * stride) = op.cast(raw[j], fast, nullptr);
        if constexpr (HasSide<Op>::value) op.side(base + j * stride, raw[j]);
      }
  }
}

// Most blocks a vector or tile loop launches (cast_blocks) walk the tensor with a stride.
template <class Op>
__global__ void __launch_bounds__(256, 4) vector_cast_kernel(Op op, std::uint8_t* out, std::int64_t n, CastStats* stats) {
  op.setup();
  MagnitudeStats fast;
  LocalStats st;
  const std::int64_t n8 = n / 8 * 8, stride = std::int64_t(gridDim.x) * blockDim.x * 8;
  vector_cast_range(op, out, (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) * 8, n8, stride, fast);
  if (blockIdx.x == 0 && threadIdx.x == 0)
    for (std::int64_t i = n8; i < n; ++i) {
      out[i] = op.cast_one(i, st);
      if constexpr (HasSide<Op>::value) op.side_one(i);
    }
  if (Op::kStats) flush_block(merged(st, fast.local()), stats);
}

constexpr int kTile = kCastTile, kTileThreads = 256;
constexpr int kTileStride = kTile + 4;  // 68-byte rows: 8 rows apart land in different banks

// Stages of the tile loop's input copies, and the dynamic shared memory they take.
template <class Op>
__host__ __device__ constexpr int tile_stages() {
  return Op::kStreams == 1 ? 3 : 2;
}
template <class Op>
__host__ __device__ constexpr int tile_stage_bytes() {
  return Op::kStreams * (kTile * kTile / 8) * Op::kVecBytes;
}
template <class Op>
__host__ __device__ constexpr int tile_smem_bytes() {
  return tile_stages<Op>() * tile_stage_bytes<Op>();
}

// The tile coordinates of t, t + step, t + 2 step, ... (row-major tiles, tiles_x per row),
// one division at the start instead of one per tile.
struct TileWalk {
  int row, col, drow, dcol, tiles_x;
  __device__ TileWalk(int t, int step, int tiles_x_)
      : row(t / tiles_x_), col(t % tiles_x_), drow(step / tiles_x_), dcol(step % tiles_x_), tiles_x(tiles_x_) {}
  __device__ void next() {
    col += dcol, row += drow;
    if (col >= tiles_x) col -= tiles_x, ++row;
  }
};

// Whether an op's streams share 32-byte sectors (kStreamsShareSectors), so that the tile loop
// copies them through L1.
template <class Op, class = void>
struct SharesSectors : std::false_type {};
template <class Op>
struct SharesSectors<Op, std::void_t<decltype(Op::kStreamsShareSectors)>> : std::bool_constant<Op::kStreamsShareSectors> {};

// Whether an op has the optional offset / begin_tile.
template <class Op, class = void>
struct HasOffset : std::false_type {};
template <class Op>
struct HasOffset<Op, std::void_t<decltype(std::declval<const Op&>().offset(0, 0, 0))>> : std::true_type {};
template <class Op, class = void>
struct HasBeginTile : std::false_type {};
template <class Op>
struct HasBeginTile<Op, std::void_t<decltype(std::declval<Op&>().begin_tile(0))>> : std::true_type {};

// Element of input s behind output element (r, c) of matrix `mat` (see offset above).
template <class Op>
__device__ __forceinline__ std::int64_t input_element(const Op& op, int s, std::int64_t mat, int r, int c, int cols) {
  if constexpr (HasOffset<Op>::value)
    return op.offset(s, r, c);
  else
    return mat + std::int64_t(r) * cols + c;
}

// Transposes a 4x4 block of bytes: a[j] holds row j (byte k = column k); a[k] becomes column
// k (byte j = row j). Eight byte permutes.
__device__ __forceinline__ void transpose4x4(unsigned (&a)[4]) {
  const unsigned t0 = __byte_perm(a[0], a[1], 0x5140), t1 = __byte_perm(a[0], a[1], 0x7362);
  const unsigned t2 = __byte_perm(a[2], a[3], 0x5140), t3 = __byte_perm(a[2], a[3], 0x7362);
  a[0] = __byte_perm(t0, t2, 0x5410), a[1] = __byte_perm(t0, t2, 0x7632);
  a[2] = __byte_perm(t1, t3, 0x5410), a[3] = __byte_perm(t1, t3, 0x7632);
}

// The tile loop of one matrix: the body of the kernels below. The block takes tiles first,
// first + step, ... (row-major tile order; blockIdx.x and gridDim.x where the blocks of the
// launch's x dimension share the matrix). out or out_t may be null (only the other copy is
// written). Rows and columns multiples of 8 (the vectors never straddle the matrix edge); `mat`
// is the matrix's first element in in, out and out_t (a batch of matrices).
// bias_partial[row tile][column]: the column sums of one 64-row tile, each written by exactly
// one block (reduce them with column_sum_add in a fixed order: the bias gradient does not
// depend on scheduling). Launch with tile_smem_bytes<Op>() of dynamic shared memory.
template <class Op, bool kBias>
__device__ __forceinline__ void tile_cast_transpose_tiles(Op op, std::uint8_t* out, std::uint8_t* out_t, float* bias_partial, int rows,
                                                          int cols, CastStats* stats, std::int64_t mat, int first, int step) {
  constexpr int kStages = tile_stages<Op>(), kStageBytes = tile_stage_bytes<Op>(), kVB = Op::kVecBytes;
  constexpr int kVecs = kTile * kTile / 8;  // vectors per tile
  using Vec = std::conditional_t<kVB == 16, uint4, uint2>;
  static_assert(sizeof(typename Op::Raw) == Op::kStreams * kVB, "Raw is the op's input vectors, stream after stream");
  static_assert(kTileThreads == (kTile / 4) * (kTile / 4), "the transposed store gives each thread one 4x4 block");
  extern __shared__ __align__(16) unsigned char staged[];  // [kStages][kStreams][kVecs][kVB]
  __shared__ __align__(16) std::uint8_t tile[kTile * kTileStride];
  __shared__ float warp_sums[kBias ? kTileThreads / 32 : 1][kTile];
  op.setup();
  if (out_t) out_t += mat;
  if (out) out += mat;
  MagnitudeStats st;
  const int tiles_x = (cols + kTile - 1) / kTile, tiles_y = (rows + kTile - 1) / kTile, tiles = tiles_x * tiles_y;
  // A thread owns columns tc..tc+7 of rows tr and tr + 32 of a tile; it copies its own
  // vectors into its own staging slots and reads only those, so a slot needs no barrier.
  const int tr = threadIdx.x / 8, tc = (threadIdx.x % 8) * 8, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // For the transposed store it owns the 4x4 block at rows 4 * br, columns 4 * bc: the 16
  // lanes with one bc write 64 consecutive bytes of a transposed row.
  const int br = threadIdx.x % 16, bc = threadIdx.x / 16;
  auto slot = [&](int stage, int s, int k) { return staged + stage * kStageBytes + (s * kVecs + threadIdx.x + kTileThreads * k) * kVB; };
  // Starts copying the tile at `w` into `stage`; commits a group even when there is no tile,
  // so that the group count (and the wait below) stays the same on every pass.
  auto issue = [&](const TileWalk& w, int stage) {
    if (w.row < tiles_y) {
      const int r0 = w.row * kTile, c = w.col * kTile + tc;
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const int r = r0 + tr + 32 * k;
        if (r < rows && c < cols) {
#pragma unroll
          for (int s = 0; s < Op::kStreams; ++s) {
            const void* src = static_cast<const unsigned char*>(op.stream(s)) + input_element(op, s, mat, r, c, cols) * (kVB / 8);
            if constexpr (kVB == 16 && SharesSectors<Op>::value)
              core::cp_async16_l1(slot(stage, s, k), src);
            else if constexpr (kVB == 16)
              core::cp_async16(slot(stage, s, k), src);
            else
              core::cp_async8(slot(stage, s, k), src);
          }
        }
      }
    }
    core::cp_commit();
  };
  TileWalk ahead(first, step, tiles_x), cur(first, step, tiles_x);
#pragma unroll
  for (int p = 0; p < kStages - 1; ++p) issue(ahead, p), ahead.next();
  int stage = 0, refill = kStages - 1;  // the stage read this pass, the stage the next copy goes to
  for (int t = first; t < tiles; t += step, cur.next()) {
    const int r0 = cur.row * kTile, c0 = cur.col * kTile;
    if constexpr (HasBeginTile<Op>::value) op.begin_tile(c0);
    typename ExtraOf<Op>::type extra[2];
    if constexpr (ExtraOf<Op>::value)
#pragma unroll
      for (int k = 0; k < 2; ++k)
        if (r0 + tr + 32 * k < rows && c0 + tc < cols) extra[k] = op.extra(mat + std::int64_t(r0 + tr + 32 * k) * cols + c0 + tc);
    core::cp_wait<kStages - 2>();  // this tile's group (issued kStages - 1 passes ago) has landed
    float colsum[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int r = r0 + tr + 32 * k, c = c0 + tc;
      uint2 q = make_uint2(0, 0);
      if (r < rows && c < cols) {
        typename Op::Raw raw;
#pragma unroll
        for (int s = 0; s < Op::kStreams; ++s) reinterpret_cast<Vec*>(&raw)[s] = *reinterpret_cast<const Vec*>(slot(stage, s, k));
        float hp[8];
        if constexpr (ExtraOf<Op>::value)
          q = op.cast(raw, extra[k], st, kBias ? hp : nullptr);
        else
          q = op.cast(raw, st, kBias ? hp : nullptr);
        if constexpr (HasSide<Op>::value) op.side(mat + std::int64_t(r) * cols + c, raw);
        if (kBias)
#pragma unroll
          for (int e = 0; e < 8; ++e) colsum[e] += hp[e];
        if (out) *reinterpret_cast<uint2*>(out + std::int64_t(r) * cols + c) = q;
      }
      // Two 4-byte stores: a 68-byte tile row is only 4-byte aligned.
      *reinterpret_cast<std::uint32_t*>(&tile[(tr + 32 * k) * kTileStride + tc]) = q.x;
      *reinterpret_cast<std::uint32_t*>(&tile[(tr + 32 * k) * kTileStride + tc + 4]) = q.y;
    }
    // The slots just read are consumed (the cast used them): refill the stage read last pass.
    issue(ahead, refill);
    ahead.next();
    stage = stage + 1 == kStages ? 0 : stage + 1;
    refill = refill + 1 == kStages ? 0 : refill + 1;
    if (kBias) {  // the 4 rows of this warp with the same columns: lanes 8 and 16 apart
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        colsum[e] += __shfl_xor_sync(0xffffffffu, colsum[e], 8);
        colsum[e] += __shfl_xor_sync(0xffffffffu, colsum[e], 16);
      }
      if (lane < 8)
#pragma unroll
        for (int e = 0; e < 8; ++e) warp_sums[kBias ? warp : 0][tc + e] = colsum[e];
    }
    __syncthreads();
    {  // four 4-byte rows of the tile in, four 4-byte rows of the transpose out
      const int r = r0 + 4 * br, c = c0 + 4 * bc;
      unsigned a[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) a[j] = *reinterpret_cast<const unsigned*>(&tile[(4 * br + j) * kTileStride + 4 * bc]);
      transpose4x4(a);
      if (out_t && r < rows)
#pragma unroll
        for (int k = 0; k < 4; ++k)
          if (c + k < cols) *reinterpret_cast<unsigned*>(out_t + std::int64_t(c + k) * rows + r) = a[k];
    }
    if (kBias && threadIdx.x < kTile && c0 + int(threadIdx.x) < cols) {
      float sum = 0;
#pragma unroll
      for (int w = 0; w < kTileThreads / 32; ++w) sum += warp_sums[w][threadIdx.x];
      bias_partial[std::int64_t(r0 / kTile) * cols + c0 + threadIdx.x] = sum;
    }
    __syncthreads();  // the tile and the sums are refilled by the next pass
  }
  core::cp_wait<0>();  // no copy outlives the block
  if (Op::kStats) flush_block(st.local(), stats);
}

// blockIdx.z is the matrix of a batch (bias_partial only with one matrix).
template <class Op, bool kBias>
__global__ void __launch_bounds__(kTileThreads, 4)
    tile_cast_transpose_kernel(Op op, std::uint8_t* out, std::uint8_t* out_t, float* bias_partial, int rows, int cols, CastStats* stats) {
  if constexpr (kBias) core::allow_dependent_launch();  // column_sum_add's blocks may start and wait
  tile_cast_transpose_tiles<Op, kBias>(op, out, out_t, bias_partial, rows, cols, stats, std::int64_t(blockIdx.z) * rows * cols,
                                       int(blockIdx.x), int(gridDim.x));
}

// Blocks for the tile loop: every tile when there are few, else kMaxCastBlocks (over the batch).
inline unsigned tile_cast_grid(int rows, int cols, int batch) {
  const std::int64_t tiles = cast_tiles(rows, cols);
  const std::int64_t cap = kMaxCastBlocks / batch > 1 ? kMaxCastBlocks / batch : 1;
  return unsigned(tiles < cap ? tiles : cap);
}

// Launches the tile loop over `batch` matrices (bias_partial only with one).
template <class Op, bool kBias>
void launch_tile_cast_transpose(const Op& op, std::uint8_t* out, std::uint8_t* out_t, float* bias_partial, int rows, int cols,
                                CastStats* stats, cudaStream_t s, int batch = 1) {
  const dim3 grid(tile_cast_grid(rows, cols, batch), 1, unsigned(batch));
  constexpr int smem = tile_smem_bytes<Op>();
  if constexpr (smem > 40 * 1024)  // with the static tile, over the 48 KB a block gets unasked
    core::allow_dynamic_smem(tile_cast_transpose_kernel<Op, kBias>, smem);
  tile_cast_transpose_kernel<Op, kBias><<<grid, kTileThreads, tile_smem_bytes<Op>(), s>>>(op, out, out_t, bias_partial, rows, cols, stats);
}

}  // namespace fp8scope::fp8
