#pragma once
// The pieces of the wgmma attention kernels that do not depend on how their tiles reach shared
// memory: the products, the online softmax, the backward passes' arithmetic and the stores.
// flash_attention_wgmma.cu (tiles fetched with cp.async by every thread, a block barrier per
// tile) and flash_attention_tma.cu (a producer warpgroup loading with TMA, consumers waiting on
// per-buffer barriers) both build their kernels from them, so the two kinds compute the same
// bits. A consumer warpgroup `wg` owns rows 64 wg .. 64 wg + 63 of its block's 128.
#include "fp8scope/core/cp_async.cuh"
#include "fp8scope/core/fast_math.cuh"
#include "fp8scope/core/wgmma.cuh"
#include "fp8scope/gpu_model/flash_common.cuh"
#include "fp8scope/gpu_model/kernels.cuh"

#include <cuda_bf16.h>

#include <cstddef>
#include <cstdint>

namespace fp8scope::gpu_model::wgmma_attention {

constexpr int kRows = 128;                   // a block's own rows: two warpgroups of 64
constexpr int kKeys = 128;                   // the forward's key tile
constexpr int kStep = 64;                    // backward's loop tile (queries for dK/dV, keys for dQ)
constexpr std::uint32_t kGroupBytes = 1024;  // 8 swizzled rows of 128 bytes: the descriptors' row-group stride

template <int N>
using AccN = float[N / 2];  // a warpgroup's 64 x N FP32 accumulator, N/2 registers a thread
template <int D>
using AccD = float[D / 64][32];  // a 64 x D accumulator as D/64 panels of 64 columns
template <int K>
using FragsK = std::uint32_t[K / 16][4];  // a 64 x K BF16 A operand in registers, K/16 steps of 16

template <class Smem>
constexpr std::size_t smem_bytes() {
  return sizeof(Smem) + kGroupBytes;  // room to align
}
template <class Smem>
__device__ __forceinline__ Smem& aligned_smem(unsigned char* raw) {
  const std::uint32_t a = core::smem_addr(raw);
  return *reinterpret_cast<Smem*>(raw + (kGroupBytes - a % kGroupBytes) % kGroupBytes);
}

// Issues c (64 x N) = A B^T over D: A the warpgroup's 64 rows in a swizzled [ROWS_A x D] tile
// (`a` is the address of its first row in the first panel), B a swizzled [N x D] tile. The
// contraction steps 16 columns (32 bytes along a swizzled row), a new panel every 64. Issuing
// only: the caller fences, commits and waits, so that independent products overlap.
template <int D, int ROWS_A, int N>
__device__ __forceinline__ void issue_abt(AccN<N>& c, std::uint32_t a, std::uint32_t b) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const std::uint32_t inner = std::uint32_t(kk % 4) * 32, panel = std::uint32_t(kk / 4);
    const std::uint64_t da = core::wgmma_desc(a + panel * ROWS_A * 128 + inner, 16, kGroupBytes);
    const std::uint64_t db = core::wgmma_desc(b + panel * N * 128 + inner, 16, kGroupBytes);
    if constexpr (N == 128)
      core::wgmma_m64n128k16_ss(c, da, db, kk > 0);
    else
      core::wgmma_m64n64k16_ss(c, da, db, kk > 0);
  }
}

// Issues c (64 x D) += A B: A a 64 x K operand in registers, B a swizzled [K x D] tile read
// MN-major; 16 rows of B (two row groups) per step, B's 64-column panels are c's.
template <int D, int K>
__device__ __forceinline__ void issue_ab(AccD<D>& c, const FragsK<K>& a, std::uint32_t b) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk)
#pragma unroll
    for (int p = 0; p < D / 64; ++p)
      core::wgmma_m64n64k16_rs_tb(
          c[p], a[kk], core::wgmma_desc(b + std::uint32_t(p) * K * 128 + std::uint32_t(kk) * 2 * kGroupBytes, K * 128, kGroupBytes), 1);
}
template <int D>
__device__ __forceinline__ void hold(AccD<D>& c) {
#pragma unroll
  for (int p = 0; p < D / 64; ++p) core::wgmma_hold(c[p]);
}

