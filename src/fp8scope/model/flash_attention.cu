// Fused causal attention (FlashAttention-2 style) for head size 64 on tensor cores (WMMA,
// BF16 in, FP32 accumulate): the T x T scores and probabilities are never written to memory.
// Forward: per (b, h) and tile of 64 queries, one pass over the key tiles up to the diagonal
// with an online softmax; it keeps the log-sum-exp of every row for backward. Backward, in two
// passes so that nothing is accumulated with float atomics (the model is deterministic):
// dK/dV per key tile looping over the query tiles, dQ per query tile looping over the key tiles;
// both recompute the probabilities from the log-sum-exp.
//
// Tiles: 64 x 64, four warps per block, each warp owns 16 rows. WMMA fragments hide which
// thread holds which element, so per-row work (softmax, rescaling) goes through shared memory.
#include "fp8scope/model/kernels.cuh"

#include <mma.h>

#include <cfloat>

namespace fp8scope::model {
namespace {

using namespace nvcuda;

constexpr int kD = 64;         // head size
constexpr int kTile = 64;      // queries or keys per tile
constexpr int kWarps = 4;      // 16 rows each
constexpr int kLd = kD + 8;    // BF16 row stride in shared memory (a multiple of 8, 16-byte rows)
constexpr int kLdf = kD + 4;   // FP32 row stride (a multiple of 4)

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// Cooperative copy of a 64 x 64 BF16 tile (row stride kD in global memory) into shared memory.
__device__ __forceinline__ void load_tile(bf16* dst, const bf16* src) {
  for (int v = threadIdx.x; v < kTile * kD / 8; v += blockDim.x) {
    const int r = v / (kD / 8), c = (v % (kD / 8)) * 8;
    *reinterpret_cast<uint4*>(dst + r * kLd + c) = *reinterpret_cast<const uint4*>(src + std::int64_t(r) * kD + c);
  }
}

// out (16 x 64, FP32, ld kLdf) = A (16 x 64, row-major) . B^T where B is 64 x 64 row-major
// (rows are the output's columns): the "x y^T" of attention.
__device__ __forceinline__ void mm_abt(float* out, const bf16* a, const bf16* b) {
#pragma unroll
  for (int n = 0; n < kTile / 16; ++n) {
    FragC c;
    wmma::fill_fragment(c, 0.0f);
#pragma unroll
    for (int k = 0; k < kD / 16; ++k) {
      FragA fa;
      FragBCol fb;
      wmma::load_matrix_sync(fa, a + k * 16, kLd);
      wmma::load_matrix_sync(fb, b + n * 16 * kLd + k * 16, kLd);
      wmma::mma_sync(c, fa, fb, c);
    }
    wmma::store_matrix_sync(out + n * 16, c, kLdf, wmma::mem_row_major);
  }
}

// acc[n] += A (16 x 64, row-major) . B (64 x 64, row-major): the "p v" of attention.
__device__ __forceinline__ void mm_ab_acc(FragC* acc, const bf16* a, const bf16* b) {
#pragma unroll
  for (int n = 0; n < kD / 16; ++n)
#pragma unroll
    for (int k = 0; k < kTile / 16; ++k) {
      FragA fa;
      FragBRow fb;
      wmma::load_matrix_sync(fa, a + k * 16, kLd);
      wmma::load_matrix_sync(fb, b + k * 16 * kLd + n * 16, kLd);
      wmma::mma_sync(acc[n], fa, fb, acc[n]);
    }
}

// Shared memory of the forward kernel.
struct FwdSmem {
  bf16 q[kTile * kLd], k[kTile * kLd], v[kTile * kLd];
  bf16 p[kWarps][16 * kLd];
  float s[kWarps][16 * kLdf];
  float o[kWarps][16 * kLdf];
};

__global__ void __launch_bounds__(kWarps * 32) flash_forward_kernel(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                                                                    int T, float scale) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  FwdSmem& sm = *reinterpret_cast<FwdSmem*>(smem_raw);
  const int qt = blockIdx.x, bh = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t base = std::int64_t(bh) * T * kD;
  load_tile(sm.q, q + base + std::int64_t(qt) * kTile * kD);
  float* s = sm.s[warp];
  float* o = sm.o[warp];
  bf16* p = sm.p[warp];
  for (int i = lane; i < 16 * kLdf; i += 32) o[i] = 0.0f;
  // Lane pair (2r, 2r+1) owns row r of the warp's 16: columns [0, 32) and [32, 64).
  const int row = lane / 2, half = lane % 2;
  const int qi = qt * kTile + warp * 16 + row;
  float m = -INFINITY, l = 0.0f;
  for (int kt = 0; kt <= qt; ++kt) {
    __syncthreads();  // the previous tile's K, V are no longer read
    load_tile(sm.k, k + base + std::int64_t(kt) * kTile * kD);
    load_tile(sm.v, v + base + std::int64_t(kt) * kTile * kD);
    __syncthreads();
    mm_abt(s, sm.q + warp * 16 * kLd, sm.k);
    __syncwarp();
    float x[32], mt = -INFINITY;
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const int col = half * 32 + c, kj = kt * kTile + col;
      x[c] = kj <= qi ? s[row * kLdf + col] * scale : -INFINITY;
      mt = fmaxf(mt, x[c]);
    }
    mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
    const float m_new = fmaxf(m, mt);  // finite: the diagonal is in every row's first tile
    const float alpha = __expf(m - m_new);
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const float e = __expf(x[c] - m_new);
      sum += e;
      p[row * kLd + half * 32 + c] = __float2bfloat16(e);
      o[row * kLdf + half * 32 + c] *= alpha;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * alpha + sum;
    m = m_new;
    __syncwarp();
    FragC acc[kD / 16];
#pragma unroll
    for (int n = 0; n < kD / 16; ++n) wmma::load_matrix_sync(acc[n], o + n * 16, kLdf, wmma::mem_row_major);
    mm_ab_acc(acc, p, sm.v);
#pragma unroll
    for (int n = 0; n < kD / 16; ++n) wmma::store_matrix_sync(o + n * 16, acc[n], kLdf, wmma::mem_row_major);
    __syncwarp();
  }
  const float inv = 1.0f / l;
  bf16* dst = out + base + std::int64_t(qi) * kD + half * 32;
#pragma unroll
  for (int c = 0; c < 32; c += 8) {
    uint4 packed;
    bf16* pk = reinterpret_cast<bf16*>(&packed);
#pragma unroll
    for (int e = 0; e < 8; ++e) pk[e] = __float2bfloat16(o[row * kLdf + half * 32 + c + e] * inv);
    *reinterpret_cast<uint4*>(dst + c) = packed;
  }
  if (half == 0) lse[std::int64_t(bh) * T + qi] = m + __logf(l);
}

