// LayerNorm and RMSNorm (Llama) over C channels (C % 8 == 0, C <= 8192): a warp per row up to
// C = 2048, a block per row above; statistics in FP32. The forward pass writes BF16, or FP8 with
// the cast's statistics (the fused variant's LayerNormLinear). RMSNorm is LayerNorm without the
// mean (m = 0: rstd = 1 / sqrt(mean(x^2) + eps)) and without a bias, one template flag (kRms)
// through the same kernels; its backward drops the mean term of the input gradient and the
// bias gradient.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/fp8/cast_kernels.cuh"
#include "fp8scope/gpu_model/kernels.cuh"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

namespace fp8scope::gpu_model {
namespace {

constexpr float kEps = 1e-5f;
// A warp per row for C <= 256 * kMaxVec = 2048 (GPT-2 large and XL, Llama's 2048): a block per
// row walked such rows one at a time with up to 96 of its 256 threads idle (1280, 1600) and
// measured 1.5-1.7x slower per byte than the warps at 768 (train_sizes, an H200); the warps run
// 1.1-1.65x faster than it at 1280 and 1600 (results/h100/bench_norms_loss.json).
constexpr int kMaxVec = 8;
constexpr int kMaxRowWidth = 8192;  // a block per row above that: 256 threads of up to 4 x 8 channels

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Eight channels of a row normalised, (x - m) * r * w + b, written at element i of out (BF16)
// or of out8 (FP8 of kind K times scale, the cast's statistics into st): the last step of both
// forward kernels.
template <bool kRms, bool kFp8, class K>
__device__ __forceinline__ void normalise8(bf16* out, std::uint8_t* out8, std::int64_t i, const uint4& x, const bf16* w, const bf16* b,
                                           float m, float r, float scale, const fp8::CastThresholds& th, fp8::MagnitudeStats& st) {
  float xv[8], wv[8], bv[8] = {}, y[8];
  fp8::unpack8(x, xv);
  fp8::unpack8(*reinterpret_cast<const uint4*>(w), wv);
  if (!kRms) fp8::unpack8(*reinterpret_cast<const uint4*>(b), bv);
#pragma unroll
  for (int e = 0; e < 8; ++e) y[e] = (xv[e] - m) * r * wv[e] + bv[e];
  if (kFp8) {
    *reinterpret_cast<uint2*>(out8 + i) = fp8::cast8_f32<K>(y, scale, th, st);
  } else {
    uint4 res;
    bf16* ov = reinterpret_cast<bf16*>(&res);
#pragma unroll
    for (int e = 0; e < 8; ++e) ov[e] = __float2bfloat16(y[e]);
    *reinterpret_cast<uint4*>(out + i) = res;
  }
}

// Forward: one warp per row, each lane owns 8 consecutive channels per 256 (16-byte loads;
// C % 8 == 0, C <= 256 * kVecs), x read once into registers. kFp8: write out8 (y * scale in
// FP8 of format and overflow mode K, with the cast's statistics) instead of out (BF16). The
// loop over rows is a grid stride so that every thread reaches the flush, which needs the
// whole block. Rows of more than 1024 channels hold twice the registers (this row and the
// next), so two blocks per SM instead of four.
template <int kVecs, bool kRms, bool kFp8, class K>
__global__ void __launch_bounds__(256, kVecs <= 4 ? 4 : 2)
    layernorm_forward_vec_kernel(bf16* out, std::uint8_t* out8, float* mean, float* rstd, const bf16* inp, const bf16* w, const bf16* b,
                                 int N, int C, const float* scale_ptr, fp8::CastStats* stats) {
  const int lane = threadIdx.x % 32, rows_per_block = blockDim.x / 32;
  const float scale = kFp8 ? *scale_ptr : 0.0f;
  const fp8::CastThresholds th = kFp8 ? fp8::cast_thresholds(scale, K::format) : fp8::CastThresholds{};
  fp8::MagnitudeStats st;
  // The row stays packed (BF16) in registers and is unpacked for each pass: half the registers
  // of FP32 copies. A warp that walks several rows (the FP8 launch's capped grid) loads the
  // next row while it normalises this one.
  const int stride = gridDim.x * rows_per_block;
  uint4 next[kVecs];
  auto load_row = [&](int row) {
#pragma unroll
    for (int j = 0; j < kVecs; ++j)
      if ((lane + 32 * j) * 8 < C) next[j] = *reinterpret_cast<const uint4*>(inp + std::int64_t(row) * C + (lane + 32 * j) * 8);
  };
  int row = blockIdx.x * rows_per_block + threadIdx.x / 32;
  if (row < N) load_row(row);
  for (; row < N; row += stride) {
    const std::int64_t base = std::int64_t(row) * C;
    uint4 xr[kVecs];
#pragma unroll
    for (int j = 0; j < kVecs; ++j) xr[j] = next[j];
    if (row + stride < N) load_row(row + stride);
    float s = 0;
    if (!kRms)
#pragma unroll
      for (int j = 0; j < kVecs; ++j) {
        const int c0 = (lane + 32 * j) * 8;
        if (c0 < C) {
          float v[8];
          fp8::unpack8(xr[j], v);
#pragma unroll
          for (int e = 0; e < 8; ++e) s += v[e];
        }
      }
    const float m = kRms ? 0.0f : warp_sum(s) / C;
    float var = 0;
#pragma unroll
    for (int j = 0; j < kVecs; ++j)
      if ((lane + 32 * j) * 8 < C) {
        float v[8];
        fp8::unpack8(xr[j], v);
#pragma unroll
        for (int e = 0; e < 8; ++e) var += (v[e] - m) * (v[e] - m);
      }
    const float r = rsqrtf(warp_sum(var) / C + kEps);
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      const int c0 = (lane + 32 * j) * 8;
      if (c0 >= C) continue;
      normalise8<kRms, kFp8, K>(out, out8, base + c0, xr[j], w + c0, b + c0, m, r, scale, th, st);
    }
    if (lane == 0) {
      if (!kRms) mean[row] = m;
      rstd[row] = r;
    }
  }
  if (kFp8) fp8::flush_block(st.local(), stats);
}

// Checked before any GPU work by check_train_point; a direct caller that breaks it stops here.
void check_width(int C) {
  if (C % 8 != 0 || C > kMaxRowWidth) {
    fprintf(stderr, "layernorm: C=%d must be a multiple of 8 and at most %d\n", C, kMaxRowWidth);
    abort();
  }
}

// Wider rows (C > 256 * kMaxVec): a block of 256 threads per row, each thread owning kV
// 8-channel vectors (16-byte loads) at channels 8 (t + 256 j), so C <= 2048 kV (kV <= 4: 8192).
// The row's mean and variance are block sums: warp shuffles, then the warps' partials in shared
// memory summed by every thread in the same order (deterministic). A block walks rows with a
// grid stride so that the FP8 launch flushes its statistics once.
constexpr int kRowThreads = 256;

__device__ float block_sum(float v, float* partials) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_sum(v);
  __syncthreads();  // the previous call's partials have been read by every thread
  if (lane == 0) partials[warp] = v;
  __syncthreads();
  float total = 0;
#pragma unroll
  for (int k = 0; k < kRowThreads / 32; ++k) total += partials[k];
  return total;
}

