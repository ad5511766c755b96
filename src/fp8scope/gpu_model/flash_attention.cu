// Fused causal attention (FlashAttention-2 style) for head sizes 64 and 128 on tensor cores:
// BF16 in, FP32 accumulate; the T x T scores and probabilities never reach memory. These are the
// mma.sync kernels that run on any sm_80+ GPU; on Hopper (sm_90a build, T a multiple of 128)
// the entry points at the end hand the products to flash_attention_wgmma.cu instead.
// Forward: per (b, h) and tile of 64 queries, one pass over the key tiles up to the diagonal
// with an online softmax; it keeps each row's log-sum-exp for backward. Backward, in two passes
// so that nothing is accumulated with float atomics (the model is deterministic): dK/dV per key
// tile looping over the query tiles, dQ per query tile looping over the key tiles; both
// recompute the probabilities from the log-sum-exp.
//
// Tiles are 64 rows (queries or keys) by the head size D, with four warps per block; each warp
// owns 16 rows, so a warp's scores are 16 x 64 whatever D is, while its D-wide operands and
// accumulators (q, the output, dQ, dK, dV) grow with D. The matrix products are PTX mma.sync
// m16n8k16 fed by ldmatrix from shared memory, whose register layouts are specified (unlike
// WMMA's): a thread holds rows g and g+8 (g = lane/4) and the column pairs 8j + 2t (t = lane%4)
// of an accumulator, so the softmax runs in registers with quad shuffles, and an accumulator of
// 16 x 64 probabilities is, repacked as BF16 pairs, the A operand of the next product without a
// trip through shared memory. The next key/value (or query/dO) tile is fetched with cp.async
// while the current one is multiplied.
//
// The kernels read and write heads where the model keeps them (row (b, t) of a [B, T, stride]
// tensor holds head h at columns Dh .. Dh+D-1: q, k and v inside the fused qkv output, the
// output and its gradient in [B, T, C]), so no kernel splits or merges heads around them.
#include "fp8scope/core/cp_async.cuh"
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/core/fast_math.cuh"
#include "fp8scope/gpu_model/flash_common.cuh"
#include "fp8scope/gpu_model/kernels.cuh"

#include <cuda_bf16.h>

#include <cstdint>
#include <stdexcept>