// D[row] = sum_d dO[row][d] * O[row][d]: the softmax backward's row term, once per row.
__global__ void flash_backward_rowdot_kernel(float* dsum, const bf16* dout, const bf16* out, std::int64_t rows) {
  const std::int64_t row = (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const std::int64_t i = row * kD + lane * 2;
  float acc = __bfloat162float(dout[i]) * __bfloat162float(out[i]) + __bfloat162float(dout[i + 1]) * __bfloat162float(out[i + 1]);
  for (int o = 16; o > 0; o /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) dsum[row] = acc;
}

struct BwdSmem {
  bf16 a[kTile * kLd], b[kTile * kLd];   // the loop's two tiles (Q, dO for dK/dV; K, V for dQ)
  bf16 x[kTile * kLd], y[kTile * kLd];   // the block's own two tiles (K, V for dK/dV; Q, dO for dQ)
  float lse[kTile], dsum[kTile];
  bf16 p[kWarps][16 * kLd], ds[kWarps][16 * kLd];
  float s[kWarps][16 * kLdf], dp[kWarps][16 * kLdf];
};

// Each query row's log-sum-exp and rowsum(dO * O) for a tile of 64 rows.
__device__ __forceinline__ void load_row_stats(BwdSmem& sm, const float* lse, const float* dsum, std::int64_t first) {
  for (int i = threadIdx.x; i < kTile; i += blockDim.x) {
    sm.lse[i] = lse[first + i];
    sm.dsum[i] = dsum[first + i];
  }
}

// Writes a warp's 16 x 64 accumulator as BF16 rows of `dst` (row stride kD; the lane pair of a
// row writes its two halves), through the warp's FP32 scratch.
__device__ __forceinline__ void store_rows(bf16* dst, const FragC* acc, float* scratch, int row, int half) {
  __syncwarp();
#pragma unroll
  for (int n = 0; n < kD / 16; ++n) wmma::store_matrix_sync(scratch + n * 16, acc[n], kLdf, wmma::mem_row_major);
  __syncwarp();
  bf16* out = dst + std::int64_t(row) * kD + half * 32;
#pragma unroll
  for (int c = 0; c < 32; ++c) out[c] = __float2bfloat16(scratch[row * kLdf + half * 32 + c]);
}

// dK, dV for one key tile: the warp's 16 keys against every query tile at or after the
// diagonal. Transposed quantities: s = K Q^T (keys x queries), dp = V dO^T.
__global__ void __launch_bounds__(kWarps * 32) flash_backward_dkdv_kernel(bf16* dk, bf16* dv, const bf16* q, const bf16* k, const bf16* v,
                                                                          const bf16* dout, const float* lse, const float* dsum, int T,
                                                                          float scale) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  BwdSmem& sm = *reinterpret_cast<BwdSmem*>(smem_raw);
  const int kt = blockIdx.x, bh = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t base = std::int64_t(bh) * T * kD;
  load_tile(sm.x, k + base + std::int64_t(kt) * kTile * kD);
  load_tile(sm.y, v + base + std::int64_t(kt) * kTile * kD);
  FragC acc_dk[kD / 16], acc_dv[kD / 16];
#pragma unroll
  for (int n = 0; n < kD / 16; ++n) wmma::fill_fragment(acc_dk[n], 0.0f), wmma::fill_fragment(acc_dv[n], 0.0f);
  const int row = lane / 2, half = lane % 2;
  const int kj = kt * kTile + warp * 16 + row;
  for (int qt = kt; qt < T / kTile; ++qt) {
    __syncthreads();
    load_tile(sm.a, q + base + std::int64_t(qt) * kTile * kD);
    load_tile(sm.b, dout + base + std::int64_t(qt) * kTile * kD);
    load_row_stats(sm, lse, dsum, std::int64_t(bh) * T + qt * kTile);
    __syncthreads();
    mm_abt(sm.s[warp], sm.x + warp * 16 * kLd, sm.a);   // S^T = K_w Q^T
    mm_abt(sm.dp[warp], sm.y + warp * 16 * kLd, sm.b);  // dP^T = V_w dO^T
    __syncwarp();
#pragma unroll 8
    for (int c = 0; c < 32; ++c) {
      const int col = half * 32 + c, qi = qt * kTile + col;
      const float pr = kj <= qi ? __expf(sm.s[warp][row * kLdf + col] * scale - sm.lse[col]) : 0.0f;
      sm.p[warp][row * kLd + col] = __float2bfloat16(pr);
      sm.ds[warp][row * kLd + col] = __float2bfloat16(pr * (sm.dp[warp][row * kLdf + col] - sm.dsum[col]) * scale);
    }
    __syncwarp();
    mm_ab_acc(acc_dv, sm.p[warp], sm.b);   // dV_w += P^T dO
    mm_ab_acc(acc_dk, sm.ds[warp], sm.a);  // dK_w += dS^T Q
  }
  const std::int64_t first = base + std::int64_t(kt * kTile + warp * 16) * kD;
  store_rows(dk + first, acc_dk, sm.s[warp], row, half);
  store_rows(dv + first, acc_dv, sm.s[warp], row, half);
}