// An accumulator of 64 x N as the BF16 A operands of the next product: columns 16kk .. 16kk+15
// are accumulator groups 2kk and 2kk+1, whose (row, column pair) ownership is the A operand's.
template <int N>
__device__ __forceinline__ void to_a(FragsK<N>& a, const AccN<N>& c) {
#pragma unroll
  for (int kk = 0; kk < N / 16; ++kk) {
    a[kk][0] = flash::pack(c[8 * kk], c[8 * kk + 1]);
    a[kk][1] = flash::pack(c[8 * kk + 2], c[8 * kk + 3]);
    a[kk][2] = flash::pack(c[8 * kk + 4], c[8 * kk + 5]);
    a[kk][3] = flash::pack(c[8 * kk + 6], c[8 * kk + 7]);
  }
}

template <int D>
__device__ __forceinline__ void zero(AccD<D>& c) {
#pragma unroll
  for (int p = 0; p < D / 64; ++p)
#pragma unroll
    for (int i = 0; i < 32; ++i) c[p][i] = 0.0f;
}

// Writes a thread's share of a 64 x D accumulator (times mul0 on row r0, mul1 on row r0 + 8) as
// BF16 into `dst` (row stride ld).
template <int D>
__device__ __forceinline__ void store_rows(bf16* dst, std::int64_t ld, int r0, const AccD<D>& c, float mul0, float mul1) {
  const int t = int(threadIdx.x) % 4;
#pragma unroll
  for (int p = 0; p < D / 64; ++p)
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int col = 64 * p + 8 * j + 2 * t;
      *reinterpret_cast<__nv_bfloat162*>(dst + std::int64_t(r0) * ld + col) =
          __floats2bfloat162_rn(c[p][4 * j] * mul0, c[p][4 * j + 1] * mul0);
      *reinterpret_cast<__nv_bfloat162*>(dst + std::int64_t(r0 + 8) * ld + col) =
          __floats2bfloat162_rn(c[p][4 * j + 2] * mul1, c[p][4 * j + 3] * mul1);
    }
}

// The thread's first row within the block's 128: warpgroup wg, warp and lane (g = lane / 4).
__device__ __forceinline__ int own_row(int wg) {
  const int warp = (int(threadIdx.x) % 128) / 32, lane = int(threadIdx.x) % 32;
  return wg * 64 + warp * 16 + lane / 4;
}
// The shared address of warpgroup wg's 64 rows in a [kRows x D] swizzled tile.
__device__ __forceinline__ std::uint32_t own_rows_addr(const bf16* tile, int wg) {
  return core::smem_addr(tile) + std::uint32_t(wg) * 64 * 128;
}