template <int kV, bool kRms, bool kFp8, class K>
__global__ void __launch_bounds__(kRowThreads)
    layernorm_forward_row_kernel(bf16* out, std::uint8_t* out8, float* mean, float* rstd, const bf16* inp, const bf16* w, const bf16* b,
                                 int N, int C, const float* scale_ptr, fp8::CastStats* stats) {
  __shared__ float partials[kRowThreads / 32];
  const float scale = kFp8 ? *scale_ptr : 0.0f;
  const fp8::CastThresholds th = kFp8 ? fp8::cast_thresholds(scale, K::format) : fp8::CastThresholds{};
  fp8::MagnitudeStats st;
  for (int row = blockIdx.x; row < N; row += gridDim.x) {
    const std::int64_t base = std::int64_t(row) * C;
    uint4 xr[kV];
#pragma unroll
    for (int j = 0; j < kV; ++j) {
      const int c0 = (threadIdx.x + kRowThreads * j) * 8;
      xr[j] = c0 < C ? *reinterpret_cast<const uint4*>(inp + base + c0) : make_uint4(0, 0, 0, 0);  // zeros: BF16 0.0
    }
    float s = 0;
    if (!kRms)
#pragma unroll
      for (int j = 0; j < kV; ++j) {
        float v[8];
        fp8::unpack8(xr[j], v);
#pragma unroll
        for (int e = 0; e < 8; ++e) s += v[e];
      }
    const float m = kRms ? 0.0f : block_sum(s, partials) / C;
    float var = 0;
#pragma unroll
    for (int j = 0; j < kV; ++j)
      if ((threadIdx.x + kRowThreads * j) * 8 < C) {
        float v[8];
        fp8::unpack8(xr[j], v);
#pragma unroll
        for (int e = 0; e < 8; ++e) var += (v[e] - m) * (v[e] - m);
      }
    const float r = rsqrtf(block_sum(var, partials) / C + kEps);
#pragma unroll
    for (int j = 0; j < kV; ++j) {
      const int c0 = (threadIdx.x + kRowThreads * j) * 8;
      if (c0 >= C) continue;
      normalise8<kRms, kFp8, K>(out, out8, base + c0, xr[j], w + c0, b + c0, m, r, scale, th, st);
    }
    if (threadIdx.x == 0) {
      if (!kRms) mean[row] = m;
      rstd[row] = r;
    }
  }
  if (kFp8) fp8::flush_block(st.local(), stats);
}