// dQ for one query tile: the warp's 16 queries against every key tile up to the diagonal.
__global__ void __launch_bounds__(kWarps * 32) flash_backward_dq_kernel(bf16* dq, const bf16* q, const bf16* k, const bf16* v,
                                                                        const bf16* dout, const float* lse, const float* dsum, int T,
                                                                        float scale) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  BwdSmem& sm = *reinterpret_cast<BwdSmem*>(smem_raw);
  const int qt = blockIdx.x, bh = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t base = std::int64_t(bh) * T * kD;
  load_tile(sm.x, q + base + std::int64_t(qt) * kTile * kD);
  load_tile(sm.y, dout + base + std::int64_t(qt) * kTile * kD);
  load_row_stats(sm, lse, dsum, std::int64_t(bh) * T + qt * kTile);
  FragC acc[kD / 16];
#pragma unroll
  for (int n = 0; n < kD / 16; ++n) wmma::fill_fragment(acc[n], 0.0f);
  const int row = lane / 2, half = lane % 2;
  const int local = warp * 16 + row, qi = qt * kTile + local;
  for (int kt = 0; kt <= qt; ++kt) {
    __syncthreads();
    load_tile(sm.a, k + base + std::int64_t(kt) * kTile * kD);
    load_tile(sm.b, v + base + std::int64_t(kt) * kTile * kD);
    __syncthreads();
    mm_abt(sm.s[warp], sm.x + warp * 16 * kLd, sm.a);   // S = Q_w K^T
    mm_abt(sm.dp[warp], sm.y + warp * 16 * kLd, sm.b);  // dP = dO_w V^T
    __syncwarp();
#pragma unroll 8
    for (int c = 0; c < 32; ++c) {
      const int col = half * 32 + c, kj = kt * kTile + col;
      const float pr = kj <= qi ? __expf(sm.s[warp][row * kLdf + col] * scale - sm.lse[local]) : 0.0f;
      sm.ds[warp][row * kLd + col] = __float2bfloat16(pr * (sm.dp[warp][row * kLdf + col] - sm.dsum[local]) * scale);
    }
    __syncwarp();
    mm_ab_acc(acc, sm.ds[warp], sm.a);  // dQ_w += dS K
  }
  store_rows(dq + base + std::int64_t(qt * kTile + warp * 16) * kD, acc, sm.s[warp], row, half);
}