// One key tile of the online softmax on S in registers (register 4j+e: row r0 for e < 2 else
// r0 + 8, key first_key + 8j + 2t + (e & 1)): masks the keys after the row (diagonal tile only),
// updates the row maxima m0/m1 (in base-2 units, scores times sl2) and turns s into the
// unnormalised probabilities exp2(s sl2 - m), one FFMA and one MUFU a score; returns in a0/a1
// the factors by which the earlier output and sums shrink, in sum0/sum1 this thread's part of
// the tile's row sums. The maxima and sums run as four independent chains a row, not one of
// N/8 links: with two consumer warps a scheduler there is little else to hide their latency.
template <int N>
__device__ __forceinline__ void softmax_tile(AccN<N>& s, bool diagonal, int first_key, int r0, float sl2, float& m0, float& m1, float& a0,
                                             float& a1, float& sum0, float& sum1) {
  constexpr int kChains = 4;
  static_assert(N / 8 % kChains == 0);
  const int t = int(threadIdx.x) % 4;
#pragma unroll
  for (int j = 0; j < N / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int col = first_key + 8 * j + 2 * t + (e & 1), row = e < 2 ? r0 : r0 + 8;
      s[4 * j + e] = (diagonal && col > row) ? -INFINITY : s[4 * j + e];  // a select: no branch among the products
    }
  float mt0[kChains], mt1[kChains];
#pragma unroll
  for (int c = 0; c < kChains; ++c) {
    mt0[c] = fmaxf(s[4 * c], s[4 * c + 1]);
    mt1[c] = fmaxf(s[4 * c + 2], s[4 * c + 3]);
  }
#pragma unroll
  for (int j = kChains; j < N / 8; ++j) {
    float& x0 = mt0[j % kChains];
    float& x1 = mt1[j % kChains];
    x0 = fmaxf(x0, fmaxf(s[4 * j], s[4 * j + 1]));
    x1 = fmaxf(x1, fmaxf(s[4 * j + 2], s[4 * j + 3]));
  }
  const float rt0 = fmaxf(fmaxf(mt0[0], mt0[1]), fmaxf(mt0[2], mt0[3]));
  const float rt1 = fmaxf(fmaxf(mt1[0], mt1[1]), fmaxf(mt1[2], mt1[3]));
  // Finite: every row sees its diagonal key in the first tile (key 0 <= row). sl2 > 0, so the
  // largest scaled score is the largest score scaled.
  const float mn0 = fmaxf(m0, flash::quad_max(rt0) * sl2), mn1 = fmaxf(m1, flash::quad_max(rt1) * sl2);
  a0 = core::exp2_fast(m0 - mn0), a1 = core::exp2_fast(m1 - mn1);
  m0 = mn0, m1 = mn1;
  float st0[kChains] = {}, st1[kChains] = {};
#pragma unroll
  for (int j = 0; j < N / 8; ++j) {
    s[4 * j] = core::exp2_fast(fmaf(s[4 * j], sl2, -mn0)), s[4 * j + 1] = core::exp2_fast(fmaf(s[4 * j + 1], sl2, -mn0));
    s[4 * j + 2] = core::exp2_fast(fmaf(s[4 * j + 2], sl2, -mn1)), s[4 * j + 3] = core::exp2_fast(fmaf(s[4 * j + 3], sl2, -mn1));
    st0[j % kChains] += s[4 * j] + s[4 * j + 1], st1[j % kChains] += s[4 * j + 2] + s[4 * j + 3];
  }
  sum0 = (st0[0] + st0[1]) + (st0[2] + st0[3]);
  sum1 = (st1[0] + st1[1]) + (st1[2] + st1[3]);
}

// The forward's output and row sums after a key tile: o shrinks by a0/a1 (rows r0, r0 + 8), the
// thread's partial sums take the tile's (the factor is the same across the quad, so the quad
// is summed once at the end).
template <int D>
__device__ __forceinline__ void rescale(AccD<D>& o, float& l0, float& l1, float a0, float a1, float sum0, float sum1) {
#pragma unroll
  for (int p = 0; p < D / 64; ++p)
#pragma unroll
    for (int j = 0; j < 8; ++j) o[p][4 * j] *= a0, o[p][4 * j + 1] *= a0, o[p][4 * j + 2] *= a1, o[p][4 * j + 3] *= a1;
  l0 = l0 * a0 + sum0, l1 = l1 * a1 + sum1;
}

// The forward's epilogue: the output rows normalised, and their log-sum-exps (natural log).
template <int D>
__device__ __forceinline__ void store_output(bf16* out, int ldo, float* lse_row, int row0, const AccD<D>& o, float m0, float m1, float l0,
                                             float l1) {
  l0 = flash::quad_sum(l0), l1 = flash::quad_sum(l1);
  store_rows<D>(out, ldo, row0, o, 1.0f / l0, 1.0f / l1);
  if (threadIdx.x % 4 == 0) {
    lse_row[row0] = (m0 + __log2f(l0)) * flash::kLn2;
    lse_row[row0 + 8] = (m1 + __log2f(l1)) * flash::kLn2;
  }
}