// kV for a wide row: ceil(C / 2048).
int row_vectors(int C) { return (C + kRowThreads * 8 - 1) / (kRowThreads * 8); }

// kVecs for a warp's row: ceil(C / 256), 1 .. kMaxVec.
template <class Fn>
void with_warp_vectors(int C, Fn fn) {
  switch ((C + 255) / 256) {
    case 1: fn(std::integral_constant<int, 1>{}); return;
    case 2: fn(std::integral_constant<int, 2>{}); return;
    case 3: fn(std::integral_constant<int, 3>{}); return;
    case 4: fn(std::integral_constant<int, 4>{}); return;
    case 5: fn(std::integral_constant<int, 5>{}); return;
    case 6: fn(std::integral_constant<int, 6>{}); return;
    case 7: fn(std::integral_constant<int, 7>{}); return;
    default: fn(std::integral_constant<int, 8>{}); return;
  }
}

template <class Fn>
void with_row_vectors(int C, Fn fn) {
  switch (row_vectors(C)) {
    case 1: fn(std::integral_constant<int, 1>{}); return;  // NormKernel::block_per_row only
    case 2: fn(std::integral_constant<int, 2>{}); return;
    case 3: fn(std::integral_constant<int, 3>{}); return;
    default: fn(std::integral_constant<int, 4>{}); return;
  }
}

template <bool kRms, bool kFp8, class K>
void launch_forward(bf16* out, std::uint8_t* out8, float* mean, float* rstd, const bf16* inp, const bf16* w, const bf16* b, int N, int C,
                    const float* scale, fp8::CastStats* stats, cudaStream_t s, NormKernel kind = NormKernel::automatic) {
  const int rows_per_block = 8;
  // BF16: a warp per row. FP8: at most kMaxCastBlocks blocks (one statistics flush each; a
  // flush per 8 rows made the FP8 launch slower), the warps walking rows with the next row's
  // loads in flight.
  const unsigned grid = kFp8 ? fp8::cast_blocks(N, rows_per_block) : unsigned((N + rows_per_block - 1) / rows_per_block);
  const unsigned threads = 32 * rows_per_block;
  check_width(C);
  if (C > 256 * kMaxVec || kind == NormKernel::block_per_row) {
    const unsigned row_grid = kFp8 ? fp8::cast_blocks(N, 1) : unsigned(std::min(N, 64 * 1024));
    with_row_vectors(C, [&](auto kv) {
      layernorm_forward_row_kernel<decltype(kv)::value, kRms, kFp8, K>
          <<<row_grid, kRowThreads, 0, s>>>(out, out8, mean, rstd, inp, w, b, N, C, scale, stats);
    });
    return;
  }
  with_warp_vectors(C, [&](auto kv) {
    layernorm_forward_vec_kernel<decltype(kv)::value, kRms, kFp8, K>
        <<<grid, threads, 0, s>>>(out, out8, mean, rstd, inp, w, b, N, C, scale, stats);
  });
}

