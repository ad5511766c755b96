// LayerNorm over C channels, one warp per row; statistics in FP32. The forward pass writes
// BF16, or FP8 with the cast's statistics (the fused variant's LayerNormLinear).
#include "fp8scope/fp8/cast_kernels.cuh"
#include "fp8scope/model/kernels.cuh"

#include <cstdio>
#include <cstdlib>

namespace fp8scope::model {
namespace {

constexpr float kEps = 1e-5f;
constexpr int kMaxVec = 4;  // C <= 256 * kMaxVec = 1024

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Forward: one warp per row, each lane owns 8 consecutive channels per 256 (16-byte loads;
// C % 8 == 0, C <= 256 * kVecs), x read once into registers. kFp8: write out8 (y * scale in
// FP8 of format and overflow mode K, with the cast's statistics) instead of out (BF16). The
// loop over rows is a grid stride so that every thread reaches the flush, which needs the
// whole block.
template <int kVecs, bool kFp8, class K>
__global__ void __launch_bounds__(256, 4) layernorm_forward_vec_kernel(bf16* out, std::uint8_t* out8, float* mean, float* rstd, const bf16* inp, const bf16* w,
                                             const bf16* b, int N, int C, const float* scale_ptr, fp8::CastStats* stats) {
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
    const float m = warp_sum(s) / C;
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
      uint4 rw = *reinterpret_cast<const uint4*>(w + c0), rb = *reinterpret_cast<const uint4*>(b + c0);
      float xv[8], wv[8], bv[8];
      fp8::unpack8(xr[j], xv);
      fp8::unpack8(rw, wv);
      fp8::unpack8(rb, bv);
      float y[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) y[e] = (xv[e] - m) * r * wv[e] + bv[e];
      if (kFp8) {
        *reinterpret_cast<uint2*>(out8 + base + c0) = fp8::cast8_f32<K>(y, scale, th, st);
      } else {
        uint4 res;
        bf16* ov = reinterpret_cast<bf16*>(&res);
#pragma unroll
        for (int e = 0; e < 8; ++e) ov[e] = __float2bfloat16(y[e]);
        *reinterpret_cast<uint4*>(out + base + c0) = res;
      }
    }
    if (lane == 0) {
      mean[row] = m;
      rstd[row] = r;
    }
  }
  if (kFp8) fp8::flush_block(st.local(), stats);
}

// Checked before any GPU work by check_train_point; a direct caller that breaks it stops here.
void check_width(int C) {
  if (C % 8 != 0 || C > 256 * kMaxVec) {
    fprintf(stderr, "layernorm: C=%d must be a multiple of 8 and at most %d\n", C, 256 * kMaxVec);
    abort();
  }
}

template <bool kFp8, class K>
void launch_forward(bf16* out, std::uint8_t* out8, float* mean, float* rstd, const bf16* inp, const bf16* w, const bf16* b, int N, int C,
                    const float* scale, fp8::CastStats* stats, cudaStream_t s) {
  const int rows_per_block = 8;
  // BF16: a warp per row. FP8: at most kMaxCastBlocks blocks (one statistics flush each; a
  // flush per 8 rows made the FP8 launch slower), the warps walking rows with the next row's
  // loads in flight.
  const unsigned grid = kFp8 ? fp8::cast_blocks(N, rows_per_block) : unsigned((N + rows_per_block - 1) / rows_per_block);
  const unsigned threads = 32 * rows_per_block;
  check_width(C);
  switch ((C + 255) / 256) {
    case 1: layernorm_forward_vec_kernel<1, kFp8, K><<<grid, threads, 0, s>>>(out, out8, mean, rstd, inp, w, b, N, C, scale, stats); return;
    case 2: layernorm_forward_vec_kernel<2, kFp8, K><<<grid, threads, 0, s>>>(out, out8, mean, rstd, inp, w, b, N, C, scale, stats); return;
    case 3: layernorm_forward_vec_kernel<3, kFp8, K><<<grid, threads, 0, s>>>(out, out8, mean, rstd, inp, w, b, N, C, scale, stats); return;
    default: layernorm_forward_vec_kernel<4, kFp8, K><<<grid, threads, 0, s>>>(out, out8, mean, rstd, inp, w, b, N, C, scale, stats); return;
  }
}

// Backward. Each lane owns 8 consecutive channels per 256 (16-byte loads; C % 8 == 0,
// C <= 256 * kMaxVec) and keeps their dw/db partial sums in registers over the rows its warp
// walks; the warps of a block then sum in shared memory in a fixed order and write one
// partial per block, which column_sum_add reduces in a fixed order: no float atomics, so the
// result is the same on every run.
constexpr int kWarps = 4;
constexpr int kRowsPerBlock = 16;  // 1024 blocks at 16K rows: enough warps in flight to cover memory latency

__device__ __forceinline__ void load8(float* out, const bf16* p) {
  uint4 raw = *reinterpret_cast<const uint4*>(p);
  const bf16* v = reinterpret_cast<const bf16*>(&raw);
#pragma unroll
  for (int j = 0; j < 8; ++j) out[j] = __bfloat162float(v[j]);
}

template <int kVecs>  // ceil(C / 256): the register arrays hold exactly what a lane needs
__global__ void __launch_bounds__(kWarps * 32, kVecs <= 3 ? 4 : 3) layernorm_backward_kernel(bf16* dinp, float* partial, const bf16* dout, const bf16* inp, const bf16* w,
                                          const float* mean, const float* rstd, int N, int C) {
  extern __shared__ float shared[];  // [kWarps][2C]: dw then db; the weights first sit in [0, C)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // The weights live in shared memory, not registers: the registers go to loading a row's
  // input, gradient and residual gradient at once (one memory round trip per row).
  for (int c = threadIdx.x; c < C; c += blockDim.x) shared[kWarps * 2 * C + c] = __bfloat162float(w[c]);
  const float* ws = shared + kWarps * 2 * C;
  __syncthreads();
  float acc_w[kVecs][8], acc_b[kVecs][8];
#pragma unroll
  for (int j = 0; j < kVecs; ++j)
#pragma unroll
    for (int e = 0; e < 8; ++e) acc_w[j][e] = acc_b[j][e] = 0.0f;
  const int first = blockIdx.x * kRowsPerBlock;
  for (int row = first + warp; row < min(N, first + kRowsPerBlock); row += kWarps) {
    const std::int64_t base = std::int64_t(row) * C;
    const float m = mean[row], r = rstd[row];
    float xv[kVecs][8], gv[kVecs][8];
    uint4 dv[kVecs];
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      const int c0 = (lane + 32 * j) * 8;
      if (c0 < C) {
        load8(xv[j], inp + base + c0);
        load8(gv[j], dout + base + c0);
        dv[j] = *reinterpret_cast<const uint4*>(dinp + base + c0);
      }
    }
    float dnorm_mean = 0, dnorm_norm_mean = 0;
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      const int c0 = (lane + 32 * j) * 8;
      if (c0 < C) {
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          xv[j][e] = (xv[j][e] - m) * r;  // the normalised input
          const float dnorm = ws[c0 + e] * gv[j][e];
          dnorm_mean += dnorm;
          dnorm_norm_mean += dnorm * xv[j][e];
        }
      }
    }
    dnorm_mean = warp_sum(dnorm_mean) / C;
    dnorm_norm_mean = warp_sum(dnorm_norm_mean) / C;
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      const int c0 = (lane + 32 * j) * 8;
      if (c0 < C) {
        const bf16* d = reinterpret_cast<const bf16*>(&dv[j]);
        uint4 res;
        bf16* o = reinterpret_cast<bf16*>(&res);
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          acc_b[j][e] += gv[j][e];
          acc_w[j][e] += xv[j][e] * gv[j][e];
          o[e] = __float2bfloat16(__bfloat162float(d[e]) + (ws[c0 + e] * gv[j][e] - dnorm_mean - xv[j][e] * dnorm_norm_mean) * r);
        }
        *reinterpret_cast<uint4*>(dinp + base + c0) = res;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    const int c0 = (lane + 32 * j) * 8;
    if (c0 < C)
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        shared[warp * 2 * C + c0 + e] = acc_w[j][e];
        shared[warp * 2 * C + C + c0 + e] = acc_b[j][e];
      }
  }
  __syncthreads();
  for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) {
    float s = 0;
    for (int k = 0; k < kWarps; ++k) s += shared[k * 2 * C + c];
    partial[std::int64_t(blockIdx.x) * 2 * C + c] = s;
  }
}