template <class Kernel, class... Args>
void launch(Kernel kernel, std::size_t smem, dim3 grid, cudaStream_t s, Args... args) {
  // More than the default 48 KiB of shared memory needs the kernel's opt-in.
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  kernel<<<grid, kWarps * 32, smem, s>>>(args...);
}

}  // namespace

bool flash_attention_supported(int T, int HS) { return HS == kD && T % kTile == 0; }

void flash_attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int BH, int T, float scale, cudaStream_t s) {
  launch(flash_forward_kernel, sizeof(FwdSmem), dim3(unsigned(T / kTile), unsigned(BH)), s, out, lse, q, k, v, T, scale);
}

void flash_attention_backward(bf16* dq, bf16* dk, bf16* dv, float* dsum, const bf16* dout, const bf16* out, const bf16* q, const bf16* k,
                              const bf16* v, const float* lse, int BH, int T, float scale, cudaStream_t s) {
  const std::int64_t rows = std::int64_t(BH) * T;
  flash_backward_rowdot_kernel<<<unsigned((rows * 32 + 255) / 256), 256, 0, s>>>(dsum, dout, out, rows);
  const dim3 grid(unsigned(T / kTile), unsigned(BH));
  launch(flash_backward_dkdv_kernel, sizeof(BwdSmem), grid, s, dk, dv, q, k, v, dout, static_cast<const float*>(lse),
         static_cast<const float*>(dsum), T, scale);
  launch(flash_backward_dq_kernel, sizeof(BwdSmem), grid, s, dq, q, k, v, dout, static_cast<const float*>(lse),
         static_cast<const float*>(dsum), T, scale);
}

}  // namespace fp8scope::model