// Backward. A warp per row, each lane owning 8 consecutive channels per 256 (16-byte loads;
// C % 8 == 0, C <= 256 * kMaxVec). A fixed grid of blocks walks the rows with a warp stride,
// every warp loading its next row (input, gradient, residual gradient, statistics) while it
// works on this one. The dw/db sums of a warp's rows live in its own slice of shared memory, not
// in registers, which go to the two rows in flight (in registers the sums held a warp to one
// row at a time and the SM to 16 warps: 41 us for 16384 x 768 on an H200). At the end the
// warps' slices are summed in a fixed order into one partial per block, which
// column_sum_add_split reduces in a fixed order: no float atomics, the same result on every run.
constexpr int kBwdWarps = 8;
// Fixed, so that the summation order (and the bits) do not depend on the GPU: two blocks per SM
// of an H100 / H200 (the registers of two rows in flight allow two 256-thread blocks up to 1280
// channels; one for wider rows, whose blocks then run in two waves).
constexpr int kBwdMaxBlocks = 264;

// Shared memory holds per-channel values in 256-channel groups laid out [h][lane][4]: lane L's
// channels 8L + 4h .. 8L + 4h + 3, so that a warp's 16-byte accesses (lane stride 16 bytes) fall
// in distinct banks. A lane's 8 channels of group j start at group + 4 * lane, the second four
// 128 floats further. The weights are one set of groups, a warp's sums two per group (dw, db).
__device__ __forceinline__ int group_offset(int c) { return c % 8 / 4 * 128 + c / 8 % 32 * 4 + c % 4; }
__device__ __forceinline__ int weight_slot(int c) { return c / 256 * 256 + group_offset(c); }
__device__ __forceinline__ int sum_slot(int c, int part) { return (c / 256 * 2 + part) * 256 + group_offset(c); }

__device__ __forceinline__ void load8_halves(const float* p, float* out) {
  const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 128);
  out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
}