namespace fp8scope::gpu_model {
namespace {

constexpr int kTile = 64;  // queries or keys per tile
constexpr int kWarps = 4;  // 16 rows each

// Shared-memory row stride for head size D: D + 8 elements (144 bytes at D = 64, 272 at 128)
// puts ldmatrix's 8 rows in 8 different bank groups.
template <int D>
constexpr int ld_of() {
  return D + 8;
}
template <int D>
constexpr int tile_elems() {
  return kTile * ld_of<D>();
}
// Blocks per SM the backward kernels are compiled for: three at D = 64 (P kept only as BF16 so
// that they fit); at D = 128 the two D-wide accumulators need the registers of two.
template <int D>
constexpr int bwd_min_blocks() {
  return D == 64 ? 3 : 2;
}

using Frag = std::uint32_t[4];  // an A operand: 16 x 16 BF16
using Acc = float[8][4];        // a 16 x 64 FP32 accumulator (scores): 8 column groups of 8
template <int D>
using AccD = float[D / 8][4];  // a 16 x D FP32 accumulator (output, dQ, dK, dV)

using core::smem_addr;
using flash::fetch_row_floats;
using flash::frag_value;
using flash::head_start;
using flash::kLn2;
using flash::kv_of;
using flash::pack;
using flash::quad_max;
using flash::quad_sum;

__device__ __forceinline__ void ldsm_x4(std::uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldsm_x4_trans(std::uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c (16 x 8) += a (16 x 16) . b (16 x 8)
__device__ __forceinline__ void mma(float (&c)[4], const Frag& a, std::uint32_t b0, std::uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <int G>
__device__ __forceinline__ void zero(float (&c)[G][4]) {
#pragma unroll
  for (int j = 0; j < G; ++j) c[j][0] = c[j][1] = c[j][2] = c[j][3] = 0.0f;
}

// The A operands of a warp's 16 rows x D columns held in shared memory (row stride ld_of<D>).
template <int D>
__device__ __forceinline__ void load_a(Frag (&a)[D / 16], const bf16* rows) {
  const int lane = threadIdx.x % 32;
  const bf16* p = rows + (lane % 16) * ld_of<D>() + (lane / 16) * 8;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) ldsm_x4(a[kk], p + kk * 16);
}

// c = A . B^T with A the warp's 16 x D operand and B a 64 x D row-major tile whose rows are
// c's columns: the "x y^T" of attention (16 x 64 scores, contracting over D).
template <int D>
__device__ __forceinline__ void mma_abt(Acc& c, const Frag (&a)[D / 16], const bf16* b) {
  const int lane = threadIdx.x % 32;
  zero(c);
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int half = 0; half < D / 32; ++half) {
      std::uint32_t r[4];  // k-steps 2*half and 2*half + 1 of column group j
      ldsm_x4(r, b + (8 * j + lane % 8) * ld_of<D>() + 32 * half + 8 * (lane / 8));
      mma(c[j], a[2 * half], r[0], r[1]);
      mma(c[j], a[2 * half + 1], r[2], r[3]);
    }
}

// c += A . B with A the warp's 16 x 64 operand (from registers) and B a 64 x D row-major tile
// (rows are the contraction index): the "p v" of attention (16 x D, contracting over 64).
template <int D>
__device__ __forceinline__ void mma_ab(AccD<D>& c, const Frag (&a)[4], const bf16* b) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
#pragma unroll
    for (int q = 0; q < D / 16; ++q) {
      std::uint32_t r[4];  // column groups 2q and 2q+1 of k-step kk
      ldsm_x4_trans(r, b + (16 * kk + lane % 16) * ld_of<D>() + 16 * q + 8 * (lane / 16));
      mma(c[2 * q], a[kk], r[0], r[1]);
      mma(c[2 * q + 1], a[kk], r[2], r[3]);
    }
}

// An accumulator of 16 x 64 as the BF16 A operand of the next product: the accumulator's
// (row, column-pair) ownership is the A operand's, so this is a repacking in registers.
__device__ __forceinline__ void to_a(Frag (&a)[4], const Acc& c) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    a[kk][0] = pack(c[2 * kk][0], c[2 * kk][1]);
    a[kk][1] = pack(c[2 * kk][2], c[2 * kk][3]);
    a[kk][2] = pack(c[2 * kk + 1][0], c[2 * kk + 1][1]);
    a[kk][3] = pack(c[2 * kk + 1][2], c[2 * kk + 1][3]);
  }
}

// Writes a warp's 16 x D accumulator (times `mul`) as BF16 rows of `dst` (row stride `ld`).
template <int D>
__device__ __forceinline__ void store_rows(bf16* dst, std::int64_t ld, const AccD<D>& c, float mul0, float mul1) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
    *reinterpret_cast<__nv_bfloat162*>(dst + g * ld + 8 * j + 2 * t) = __floats2bfloat162_rn(c[j][0] * mul0, c[j][1] * mul0);
    *reinterpret_cast<__nv_bfloat162*>(dst + (g + 8) * ld + 8 * j + 2 * t) = __floats2bfloat162_rn(c[j][2] * mul1, c[j][3] * mul1);
  }
}

using core::cp_async16;
using core::cp_commit;
using core::cp_wait;

// Starts copying a 64 x D BF16 tile (row stride `ld` in global memory) into shared memory.
template <int D>
__device__ __forceinline__ void fetch_tile(bf16* dst, const bf16* src, std::int64_t ld) {
  for (int v = threadIdx.x; v < kTile * D / 8; v += blockDim.x) {
    const int r = v / (D / 8), c = (v % (D / 8)) * 8;
    cp_async16(dst + r * ld_of<D>() + c, src + r * ld + c);
  }
}

template <int D>
struct FwdSmem {
  bf16 q[tile_elems<D>()];
  bf16 k[2][tile_elems<D>()], v[2][tile_elems<D>()];
};