// The forward's first key tile (K 0 at k_tile): S = Q K^T, its softmax (diagonal: the tile is
// the diagonal one), and P as the A operands of its P V.
template <int D>
__device__ __forceinline__ void forward_first(FragsK<kKeys>& pf, std::uint32_t q_addr, std::uint32_t k_tile, bool diagonal, int row0,
                                              float sl2, float& m0, float& m1, float& l0, float& l1) {
  AccN<kKeys> s;
  core::wgmma_fence();
  issue_abt<D, kRows, kKeys>(s, q_addr, k_tile);
  core::wgmma_commit();
  core::wgmma_wait<0>();
  core::wgmma_hold(s);
  float a0, a1;
  softmax_tile<kKeys>(s, diagonal, 0, row0, sl2, m0, m1, a0, a1, l0, l1);
  to_a<kKeys>(pf, s);
}

// One step of the forward's pipeline inside a warpgroup: the scores of key tile kt+1 (K at
// k_next) are multiplied together with P V of tile kt (V at v_tile), and tile kt+1's softmax
// runs while P V is still in flight; the output is rescaled once that product is done.
// scores_done() is called once the scores are in (K kt+1 is no longer read), pv_done() once
// P V is (V kt is no longer read). Branch-free around the products (ptxas serialises wgmma
// across such branches).
template <int D, class ScoresDone, class PvDone>
__device__ __forceinline__ void forward_step(AccD<D>& o, FragsK<kKeys>& pf, std::uint32_t q_addr, std::uint32_t k_next,
                                             std::uint32_t v_tile, bool next_diagonal, int next_key, int row0, float sl2, float& m0,
                                             float& m1, float& l0, float& l1, ScoresDone&& scores_done, PvDone&& pv_done) {
  AccN<kKeys> s;
  core::wgmma_fence();  // pf written, o rescaled by this thread
  issue_abt<D, kRows, kKeys>(s, q_addr, k_next);
  core::wgmma_commit();
  issue_ab<D, kKeys>(o, pf, v_tile);
  core::wgmma_commit();
  core::wgmma_wait<1>();  // the scores; P V may still run
  core::wgmma_hold(s);
  scores_done();
  float a0, a1, sum0, sum1;
  softmax_tile<kKeys>(s, next_diagonal, next_key, row0, sl2, m0, m1, a0, a1, sum0, sum1);
  core::wgmma_wait<0>();
  hold<D>(o);
  pv_done();
  rescale<D>(o, l0, l1, a0, a1, sum0, sum1);
  to_a<kKeys>(pf, s);
}

// The forward's last P V (V at v_tile), waited for.
template <int D>
__device__ __forceinline__ void forward_last(AccD<D>& o, const FragsK<kKeys>& pf, std::uint32_t v_tile) {
  core::wgmma_fence();
  issue_ab<D, kKeys>(o, pf, v_tile);
  core::wgmma_commit();
  core::wgmma_wait<0>();
  hold<D>(o);
}

// The backward passes in three pieces, so that a kernel may either run them one after the
// other (dkdv_pass, dq_pass: each product waited for) or queue the next pass's score products
// behind this pass's gradient products (the TMA kernels' pipelined loops): the score-side
// products issued (S and dP, or S^T and dP^T, from shared memory), their elementwise part (P
// and dS as BF16 A operands), the gradient products issued.

// Issues c1 = A1 B1^T and c2 = A2 B2^T over 64 loop rows and commits them as one group; the
// caller has fenced.
template <int D>
__device__ __forceinline__ void issue_scores(AccN<kStep>& c1, std::uint32_t a1, std::uint32_t b1, AccN<kStep>& c2, std::uint32_t a2,
                                             std::uint32_t b2) {
  issue_abt<D, kRows, kStep>(c1, a1, b1);
  issue_abt<D, kRows, kStep>(c2, a2, b2);
  core::wgmma_commit();
}
// The same, fenced and waited for.
template <int D>
__device__ __forceinline__ void scores_waited(AccN<kStep>& c1, std::uint32_t a1, std::uint32_t b1, AccN<kStep>& c2, std::uint32_t a2,
                                              std::uint32_t b2) {
  core::wgmma_fence();
  issue_scores<D>(c1, a1, b1, c2, a2, b2);
  core::wgmma_wait<0>();
  core::wgmma_hold(c1);
  core::wgmma_hold(c2);
}