// kVecs = ceil(C / 256): the register arrays hold exactly what a lane needs. Rows of more than
// 1024 channels prefetch only x and dout a row ahead. Up to 1280 channels two blocks fit an SM
// (kVecs = 5 at 128 registers, no spills; at the 145 the compiler took unbounded, one block of
// 8 warps an SM ran kBwdMaxBlocks in two waves), which read the residual gradient where they
// update it; wider rows run one block per SM, with the registers to load this row's residual
// gradient whole before the row's reductions (kLoadResidualFirst): read where it is updated,
// each vector's load sits behind that vector's bounds check, and the PTX keeps one load
// latency per vector in turn (seven a row at 1600 channels, eight at 2048) with only 8 warps an
// SM to cover them.
template <int kVecs, bool kRms>
__global__ void __launch_bounds__(kBwdWarps * 32, kVecs <= 5 ? 2 : 1)
    layernorm_backward_kernel(bf16* dinp, float* partial, const bf16* dout, const bf16* inp, const bf16* w, const float* mean,
                              const float* rstd, int N, int C) {
  constexpr bool kPrefetchResidual = kVecs <= 4, kLoadResidualFirst = kVecs >= 6;
  // [kVecs * 256] weights (part 0 of the layout), then [kBwdWarps][kVecs * 512] dw and db sums.
  core::allow_dependent_launch();  // column_sum_add_split's blocks may start and wait
  extern __shared__ float shared[];
  float* ws = shared;
  float* sums = shared + kVecs * 256;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int c = threadIdx.x; c < C; c += blockDim.x) ws[weight_slot(c)] = __bfloat162float(w[c]);
  for (int i = threadIdx.x; i < kBwdWarps * kVecs * 512; i += blockDim.x) sums[i] = 0.0f;
  __syncthreads();
  float* my = sums + warp * kVecs * 512;

  const int stride = gridDim.x * kBwdWarps;
  uint4 nx[kVecs], ng[kVecs], nd[kVecs];
  float nm = 0, nr = 0;
  auto load_row = [&](int row) {
    const std::int64_t base = std::int64_t(row) * C;
    nm = kRms ? 0.0f : mean[row];
    nr = rstd[row];
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      const int c0 = (lane + 32 * j) * 8;
      if (c0 < C) {
        nx[j] = *reinterpret_cast<const uint4*>(inp + base + c0);
        ng[j] = *reinterpret_cast<const uint4*>(dout + base + c0);
        if (kPrefetchResidual) nd[j] = *reinterpret_cast<const uint4*>(dinp + base + c0);
      }
    }
  };
  int row = blockIdx.x * kBwdWarps + warp;
  if (row < N) load_row(row);
  for (; row < N; row += stride) {
    uint4 x[kVecs], g[kVecs], d[kVecs];
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      x[j] = nx[j], g[j] = ng[j];
      if (kPrefetchResidual) d[j] = nd[j];
    }
    const float m = nm, r = nr;
    if (row + stride < N) load_row(row + stride);
    if constexpr (kLoadResidualFirst) {
      const std::int64_t base = std::int64_t(row) * C;
#pragma unroll
      for (int j = 0; j < kVecs; ++j)
        if ((lane + 32 * j) * 8 < C) d[j] = *reinterpret_cast<const uint4*>(dinp + base + (lane + 32 * j) * 8);
    }

    float dnorm_mean = 0, dnorm_norm_mean = 0;
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      if ((lane + 32 * j) * 8 >= C) continue;
      float xv[8], gv[8], wv[8];
      fp8::unpack8(x[j], xv);
      fp8::unpack8(g[j], gv);
      load8_halves(ws + j * 256 + 4 * lane, wv);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float dnorm = wv[e] * gv[e];
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * (xv[e] - m) * r;
      }
    }
    dnorm_mean = kRms ? 0.0f : warp_sum(dnorm_mean) / C;
    dnorm_norm_mean = warp_sum(dnorm_norm_mean) / C;

    const std::int64_t base = std::int64_t(row) * C;
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      const int c0 = (lane + 32 * j) * 8;
      if (c0 >= C) continue;
      float xv[8], gv[8], dv[8], wv[8], sw[8], sb[8];
      fp8::unpack8(x[j], xv);
      fp8::unpack8(g[j], gv);
      fp8::unpack8(kPrefetchResidual || kLoadResidualFirst ? d[j] : *reinterpret_cast<const uint4*>(dinp + base + c0), dv);
      load8_halves(ws + j * 256 + 4 * lane, wv);
      float* pw = my + (j * 2) * 256 + 4 * lane;
      float* pb = my + (j * 2 + 1) * 256 + 4 * lane;
      load8_halves(pw, sw);
      load8_halves(pb, sb);
      uint4 res;
      bf16* o = reinterpret_cast<bf16*>(&res);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float norm = (xv[e] - m) * r;
        sw[e] += norm * gv[e];
        sb[e] += gv[e];
        o[e] = __float2bfloat16(dv[e] + (wv[e] * gv[e] - dnorm_mean - norm * dnorm_norm_mean) * r);
      }
      *reinterpret_cast<float4*>(pw) = make_float4(sw[0], sw[1], sw[2], sw[3]);
      *reinterpret_cast<float4*>(pw + 128) = make_float4(sw[4], sw[5], sw[6], sw[7]);
      *reinterpret_cast<float4*>(pb) = make_float4(sb[0], sb[1], sb[2], sb[3]);
      *reinterpret_cast<float4*>(pb + 128) = make_float4(sb[4], sb[5], sb[6], sb[7]);
      *reinterpret_cast<uint4*>(dinp + base + c0) = res;
    }
  }
  __syncthreads();
  // One partial per block, [dw (C) | db (C)], the warps added in a fixed order.
  for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) {
    const int slot = c < C ? sum_slot(c, 0) : sum_slot(c - C, 1);
    float s = 0;
    for (int k = 0; k < kBwdWarps; ++k) s += sums[k * kVecs * 512 + slot];
    partial[std::int64_t(blockIdx.x) * 2 * C + c] = s;
  }
}