template <int D>
__global__ void __launch_bounds__(kWarps * 32) flash_forward_kernel(bf16* out, int ldo, float* lse, const bf16* q, const bf16* k,
                                                                    const bf16* v, int ld, int NH, int KVH, int T, float scale) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  FwdSmem<D>& sm = *reinterpret_cast<FwdSmem<D>*>(smem_raw);
  // The longest rows (last query tiles) start first so the short ones fill the tail.
  const int qt = int(gridDim.x) - 1 - int(blockIdx.x), bh = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const std::int64_t base = head_start<D>(bh, NH, T, ld), step = std::int64_t(kTile) * ld;  // step: one tile of rows
  const std::int64_t kvbase = head_start<D>(kv_of(bh, NH, KVH), KVH, T, ld);
  fetch_tile<D>(sm.q, q + base + qt * step, ld);
  fetch_tile<D>(sm.k[0], k + kvbase, ld);
  fetch_tile<D>(sm.v[0], v + kvbase, ld);
  cp_commit();
  const float sl2 = scale * core::kLog2e;  // exponentials in base 2
  const int row0 = qt * kTile + warp * 16 + g, row1 = row0 + 8;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  Frag qf[D / 16];
  AccD<D> o;
  zero(o);
  for (int kt = 0; kt <= qt; ++kt) {
    const int buf = kt & 1;
    if (kt < qt) {
      fetch_tile<D>(sm.k[buf ^ 1], k + kvbase + (kt + 1) * step, ld);
      fetch_tile<D>(sm.v[buf ^ 1], v + kvbase + (kt + 1) * step, ld);
      cp_commit();
      cp_wait<1>();
    } else {
      cp_wait<0>();
    }
    __syncthreads();
    if (kt == 0) load_a<D>(qf, sm.q + warp * 16 * ld_of<D>());
    Acc s;
    mma_abt<D>(s, qf, sm.k[buf]);
    float mt0 = -INFINITY, mt1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = kt * kTile + 8 * j + 2 * t + (e & 1), row = e < 2 ? row0 : row1;
        s[j][e] = (kt == qt && col > row) ? -INFINITY : s[j][e] * sl2;
        if (e < 2)
          mt0 = fmaxf(mt0, s[j][e]);
        else
          mt1 = fmaxf(mt1, s[j][e]);
      }
    // Finite: every row sees its diagonal key in the first tile (key 0 <= row).
    const float mn0 = fmaxf(m0, quad_max(mt0)), mn1 = fmaxf(m1, quad_max(mt1));
    const float a0 = core::exp2_fast(m0 - mn0), a1 = core::exp2_fast(m1 - mn1);
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      s[j][0] = core::exp2_fast(s[j][0] - mn0), s[j][1] = core::exp2_fast(s[j][1] - mn0);
      s[j][2] = core::exp2_fast(s[j][2] - mn1), s[j][3] = core::exp2_fast(s[j][3] - mn1);
      sum0 += s[j][0] + s[j][1], sum1 += s[j][2] + s[j][3];
    }
#pragma unroll
    for (int j = 0; j < D / 8; ++j) o[j][0] *= a0, o[j][1] *= a0, o[j][2] *= a1, o[j][3] *= a1;
    // The thread's partial row sums: the scaling by alpha is the same across the quad, so the
    // quad is summed once at the end.
    l0 = l0 * a0 + sum0, l1 = l1 * a1 + sum1;
    m0 = mn0, m1 = mn1;
    Frag pf[4];
    to_a(pf, s);
    mma_ab<D>(o, pf, sm.v[buf]);
    __syncthreads();  // the buffer is refilled by the next iteration's fetch
  }
  l0 = quad_sum(l0), l1 = quad_sum(l1);
  store_rows<D>(out + head_start<D>(bh, NH, T, ldo) + std::int64_t(qt * kTile + warp * 16) * ldo, ldo, o, 1.0f / l0, 1.0f / l1);
  if (t == 0) {
    lse[std::int64_t(bh) * T + row0] = (m0 + __log2f(l0)) * kLn2;
    lse[std::int64_t(bh) * T + row1] = (m1 + __log2f(l1)) * kLn2;
  }
}

// D[row] = sum_d dO[row][d] * O[row][d]: the softmax backward's row term, once per row
// (row = bh * T + t, as lse). Eight threads per row, D / 8 elements each (16-byte loads).
template <int D>
__global__ void flash_backward_rowdot_kernel(float* dsum, const bf16* dout, const bf16* out, int ld, int NH, int T, std::int64_t rows) {
  const std::int64_t row = (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) / 8;
  const int part = threadIdx.x % 8;
  if (row >= rows) return;
  const int bh = int(row / T), t = int(row % T);
  const std::int64_t first = head_start<D>(bh, NH, T, ld) + std::int64_t(t) * ld + part * (D / 8);
  float acc = 0.0f;
#pragma unroll
  for (int u = 0; u < D / 64; ++u) {
    const uint4 a = *reinterpret_cast<const uint4*>(dout + first + 8 * u), b = *reinterpret_cast<const uint4*>(out + first + 8 * u);
    const __nv_bfloat162* a2 = reinterpret_cast<const __nv_bfloat162*>(&a);
    const __nv_bfloat162* b2 = reinterpret_cast<const __nv_bfloat162*>(&b);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float2 x = __bfloat1622float2(a2[e]), y = __bfloat1622float2(b2[e]);
      acc += x.x * y.x + x.y * y.y;
    }
  }
  for (int o = 4; o > 0; o /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (part == 0) dsum[row] = acc;
}