// dK/dV's elementwise part for the warpgroup's keys key0 / key0 + 8 (the thread's rows) against
// query tile qt of 64 (log-sum-exps and row dots at l / d): P^T from S^T, then dS^T from dP^T
// and P^T as rounded to BF16 for dV, as the mma.sync kernel does.
__device__ __forceinline__ void dkdv_grads(FragsK<kStep>& pf, FragsK<kStep>& ds, AccN<kStep>& st, AccN<kStep>& dpt, const float* l,
                                           const float* d, int key0, int qt, float sl2, float scale) {
  const int t = int(threadIdx.x) % 4, key1 = key0 + 8;
#pragma unroll
  for (int j = 0; j < kStep / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int col = 8 * j + 2 * t + (e & 1), key = e < 2 ? key0 : key1;
      float& x = st[4 * j + e];
      x = key > qt * kStep + col ? 0.0f : core::exp2_fast(x * sl2 - l[col] * core::kLog2e);
    }
  to_a<kStep>(pf, st);
#pragma unroll
  for (int j = 0; j < kStep / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int col = 8 * j + 2 * t + (e & 1);
      dpt[4 * j + e] = flash::frag_value(pf, j, e) * (dpt[4 * j + e] - d[col]) * scale;
    }
  to_a<kStep>(ds, dpt);
}

// Issues dV += P^T dO and dK += dS^T Q (Q and dO tiles at q_tile / do_tile) as one group.
template <int D>
__device__ __forceinline__ void issue_dkdv(AccD<D>& dk_acc, AccD<D>& dv_acc, const FragsK<kStep>& pf, const FragsK<kStep>& ds,
                                           std::uint32_t q_tile, std::uint32_t do_tile) {
  issue_ab<D, kStep>(dv_acc, pf, do_tile);
  issue_ab<D, kStep>(dk_acc, ds, q_tile);
  core::wgmma_commit();
}

// The second half of a dK/dV pass, from its waited S^T and dP^T: P^T and dS^T, then dV and dK
// issued and waited for (the pass's Q and dO tiles may then be refilled).
template <int D>
__device__ __forceinline__ void dkdv_grads_waited(AccD<D>& dk_acc, AccD<D>& dv_acc, FragsK<kStep>& pf, FragsK<kStep>& ds, AccN<kStep>& st,
                                                  AccN<kStep>& dpt, std::uint32_t q_tile, std::uint32_t do_tile, const float* l,
                                                  const float* d, int key0, int qt, float sl2, float scale) {
  dkdv_grads(pf, ds, st, dpt, l, d, key0, qt, sl2, scale);
  core::wgmma_fence();
  issue_dkdv<D>(dk_acc, dv_acc, pf, ds, q_tile, do_tile);
  core::wgmma_wait<0>();
  hold<D>(dv_acc);
  hold<D>(dk_acc);
}

// One pass of the dK/dV kernel for one warpgroup, against query tile qt of 64 whose Q and dO
// tiles are at q_tile / do_tile: S^T and dP^T together, then dV and dK together; returns once
// both are done (the tiles may then be refilled).
template <int D>
__device__ __forceinline__ void dkdv_pass(AccD<D>& dk_acc, AccD<D>& dv_acc, std::uint32_t k_addr, std::uint32_t v_addr,
                                          std::uint32_t q_tile, std::uint32_t do_tile, const float* l, const float* d, int key0, int qt,
                                          float sl2, float scale) {
  AccN<kStep> st, dpt;
  scores_waited<D>(st, k_addr, q_tile, dpt, v_addr, do_tile);
  FragsK<kStep> pf, ds;
  dkdv_grads_waited<D>(dk_acc, dv_acc, pf, ds, st, dpt, q_tile, do_tile, l, d, key0, qt, sl2, scale);
}