int backward_blocks(int N) { return std::min(kBwdMaxBlocks, (N + kBwdWarps - 1) / kBwdWarps); }

// Backward for wide rows (C > 256 * kMaxVec): the same fixed grid of blocks walks the rows, a
// block of 256 threads per row, each thread owning kV 8-channel vectors as in the forward. A
// thread keeps its channels' dw and db sums in registers over the rows it walks and writes
// them as the block's partial (the layout layernorm_backward_kernel writes), which
// column_sum_add_split reduces in a fixed order.
template <int kV, bool kRms>
__global__ void __launch_bounds__(kRowThreads)
    layernorm_backward_row_kernel(bf16* dinp, float* partial, const bf16* dout, const bf16* inp, const bf16* w, const float* mean,
                                  const float* rstd, int N, int C) {
  core::allow_dependent_launch();
  __shared__ float partials[kRowThreads / 32];
  float sw[kV][8] = {}, sb[kV][8] = {};
  for (int row = blockIdx.x; row < N; row += gridDim.x) {
    const std::int64_t base = std::int64_t(row) * C;
    const float m = kRms ? 0.0f : mean[row], r = rstd[row];
    uint4 x[kV], g[kV];
    float dnorm_sum = 0, dnorm_norm_sum = 0;
#pragma unroll
    for (int j = 0; j < kV; ++j) {
      const int c0 = (threadIdx.x + kRowThreads * j) * 8;
      if (c0 >= C) continue;
      x[j] = *reinterpret_cast<const uint4*>(inp + base + c0);
      g[j] = *reinterpret_cast<const uint4*>(dout + base + c0);
      float xv[8], gv[8], wv[8];
      fp8::unpack8(x[j], xv);
      fp8::unpack8(g[j], gv);
      fp8::unpack8(*reinterpret_cast<const uint4*>(w + c0), wv);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float dnorm = wv[e] * gv[e];
        dnorm_sum += dnorm;
        dnorm_norm_sum += dnorm * (xv[e] - m) * r;
      }
    }
    const float dnorm_mean = kRms ? 0.0f : block_sum(dnorm_sum, partials) / C, dnorm_norm_mean = block_sum(dnorm_norm_sum, partials) / C;
#pragma unroll
    for (int j = 0; j < kV; ++j) {
      const int c0 = (threadIdx.x + kRowThreads * j) * 8;
      if (c0 >= C) continue;
      float xv[8], gv[8], dv[8], wv[8];
      fp8::unpack8(x[j], xv);
      fp8::unpack8(g[j], gv);
      fp8::unpack8(*reinterpret_cast<const uint4*>(dinp + base + c0), dv);
      fp8::unpack8(*reinterpret_cast<const uint4*>(w + c0), wv);
      uint4 res;
      bf16* o = reinterpret_cast<bf16*>(&res);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float norm = (xv[e] - m) * r;
        sw[j][e] += norm * gv[e];
        sb[j][e] += gv[e];
        o[e] = __float2bfloat16(dv[e] + (wv[e] * gv[e] - dnorm_mean - norm * dnorm_norm_mean) * r);
      }
      *reinterpret_cast<uint4*>(dinp + base + c0) = res;
    }
  }
  float* p = partial + std::int64_t(blockIdx.x) * 2 * C;
#pragma unroll
  for (int j = 0; j < kV; ++j) {
    const int c0 = (threadIdx.x + kRowThreads * j) * 8;
    if (c0 >= C) continue;
#pragma unroll
    for (int e = 0; e < 8; ++e) p[c0 + e] = sw[j][e], p[C + c0 + e] = sb[j][e];
  }
}