int backward_blocks(int N) { return (N + kRowsPerBlock - 1) / kRowsPerBlock; }

}  // namespace

void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* w, const bf16* b, int N, int C, cudaStream_t s) {
  using Unused = fp8::Kind<fp8::Format::e4m3, fp8::Overflow::satfinite>;  // no cast
  launch_forward<false, Unused>(out, nullptr, mean, rstd, inp, w, b, N, C, nullptr, nullptr, s);
}

void layernorm_forward_fp8(std::uint8_t* out, float* mean, float* rstd, const bf16* inp, const bf16* w, const bf16* b, int N, int C,
                           const float* scale, fp8::Format f, fp8::Overflow o, fp8::CastStats* stats, cudaStream_t s) {
  fp8::with_kind(f, o, [&](auto k) { launch_forward<true, decltype(k)>(nullptr, out, mean, rstd, inp, w, b, N, C, scale, stats, s); });
}

std::int64_t layernorm_backward_scratch_floats(int N, int C) { return std::int64_t(backward_blocks(N)) * 2 * C; }

void layernorm_backward(bf16* dinp, float* dw, float* db, float* scratch, const bf16* dout, const bf16* inp, const bf16* w,
                        const float* mean, const float* rstd, int N, int C, cudaStream_t s) {
  check_width(C);
  const int blocks = backward_blocks(N);
  const std::size_t shared = (kWarps * 2 + 1) * C * sizeof(float);
  switch ((C + 255) / 256) {
    case 1: layernorm_backward_kernel<1><<<blocks, 32 * kWarps, shared, s>>>(dinp, scratch, dout, inp, w, mean, rstd, N, C); break;
    case 2: layernorm_backward_kernel<2><<<blocks, 32 * kWarps, shared, s>>>(dinp, scratch, dout, inp, w, mean, rstd, N, C); break;
    case 3: layernorm_backward_kernel<3><<<blocks, 32 * kWarps, shared, s>>>(dinp, scratch, dout, inp, w, mean, rstd, N, C); break;
    default: layernorm_backward_kernel<4><<<blocks, 32 * kWarps, shared, s>>>(dinp, scratch, dout, inp, w, mean, rstd, N, C); break;
  }
  column_sum_add(dw, scratch, blocks, C, 2 * C, s);
  column_sum_add(db, scratch + C, blocks, C, 2 * C, s);
}

}  // namespace fp8scope::model