template <int D>
struct BwdSmem {
  bf16 x[tile_elems<D>()], y[tile_elems<D>()];        // the block's own tiles (K, V for dK/dV; Q, dO for dQ)
  bf16 a[2][tile_elems<D>()], b[2][tile_elems<D>()];  // the loop's tiles (Q, dO for dK/dV; K, V for dQ)
  float lse[2][kTile], dsum[2][kTile];                // per query row (the loop's rows in dK/dV, own in dQ)
};

// dK, dV for one key tile of one k/v head: the warp's 16 keys against every query tile at or
// after the diagonal of every q head that reads this k/v head (one with multi-head attention,
// NH / KVH with grouped queries), in transposed form: S^T = K Q^T (keys x queries),
// dP^T = V dO^T, dV += P^T dO, dK += dS^T Q.
template <int D>
__global__ void __launch_bounds__(kWarps * 32, bwd_min_blocks<D>())
    flash_backward_dkdv_kernel(bf16* dk, bf16* dv, int ldg, const bf16* q, const bf16* k, const bf16* v, int ld, const bf16* dout, int ldo,
                               const float* lse, const float* dsum, int NH, int KVH, int T, float scale) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  BwdSmem<D>& sm = *reinterpret_cast<BwdSmem<D>*>(smem_raw);
  const int kt = blockIdx.x, bkv = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;  // kt = 0 has the most work
  const int g = lane / 4, t = lane % 4, nt = T / kTile;
  // Pass `it` of the loop: q head (group member it / span) and its query tile kt + it % span.
  const int group = NH / KVH, span = nt - kt, passes = group * span;
  const int first_q = (bkv / KVH) * NH + (bkv % KVH) * group;  // the (batch, q head) index of the group's first head
  const std::int64_t kvbase = head_start<D>(bkv, KVH, T, ld);
  auto fetch = [&](int it, int buf) {
    const int bh = first_q + it / span, qt = kt + it % span;
    const std::int64_t base = head_start<D>(bh, NH, T, ld), obase = head_start<D>(bh, NH, T, ldo), rows = std::int64_t(bh) * T;
    fetch_tile<D>(sm.a[buf], q + base + std::int64_t(qt) * kTile * ld, ld);
    fetch_tile<D>(sm.b[buf], dout + obase + std::int64_t(qt) * kTile * ldo, ldo);
    fetch_row_floats(sm.lse[buf], lse + rows + qt * kTile, 0);
    fetch_row_floats(sm.dsum[buf], dsum + rows + qt * kTile, 32);
    cp_commit();
  };
  fetch_tile<D>(sm.x, k + kvbase + std::int64_t(kt) * kTile * ld, ld);
  fetch_tile<D>(sm.y, v + kvbase + std::int64_t(kt) * kTile * ld, ld);
  fetch(0, 0);
  const float sl2 = scale * core::kLog2e;
  const int key0 = kt * kTile + warp * 16 + g, key1 = key0 + 8;
  AccD<D> dk_acc, dv_acc;
  zero(dk_acc);
  zero(dv_acc);
  for (int it = 0; it < passes; ++it) {
    const int qt = kt + it % span, buf = it & 1;
    if (it + 1 < passes) {
      fetch(it + 1, buf ^ 1);
      cp_wait<1>();
    } else {
      cp_wait<0>();
    }
    __syncthreads();
    // P^T first, kept only as the BF16 operand of dV (which it is rounded to anyway), so that
    // S^T and dP^T are never live together.
    Frag own[D / 16], pf[4];
    {
      Acc st;
      load_a<D>(own, sm.x + warp * 16 * ld_of<D>());
      mma_abt<D>(st, own, sm.a[buf]);
      const float* l = sm.lse[buf];
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = 8 * j + 2 * t + (e & 1), key = e < 2 ? key0 : key1;
          st[j][e] = (qt == kt && key > qt * kTile + col) ? 0.0f : core::exp2_fast(st[j][e] * sl2 - l[col] * core::kLog2e);
        }
      to_a(pf, st);
    }
    mma_ab<D>(dv_acc, pf, sm.b[buf]);
    Acc dpt;
    load_a<D>(own, sm.y + warp * 16 * ld_of<D>());
    mma_abt<D>(dpt, own, sm.b[buf]);
    const float* d = sm.dsum[buf];
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = 8 * j + 2 * t + (e & 1);
        dpt[j][e] = frag_value(pf, j, e) * (dpt[j][e] - d[col]) * scale;
      }
    Frag ds[4];
    to_a(ds, dpt);
    mma_ab<D>(dk_acc, ds, sm.a[buf]);
    __syncthreads();
  }
  const std::int64_t first = head_start<D>(bkv, KVH, T, ldg) + std::int64_t(kt * kTile + warp * 16) * ldg;
  store_rows<D>(dk + first, ldg, dk_acc, 1.0f, 1.0f);
  store_rows<D>(dv + first, ldg, dv_acc, 1.0f, 1.0f);
}