// A consumer warpgroup's side of the dK/dV kernel: its keys (the thread's rows key0, key0 + 8)
// in the block's K and V tiles, and its dK and dV accumulated over the passes.
template <int D>
struct DkdvRows {
  std::uint32_t k_addr, v_addr;
  int key0;
  float sl2, scale;
  AccD<D> dk, dv;
  __device__ __forceinline__ DkdvRows(const bf16* k_tile, const bf16* v_tile, int wg, int kb, float scale_)
      : k_addr(own_rows_addr(k_tile, wg)),
        v_addr(own_rows_addr(v_tile, wg)),
        key0(kb * kRows + own_row(wg)),
        sl2(scale_ * core::kLog2e),
        scale(scale_) {
    zero<D>(dk);
    zero<D>(dv);
  }
  // One pass against query tile qt (dkdv_pass).
  __device__ __forceinline__ void pass(std::uint32_t q_tile, std::uint32_t do_tile, const float* l, const float* d, int qt) {
    dkdv_pass<D>(dk, dv, k_addr, v_addr, q_tile, do_tile, l, d, key0, qt, sl2, scale);
  }
  // All `passes` passes, each pass's S^T and dP^T queued behind the previous pass's dV and dK,
  // so the warpgroup's products run back to back and it waits for them once a pass.
  // tiles(it, q_tile, do_tile, l, d, qt) waits for pass it's tiles and names them; done(it) is
  // called once pass it's products no longer read them.
  template <class Tiles, class Done>
  __device__ __forceinline__ void pipelined(int passes, Tiles&& tiles, Done&& done) {
    AccN<kStep> st, dpt;
    FragsK<kStep> pf, ds;
    std::uint32_t q_tile, do_tile;
    const float *l, *d;
    int qt;
    tiles(0, q_tile, do_tile, l, d, qt);
    scores_waited<D>(st, k_addr, q_tile, dpt, v_addr, do_tile);
    // Nothing stays in flight across the loop's back edge (ptxas would serialise the products).
    for (int it = 0; it + 1 < passes; ++it) {
      dkdv_grads(pf, ds, st, dpt, l, d, key0, qt, sl2, scale);
      core::wgmma_fence();
      issue_dkdv<D>(dk, dv, pf, ds, q_tile, do_tile);
      tiles(it + 1, q_tile, do_tile, l, d, qt);
      issue_scores<D>(st, k_addr, q_tile, dpt, v_addr, do_tile);
      core::wgmma_wait<0>();  // pass it's gradients and pass it + 1's scores
      core::wgmma_hold(st);
      core::wgmma_hold(dpt);
      hold<D>(dv);
      hold<D>(dk);
      done(it);
    }
    dkdv_grads_waited<D>(dk, dv, pf, ds, st, dpt, q_tile, do_tile, l, d, key0, qt, sl2, scale);
    done(passes - 1);
  }
  // dK and dV of k/v head bkv into their [B, T, ldg] tensors.
  __device__ __forceinline__ void store(bf16* dk_out, bf16* dv_out, int ldg, int bkv, int KVH, int T) const {
    const std::int64_t head = flash::head_start<D>(bkv, KVH, T, ldg);
    store_rows<D>(dk_out + head, ldg, key0, dk, 1.0f, 1.0f);
    store_rows<D>(dv_out + head, ldg, key0, dv, 1.0f, 1.0f);
  }
};

// What the dQ kernel keeps of a thread's two queries (row0, row0 + 8 of head bh): their
// log-sum-exps in base 2 and row dots.
struct DqRows {
  int row0;
  float lse0, lse1, d0, d1;
};
__device__ __forceinline__ DqRows dq_rows(const float* lse, const float* dsum, int bh, int T, int row0) {
  const std::int64_t rows = std::int64_t(bh) * T;
  return {row0, lse[rows + row0] * core::kLog2e, lse[rows + row0 + 8] * core::kLog2e, dsum[rows + row0], dsum[rows + row0 + 8]};
}