template <int kVecs, bool kRms>
void launch_backward(bf16* dinp, float* scratch, const bf16* dout, const bf16* inp, const bf16* w, const float* mean, const float* rstd,
                     int N, int C, cudaStream_t s) {
  const int shared = (kVecs * 256 + kBwdWarps * kVecs * 512) * int(sizeof(float));  // 52 KB at C = 768: above the default 48
  core::allow_dynamic_smem(layernorm_backward_kernel<kVecs, kRms>, shared);
  layernorm_backward_kernel<kVecs, kRms><<<backward_blocks(N), kBwdWarps * 32, shared, s>>>(dinp, scratch, dout, inp, w, mean, rstd, N, C);
}

// Both norms' backward: dinp += ..., dw += ..., db += ... (LayerNorm; RMSNorm has no db: the
// partials' bias half is left unreduced).
template <bool kRms>
void backward(bf16* dinp, float* dw, float* db, float* scratch, const bf16* dout, const bf16* inp, const bf16* w, const float* mean,
              const float* rstd, int N, int C, cudaStream_t s, NormKernel kind = NormKernel::automatic) {
  check_width(C);
  if (C > 256 * kMaxVec || kind == NormKernel::block_per_row) {
    with_row_vectors(C, [&](auto kv) {
      layernorm_backward_row_kernel<decltype(kv)::value, kRms>
          <<<backward_blocks(N), kRowThreads, 0, s>>>(dinp, scratch, dout, inp, w, mean, rstd, N, C);
    });
  } else {
    with_warp_vectors(C, [&](auto kv) { launch_backward<decltype(kv)::value, kRms>(dinp, scratch, dout, inp, w, mean, rstd, N, C, s); });
  }
  if (kRms)
    column_sum_add(dw, scratch, backward_blocks(N), C, 2 * C, s);
  else
    column_sum_add_split(dw, db, C, scratch, backward_blocks(N), 2 * C, 2 * C, s);
}

using Unused = fp8::Kind<fp8::Format::e4m3, fp8::Overflow::satfinite>;  // no cast

}  // namespace

void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* w, const bf16* b, int N, int C, cudaStream_t s,
                       NormKernel kind) {
  launch_forward<false, false, Unused>(out, nullptr, mean, rstd, inp, w, b, N, C, nullptr, nullptr, s, kind);
}

void layernorm_forward_fp8(std::uint8_t* out, float* mean, float* rstd, const bf16* inp, const bf16* w, const bf16* b, int N, int C,
                           const float* scale, fp8::Format f, fp8::Overflow o, fp8::CastStats* stats, cudaStream_t s, NormKernel kind) {
  fp8::with_kind(
      f, o, [&](auto k) { launch_forward<false, true, decltype(k)>(nullptr, out, mean, rstd, inp, w, b, N, C, scale, stats, s, kind); });
}

std::int64_t layernorm_backward_scratch_floats(int N, int C) { return std::int64_t(backward_blocks(N)) * 2 * C; }

void layernorm_backward(bf16* dinp, float* dw, float* db, float* scratch, const bf16* dout, const bf16* inp, const bf16* w,
                        const float* mean, const float* rstd, int N, int C, cudaStream_t s, NormKernel kind) {
  backward<false>(dinp, dw, db, scratch, dout, inp, w, mean, rstd, N, C, s, kind);
}

void rmsnorm_forward(bf16* out, float* rstd, const bf16* inp, const bf16* w, int N, int C, cudaStream_t s) {
  launch_forward<true, false, Unused>(out, nullptr, nullptr, rstd, inp, w, nullptr, N, C, nullptr, nullptr, s);
}

void rmsnorm_forward_fp8(std::uint8_t* out, float* rstd, const bf16* inp, const bf16* w, int N, int C, const float* scale, fp8::Format f,
                         fp8::Overflow o, fp8::CastStats* stats, cudaStream_t s) {
  fp8::with_kind(
      f, o, [&](auto k) { launch_forward<true, true, decltype(k)>(nullptr, out, nullptr, rstd, inp, w, nullptr, N, C, scale, stats, s); });
}

void rmsnorm_backward(bf16* dinp, float* dw, float* scratch, const bf16* dout, const bf16* inp, const bf16* w, const float* rstd, int N,
                      int C, cudaStream_t s) {
  backward<true>(dinp, dw, nullptr, scratch, dout, inp, w, nullptr, rstd, N, C, s);
}

}  // namespace fp8scope::gpu_model