// dQ for one query tile: the warp's 16 queries against every key tile up to the diagonal:
// S = Q K^T, dP = dO V^T, dQ += dS K.
template <int D>
__global__ void __launch_bounds__(kWarps * 32, bwd_min_blocks<D>())
    flash_backward_dq_kernel(bf16* dq, int ldg, const bf16* q, const bf16* k, const bf16* v, int ld, const bf16* dout, int ldo,
                             const float* lse, const float* dsum, int NH, int KVH, int T, float scale) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  BwdSmem<D>& sm = *reinterpret_cast<BwdSmem<D>*>(smem_raw);
  const int qt = int(gridDim.x) - 1 - int(blockIdx.x), bh = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const std::int64_t base = head_start<D>(bh, NH, T, ld), rows = std::int64_t(bh) * T;
  const std::int64_t kvbase = head_start<D>(kv_of(bh, NH, KVH), KVH, T, ld);
  auto fetch = [&](int kt, int buf) {
    fetch_tile<D>(sm.a[buf], k + kvbase + std::int64_t(kt) * kTile * ld, ld);
    fetch_tile<D>(sm.b[buf], v + kvbase + std::int64_t(kt) * kTile * ld, ld);
    cp_commit();
  };
  fetch_tile<D>(sm.x, q + base + std::int64_t(qt) * kTile * ld, ld);
  fetch_tile<D>(sm.y, dout + head_start<D>(bh, NH, T, ldo) + std::int64_t(qt) * kTile * ldo, ldo);
  fetch_row_floats(sm.lse[0], lse + rows + qt * kTile, 0);
  fetch_row_floats(sm.dsum[0], dsum + rows + qt * kTile, 32);
  fetch(0, 0);
  const float sl2 = scale * core::kLog2e;
  const int local0 = warp * 16 + g, row0 = qt * kTile + local0, row1 = row0 + 8;
  float lse0 = 0, lse1 = 0, d0 = 0, d1 = 0;
  Frag qf[D / 16], dof[D / 16];
  AccD<D> dq_acc;
  zero(dq_acc);
  for (int kt = 0; kt <= qt; ++kt) {
    const int buf = kt & 1;
    if (kt < qt) {
      fetch(kt + 1, buf ^ 1);
      cp_wait<1>();
    } else {
      cp_wait<0>();
    }
    __syncthreads();
    if (kt == 0) {
      load_a<D>(qf, sm.x + warp * 16 * ld_of<D>());
      load_a<D>(dof, sm.y + warp * 16 * ld_of<D>());
      lse0 = sm.lse[0][local0] * core::kLog2e, lse1 = sm.lse[0][local0 + 8] * core::kLog2e;
      d0 = sm.dsum[0][local0], d1 = sm.dsum[0][local0 + 8];
    }
    // P kept as BF16 (as in the dK/dV kernel) while dP is computed: S and dP never live together.
    Frag f[4];
    {
      Acc s;
      mma_abt<D>(s, qf, sm.a[buf]);
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = kt * kTile + 8 * j + 2 * t + (e & 1), row = e < 2 ? row0 : row1;
          s[j][e] = (kt == qt && col > row) ? 0.0f : core::exp2_fast(s[j][e] * sl2 - (e < 2 ? lse0 : lse1));
        }
      to_a(f, s);
    }
    Acc dp;
    mma_abt<D>(dp, dof, sm.b[buf]);
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) dp[j][e] = frag_value(f, j, e) * (dp[j][e] - (e < 2 ? d0 : d1)) * scale;
    to_a(f, dp);
    mma_ab<D>(dq_acc, f, sm.a[buf]);
    __syncthreads();
  }
  store_rows<D>(dq + head_start<D>(bh, NH, T, ldg) + std::int64_t(qt * kTile + warp * 16) * ldg, ldg, dq_acc, 1.0f, 1.0f);
}