// dQ's elementwise part for the warpgroup's queries r against key tile kt of 64: P from S (as
// in the dK/dV pass), then dS into the same fragments, the A operand of dQ's product.
__device__ __forceinline__ void dq_grads(FragsK<kStep>& f, AccN<kStep>& s, AccN<kStep>& dp, int kt, const DqRows& r, float sl2,
                                         float scale) {
  const int t = int(threadIdx.x) % 4, row0 = r.row0, row1 = row0 + 8;
  const float lse0 = r.lse0, lse1 = r.lse1, d0 = r.d0, d1 = r.d1;
#pragma unroll
  for (int j = 0; j < kStep / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int col = kt * kStep + 8 * j + 2 * t + (e & 1), row = e < 2 ? row0 : row1;
      float& x = s[4 * j + e];
      x = col > row ? 0.0f : core::exp2_fast(x * sl2 - (e < 2 ? lse0 : lse1));
    }
  to_a<kStep>(f, s);
#pragma unroll
  for (int j = 0; j < kStep / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) dp[4 * j + e] = flash::frag_value(f, j, e) * (dp[4 * j + e] - (e < 2 ? d0 : d1)) * scale;
  to_a<kStep>(f, dp);
}

// The second half of a dQ pass, from its waited S and dP: dS, then dQ's product issued and
// waited for (the pass's K tile may then be refilled).
template <int D>
__device__ __forceinline__ void dq_grads_waited(AccD<D>& dq_acc, FragsK<kStep>& f, AccN<kStep>& s, AccN<kStep>& dp, std::uint32_t k_tile,
                                                int kt, const DqRows& r, float sl2, float scale) {
  dq_grads(f, s, dp, kt, r, sl2, scale);
  core::wgmma_fence();
  issue_ab<D, kStep>(dq_acc, f, k_tile);
  core::wgmma_commit();
  core::wgmma_wait<0>();
  hold<D>(dq_acc);
}

// One pass of the dQ kernel for one warpgroup: its queries r against key tile kt of 64 at
// k_tile / v_tile. S and dP together (both from shared memory), then dQ; returns once it is done.
template <int D>
__device__ __forceinline__ void dq_pass(AccD<D>& dq_acc, std::uint32_t q_addr, std::uint32_t do_addr, std::uint32_t k_tile,
                                        std::uint32_t v_tile, int kt, const DqRows& r, float sl2, float scale) {
  AccN<kStep> s, dp;
  scores_waited<D>(s, q_addr, k_tile, dp, do_addr, v_tile);
  FragsK<kStep> f;  // P in BF16 (as in the dK/dV pass), then dS
  dq_grads_waited<D>(dq_acc, f, s, dp, k_tile, kt, r, sl2, scale);
}

// The dQ passes over key tiles 0 .. last, each pass's S and dP queued behind the previous
// pass's dQ product (DkdvRows::pipelined's scheme). tiles(kt, k_tile, v_tile) waits for key
// tile kt and names it; done(kt) is called once its products no longer read it.
template <int D, class Tiles, class Done>
__device__ __forceinline__ void dq_pipelined(AccD<D>& dq_acc, std::uint32_t q_addr, std::uint32_t do_addr, int last, const DqRows& r,
                                             float sl2, float scale, Tiles&& tiles, Done&& done) {
  AccN<kStep> s, dp;
  FragsK<kStep> f;
  std::uint32_t k_tile, v_tile;
  tiles(0, k_tile, v_tile);
  scores_waited<D>(s, q_addr, k_tile, dp, do_addr, v_tile);
  for (int kt = 0; kt < last; ++kt) {
    dq_grads(f, s, dp, kt, r, sl2, scale);
    core::wgmma_fence();
    issue_ab<D, kStep>(dq_acc, f, k_tile);
    core::wgmma_commit();
    tiles(kt + 1, k_tile, v_tile);
    issue_scores<D>(s, q_addr, k_tile, dp, do_addr, v_tile);
    core::wgmma_wait<0>();  // pass kt's dQ and pass kt + 1's scores
    core::wgmma_hold(s);
    core::wgmma_hold(dp);
    hold<D>(dq_acc);
    done(kt);
  }
  dq_grads_waited<D>(dq_acc, f, s, dp, k_tile, last, r, sl2, scale);
  done(last);
}

}  // namespace fp8scope::gpu_model::wgmma_attention