// Whether the wgmma kernels run for `h`; forcing them where they can't is an error.
bool use_wgmma(const AttentionHeads& h) {
  if (h.kernel == FlashKernel::mma_sync) return false;
  if (flash_attention_wgmma_fits(h)) return true;
  if (h.kernel == FlashKernel::wgmma || h.kernel == FlashKernel::wgmma_tma)
    throw std::invalid_argument(
        "the wgmma attention kernels need an sm_90a build on a compute capability 9.0 GPU, head size 64 or 128 and T a multiple of 128");
  return false;
}

template <int D>
void forward(const AttentionHeads& h, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, cudaStream_t s) {
  flash::launch<kWarps * 32>(flash_forward_kernel<D>, sizeof(FwdSmem<D>), dim3(unsigned(h.T / kTile), unsigned(h.B * h.NH)), s, out,
                             h.ld_out, lse, q, k, v, h.ld_qkv, h.NH, h.kv_heads(), h.T, h.scale);
}

template <int D>
void backward(const AttentionHeads& h, bf16* dq, bf16* dk, bf16* dv, float* dsum, const bf16* dout, const bf16* out, const bf16* q,
              const bf16* k, const bf16* v, const float* lse, cudaStream_t s) {
  const std::int64_t rows = std::int64_t(h.B) * h.NH * h.T;
  flash_backward_rowdot_kernel<D><<<unsigned((rows * 8 + 255) / 256), 256, 0, s>>>(dsum, dout, out, h.ld_out, h.NH, h.T, rows);
  if (use_wgmma(h))
    return h.kernel == FlashKernel::wgmma ? flash_attention_backward_wgmma(h, dq, dk, dv, dsum, dout, q, k, v, lse, s)
                                          : flash_attention_backward_tma(h, dq, dk, dv, dsum, dout, q, k, v, lse, s);
  const dim3 grid(unsigned(h.T / kTile), unsigned(h.B * h.NH)), kv_grid(unsigned(h.T / kTile), unsigned(h.B * h.kv_heads()));
  const float* cdsum = dsum;
  flash::launch<kWarps * 32>(flash_backward_dkdv_kernel<D>, sizeof(BwdSmem<D>), kv_grid, s, dk, dv, h.ld_qkv, q, k, v, h.ld_qkv, dout,
                             h.ld_out, lse, cdsum, h.NH, h.kv_heads(), h.T, h.scale);
  flash::launch<kWarps * 32>(flash_backward_dq_kernel<D>, sizeof(BwdSmem<D>), grid, s, dq, h.ld_qkv, q, k, v, h.ld_qkv, dout, h.ld_out, lse,
                             cdsum, h.NH, h.kv_heads(), h.T, h.scale);
}

}  // namespace

bool flash_attention_supported(int T, int HS) { return (HS == 64 || HS == 128) && T % kTile == 0; }

void flash_attention_forward(const AttentionHeads& h, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, cudaStream_t s) {
  if (use_wgmma(h))
    h.kernel == FlashKernel::wgmma ? flash_attention_forward_wgmma(h, out, lse, q, k, v, s)
                                   : flash_attention_forward_tma(h, out, lse, q, k, v, s);
  else
    flash::with_head_size(h.HS, [&](auto d) { forward<decltype(d)::value>(h, out, lse, q, k, v, s); });
}

void flash_attention_backward(const AttentionHeads& h, bf16* dq, bf16* dk, bf16* dv, float* dsum, const bf16* dout, const bf16* out,
                              const bf16* q, const bf16* k, const bf16* v, const float* lse, cudaStream_t s) {
  flash::with_head_size(h.HS, [&](auto d) { backward<decltype(d)::value>(h, dq, dk, dv, dsum, dout, out, q, k, v, lse, s); });
}

}  // namespace fp8scope::gpu_model
