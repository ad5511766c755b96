// Fused causal attention on Hopper's warpgroup MMA (wgmma, sm_90a), forward and backward, for
// head sizes 64 and 128 and T a multiple of 128: the arithmetic of flash_attention.cu's mma.sync
// kernels (online softmax in base 2, BF16 probabilities and dS, FP32 accumulation, the
// log-sum-exp kept for backward, backward in two atomic-free passes that recompute P) with
// larger tiles and every product issued by a warpgroup instead of a warp.
//
// A block is two warpgroups (256 threads) over 128 rows of one head (queries in the forward and
// dQ, keys in dK/dV), 64 rows each, one block per SM. Every product is one of two kinds:
//  - "A B^T" contracting over the head size, both operands rows of swizzled tiles in shared
//    memory (Q K^T, K Q^T, dO V^T, V dO^T): D/16 wgmma with both operands read through
//    descriptors, no ldmatrix and no operand registers;
//  - "A B" contracting over a tile's rows, A a previous accumulator (P, dS) repacked in
//    registers as BF16 A operands (mma.sync's accumulator layout is the A operand's), B a tile in
//    its natural [rows][D] layout read MN-major (P V, P^T dO, dS^T Q, dS K).
// The softmax and dS run in registers on the accumulators, with the mma.sync kernels' code
// shapes. The next loop tile is fetched with cp.async while the current one is multiplied; tiles
// are stored with the 128-byte swizzle the descriptors name (core/wgmma.cuh), which also keeps
// the fetch's stores free of bank conflicts. The two warpgroups' softmaxes and products
// interleave on the SM's tensor cores.
#include "fp8scope/core/cp_async.cuh"
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/core/fast_math.cuh"
#include "fp8scope/core/wgmma.cuh"
#include "fp8scope/gpu_model/flash_common.cuh"
#include "fp8scope/gpu_model/kernels.cuh"

#include <cuda_bf16.h>

#include <cstdint>

namespace fp8scope::gpu_model {
namespace {

constexpr int kRows = 128;  // a block's own rows: two warpgroups of 64
constexpr int kKeys = 128;  // the forward's key tile
constexpr int kStep = 64;   // backward's loop tile (queries for dK/dV, keys for dQ)
constexpr int kThreads = 256;
constexpr std::uint32_t kGroupBytes = 1024;  // 8 swizzled rows of 128 bytes: the descriptors' row-group stride

template <int N>
using AccN = float[N / 2];  // a warpgroup's 64 x N FP32 accumulator, N/2 registers a thread
template <int D>
using AccD = float[D / 64][32];  // a 64 x D accumulator as D/64 panels of 64 columns
template <int K>
using FragsK = std::uint32_t[K / 16][4];  // a 64 x K BF16 A operand in registers, K/16 steps of 16

// Every array is a whole number of 1024-byte swizzle groups, so all stay aligned when the
// struct is (the kernels align it by hand: dynamic shared memory promises only 16 bytes).
template <int D>
struct FwdSmem {
  bf16 q[kRows * D];
  bf16 k[3][kKeys * D], v[2][kKeys * D];  // K runs a tile ahead of V (the forward's pipeline)
};
template <int D>
struct BwdSmem {
  bf16 x[kRows * D], y[kRows * D];        // the block's own tiles (K, V for dK/dV; Q, dO for dQ)
  bf16 a[2][kStep * D], b[2][kStep * D];  // the loop's tiles (Q, dO for dK/dV; K, V for dQ)
  float lse[2][kStep], dsum[2][kStep];    // dK/dV: per loop query row
};
template <class Smem>
constexpr std::size_t smem_bytes() {
  return sizeof(Smem) + kGroupBytes;  // room to align
}
template <class Smem>
__device__ __forceinline__ Smem& aligned_smem(unsigned char* raw) {
  const std::uint32_t a = core::smem_addr(raw);
  return *reinterpret_cast<Smem*>(raw + (kGroupBytes - a % kGroupBytes) % kGroupBytes);
}

// Starts copying a ROWS x D BF16 tile (row stride `ld` in global memory) into shared memory in
// the 128-byte swizzled layout, 16 bytes per copy.
template <int ROWS, int D>
__device__ __forceinline__ void fetch_swizzled(bf16* tile, const bf16* src, std::int64_t ld) {
  char* dst = reinterpret_cast<char*>(tile);
#pragma unroll
  for (int i = 0; i < ROWS * D / 8 / kThreads; ++i) {
    const int e = int(threadIdx.x) + i * kThreads, r = e / (D / 8), c = e % (D / 8);
    core::cp_async16(dst + core::swizzle128_offset(ROWS, r, c), src + r * ld + c * 8);
  }
}

// Waits for this thread's copies but the newest `pending` groups, makes them visible to wgmma's
// reads (the async proxy), and then for every thread's.
template <int PENDING>
__device__ __forceinline__ void tiles_ready() {
  core::cp_wait<PENDING>();
  core::fence_proxy_async_shared();
  __syncthreads();
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

// The thread's first row within the block's 128: warpgroup, warp and lane (g = lane / 4).
__device__ __forceinline__ int own_row() {
  const int wg = int(threadIdx.x) / 128, warp = (int(threadIdx.x) % 128) / 32, lane = int(threadIdx.x) % 32;
  return wg * 64 + warp * 16 + lane / 4;
}
// The shared address of the warpgroup's 64 rows in a [kRows x D] swizzled tile.
__device__ __forceinline__ std::uint32_t own_rows_addr(const bf16* tile) {
  return core::smem_addr(tile) + std::uint32_t(threadIdx.x / 128) * 64 * 128;
}

// One key tile of the online softmax on S in registers (register 4j+e: row r0 for e < 2 else
// r0 + 8, key first_key + 8j + 2t + (e & 1)): masks the keys after the row (diagonal tile only),
// moves to base 2, updates the row maxima m0/m1 and turns s into the unnormalised probabilities;
// returns in a0/a1 the factors by which the earlier output and sums shrink, in sum0/sum1 this
// thread's part of the tile's row sums.
template <int N>
__device__ __forceinline__ void softmax_tile(AccN<N>& s, bool diagonal, int first_key, int r0, float sl2, float& m0, float& m1, float& a0,
                                             float& a1, float& sum0, float& sum1) {
  const int t = int(threadIdx.x) % 4;
  float mt0 = -INFINITY, mt1 = -INFINITY;
#pragma unroll
  for (int j = 0; j < N / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int col = first_key + 8 * j + 2 * t + (e & 1), row = e < 2 ? r0 : r0 + 8;
      float& x = s[4 * j + e];
      x = (diagonal && col > row) ? -INFINITY : x * sl2;
      if (e < 2)
        mt0 = fmaxf(mt0, x);
      else
        mt1 = fmaxf(mt1, x);
    }
  // Finite: every row sees its diagonal key in the first tile (key 0 <= row).
  const float mn0 = fmaxf(m0, flash::quad_max(mt0)), mn1 = fmaxf(m1, flash::quad_max(mt1));
  a0 = core::exp2_fast(m0 - mn0), a1 = core::exp2_fast(m1 - mn1);
  m0 = mn0, m1 = mn1;
  sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
  for (int j = 0; j < N / 8; ++j) {
    s[4 * j] = core::exp2_fast(s[4 * j] - mn0), s[4 * j + 1] = core::exp2_fast(s[4 * j + 1] - mn0);
    s[4 * j + 2] = core::exp2_fast(s[4 * j + 2] - mn1), s[4 * j + 3] = core::exp2_fast(s[4 * j + 3] - mn1);
    sum0 += s[4 * j] + s[4 * j + 1], sum1 += s[4 * j + 2] + s[4 * j + 3];
  }
}

// Forward: per tile of 128 keys, S = Q K^T, the online softmax, O += P V, software-pipelined
// inside each warpgroup: the scores of tile kt+1 are multiplied together with P V of tile kt,
// and tile kt+1's softmax runs while P V is still in flight; the output is rescaled once that
// product is done. So K runs one tile ahead of V: K has three buffers (in use, next, being
// fetched), V two; one group of copies (K kt+2, V kt+1) per tile.
template <int D>
__global__ void __launch_bounds__(kThreads, 1) flash_forward_wgmma_kernel(bf16* out, int ldo, float* lse, const bf16* q, const bf16* k,
                                                                          const bf16* v, int ld, int NH, int KVH, int T, float scale) {
  extern __shared__ unsigned char smem_raw[];
  FwdSmem<D>& sm = aligned_smem<FwdSmem<D>>(smem_raw);
  // The longest rows (last query tiles) start first so the short ones fill the tail.
  const int qt = int(gridDim.x) - 1 - int(blockIdx.x), bh = blockIdx.y, t = int(threadIdx.x) % 4;
  const std::int64_t base = flash::head_start<D>(bh, NH, T, ld);
  const std::int64_t kvbase = flash::head_start<D>(flash::kv_of(bh, NH, KVH), KVH, T, ld);
  auto k_tile = [&](int kt) { return k + kvbase + std::int64_t(kt) * kKeys * ld; };
  auto v_tile = [&](int kt) { return v + kvbase + std::int64_t(kt) * kKeys * ld; };
  const int last = qt;  // kRows == kKeys: key tile qt is the diagonal
  fetch_swizzled<kRows, D>(sm.q, q + base + std::int64_t(qt) * kRows * ld, ld);
  fetch_swizzled<kKeys, D>(sm.k[0], k_tile(0), ld);
  core::cp_commit();
  if (last >= 1) fetch_swizzled<kKeys, D>(sm.k[1], k_tile(1), ld);
  fetch_swizzled<kKeys, D>(sm.v[0], v_tile(0), ld);
  core::cp_commit();
  const std::uint32_t q_addr = own_rows_addr(sm.q);
  const float sl2 = scale * core::kLog2e;  // exponentials in base 2
  const int row0 = qt * kRows + own_row(), row1 = row0 + 8;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f, a0, a1;
  FragsK<kKeys> pf;  // P of the tile whose P V is next
  {
    tiles_ready<1>();  // Q and K 0
    AccN<kKeys> s;
    core::wgmma_fence();
    issue_abt<D, kRows, kKeys>(s, q_addr, core::smem_addr(sm.k[0]));
    core::wgmma_commit();
    core::wgmma_wait<0>();
    core::wgmma_hold(s);
    softmax_tile<kKeys>(s, last == 0, 0, row0, sl2, m0, m1, a0, a1, l0, l1);
    to_a<kKeys>(pf, s);
  }
  AccD<D> o;
  zero<D>(o);
  // Branch-free around the products (ptxas serialises wgmma across such branches): every pass
  // multiplies the next tile's scores, the last tile's P V comes after the loop.
  for (int kt = 0; kt < last; ++kt) {
    tiles_ready<0>();  // K kt+1 and V kt; every thread is done with K kt-1 and V kt-1
    if (kt + 2 <= last) fetch_swizzled<kKeys, D>(sm.k[(kt + 2) % 3], k_tile(kt + 2), ld);
    fetch_swizzled<kKeys, D>(sm.v[(kt + 1) % 2], v_tile(kt + 1), ld);
    core::cp_commit();
    AccN<kKeys> s;
    core::wgmma_fence();  // pf written, o rescaled by this thread
    issue_abt<D, kRows, kKeys>(s, q_addr, core::smem_addr(sm.k[(kt + 1) % 3]));
    core::wgmma_commit();
    issue_ab<D, kKeys>(o, pf, core::smem_addr(sm.v[kt % 2]));
    core::wgmma_commit();
    core::wgmma_wait<1>();  // the scores; P V may still run
    core::wgmma_hold(s);
    float sum0, sum1;
    softmax_tile<kKeys>(s, kt + 1 == last, (kt + 1) * kKeys, row0, sl2, m0, m1, a0, a1, sum0, sum1);
    core::wgmma_wait<0>();
    hold<D>(o);
#pragma unroll
    for (int p = 0; p < D / 64; ++p)
#pragma unroll
      for (int j = 0; j < 8; ++j) o[p][4 * j] *= a0, o[p][4 * j + 1] *= a0, o[p][4 * j + 2] *= a1, o[p][4 * j + 3] *= a1;
    // The thread's partial row sums: the scaling by alpha is the same across the quad, so the
    // quad is summed once at the end.
    l0 = l0 * a0 + sum0, l1 = l1 * a1 + sum1;
    to_a<kKeys>(pf, s);
  }
  tiles_ready<0>();  // V of the last tile
  core::wgmma_fence();
  issue_ab<D, kKeys>(o, pf, core::smem_addr(sm.v[last % 2]));
  core::wgmma_commit();
  core::wgmma_wait<0>();
  hold<D>(o);
  l0 = flash::quad_sum(l0), l1 = flash::quad_sum(l1);
  store_rows<D>(out + flash::head_start<D>(bh, NH, T, ldo), ldo, row0, o, 1.0f / l0, 1.0f / l1);
  if (t == 0) {
    lse[std::int64_t(bh) * T + row0] = (m0 + __log2f(l0)) * flash::kLn2;
    lse[std::int64_t(bh) * T + row1] = (m1 + __log2f(l1)) * flash::kLn2;
  }
}

// Backward's two score-side products, both "A B^T" from shared memory over 64 loop rows, issued
// together and waited for: c1 = A1 B1^T, c2 = A2 B2^T.
template <int D>
__device__ __forceinline__ void two_abt(AccN<kStep>& c1, std::uint32_t a1, std::uint32_t b1, AccN<kStep>& c2, std::uint32_t a2,
                                        std::uint32_t b2) {
  core::wgmma_fence();
  issue_abt<D, kRows, kStep>(c1, a1, b1);
  issue_abt<D, kRows, kStep>(c2, a2, b2);
  core::wgmma_commit();
  core::wgmma_wait<0>();
  core::wgmma_hold(c1);
  core::wgmma_hold(c2);
}

// Backward's loop head: starts the next loop tile's copies when there is one (fetch_next), then
// waits for the current tile's.
template <class FetchNext>
__device__ __forceinline__ void fetch_next_and_wait(bool more, FetchNext&& fetch_next) {
  if (more) {
    fetch_next();
    tiles_ready<1>();
  } else {
    tiles_ready<0>();
  }
}

// dK, dV for 128 keys of one k/v head against every query tile of 64 at or after the diagonal
// of every q head that reads this k/v head, in transposed form: S^T = K Q^T (keys x queries),
// dV += P^T dO, dP^T = V dO^T, dK += dS^T Q.
template <int D>
__global__ void __launch_bounds__(kThreads, 1)
    flash_backward_dkdv_wgmma_kernel(bf16* dk, bf16* dv, int ldg, const bf16* q, const bf16* k, const bf16* v, int ld, const bf16* dout,
                                     int ldo, const float* lse, const float* dsum, int NH, int KVH, int T, float scale) {
  extern __shared__ unsigned char smem_raw[];
  BwdSmem<D>& sm = aligned_smem<BwdSmem<D>>(smem_raw);
  const int kb = blockIdx.x, bkv = blockIdx.y, t = int(threadIdx.x) % 4;  // kb = 0 has the most work
  // Pass `it`: q head (group member it / span) and its query tile first + it % span.
  const int nt = T / kStep, first = kb * kRows / kStep, group = NH / KVH, span = nt - first, passes = group * span;
  const int first_q = (bkv / KVH) * NH + (bkv % KVH) * group;  // the (batch, q head) index of the group's first head
  const std::int64_t kvbase = flash::head_start<D>(bkv, KVH, T, ld);
  auto fetch = [&](int it, int buf) {
    const int bh = first_q + it / span, qt = first + it % span;
    const std::int64_t rows = std::int64_t(bh) * T + std::int64_t(qt) * kStep;
    fetch_swizzled<kStep, D>(sm.a[buf], q + flash::head_start<D>(bh, NH, T, ld) + std::int64_t(qt) * kStep * ld, ld);
    fetch_swizzled<kStep, D>(sm.b[buf], dout + flash::head_start<D>(bh, NH, T, ldo) + std::int64_t(qt) * kStep * ldo, ldo);
    flash::fetch_row_floats(sm.lse[buf], lse + rows, 0);
    flash::fetch_row_floats(sm.dsum[buf], dsum + rows, 32);
    core::cp_commit();
  };
  fetch_swizzled<kRows, D>(sm.x, k + kvbase + std::int64_t(kb) * kRows * ld, ld);
  fetch_swizzled<kRows, D>(sm.y, v + kvbase + std::int64_t(kb) * kRows * ld, ld);
  fetch(0, 0);
  const std::uint32_t k_addr = own_rows_addr(sm.x), v_addr = own_rows_addr(sm.y);
  const float sl2 = scale * core::kLog2e;
  const int key0 = kb * kRows + own_row(), key1 = key0 + 8;
  AccD<D> dk_acc, dv_acc;
  zero<D>(dk_acc);
  zero<D>(dv_acc);
  for (int it = 0; it < passes; ++it) {
    const int qt = first + it % span, buf = it & 1;
    fetch_next_and_wait(it + 1 < passes, [&] { fetch(it + 1, buf ^ 1); });
    const std::uint32_t q_tile = core::smem_addr(sm.a[buf]), do_tile = core::smem_addr(sm.b[buf]);
    // S^T and dP^T together (both from shared memory), then dV and dK together.
    AccN<kStep> st, dpt;
    two_abt<D>(st, k_addr, q_tile, dpt, v_addr, do_tile);
    const float* l = sm.lse[buf];
    const float* d = sm.dsum[buf];
#pragma unroll
    for (int j = 0; j < kStep / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = 8 * j + 2 * t + (e & 1), key = e < 2 ? key0 : key1;
        float& x = st[4 * j + e];
        x = key > qt * kStep + col ? 0.0f : core::exp2_fast(x * sl2 - l[col] * core::kLog2e);
      }
    // dS from P^T as rounded to BF16 for dV, as the mma.sync kernel does.
    FragsK<kStep> pf, ds;
    to_a<kStep>(pf, st);
#pragma unroll
    for (int j = 0; j < kStep / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = 8 * j + 2 * t + (e & 1);
        dpt[4 * j + e] = flash::frag_value(pf, j, e) * (dpt[4 * j + e] - d[col]) * scale;
      }
    to_a<kStep>(ds, dpt);
    core::wgmma_fence();
    issue_ab<D, kStep>(dv_acc, pf, do_tile);
    issue_ab<D, kStep>(dk_acc, ds, q_tile);
    core::wgmma_commit();
    core::wgmma_wait<0>();
    hold<D>(dv_acc);
    hold<D>(dk_acc);
    __syncthreads();  // the buffer is refilled by the next pass's fetch
  }
  const std::int64_t head = flash::head_start<D>(bkv, KVH, T, ldg);
  store_rows<D>(dk + head, ldg, key0, dk_acc, 1.0f, 1.0f);
  store_rows<D>(dv + head, ldg, key0, dv_acc, 1.0f, 1.0f);
}

// dQ for 128 queries against every key tile of 64 up to the diagonal: S = Q K^T, dP = dO V^T,
// dQ += dS K. At D = 64 it fits in 128 registers, so two blocks share an SM.
template <int D>
constexpr int dq_min_blocks() {
  return D == 64 ? 2 : 1;
}
template <int D>
__global__ void __launch_bounds__(kThreads, dq_min_blocks<D>())
    flash_backward_dq_wgmma_kernel(bf16* dq, int ldg, const bf16* q, const bf16* k, const bf16* v, int ld, const bf16* dout, int ldo,
                                   const float* lse, const float* dsum, int NH, int KVH, int T, float scale) {
  extern __shared__ unsigned char smem_raw[];
  BwdSmem<D>& sm = aligned_smem<BwdSmem<D>>(smem_raw);
  const int qb = int(gridDim.x) - 1 - int(blockIdx.x), bh = blockIdx.y, t = int(threadIdx.x) % 4;
  const std::int64_t kvbase = flash::head_start<D>(flash::kv_of(bh, NH, KVH), KVH, T, ld);
  auto fetch = [&](int kt, int buf) {
    fetch_swizzled<kStep, D>(sm.a[buf], k + kvbase + std::int64_t(kt) * kStep * ld, ld);
    fetch_swizzled<kStep, D>(sm.b[buf], v + kvbase + std::int64_t(kt) * kStep * ld, ld);
    core::cp_commit();
  };
  fetch_swizzled<kRows, D>(sm.x, q + flash::head_start<D>(bh, NH, T, ld) + std::int64_t(qb) * kRows * ld, ld);
  fetch_swizzled<kRows, D>(sm.y, dout + flash::head_start<D>(bh, NH, T, ldo) + std::int64_t(qb) * kRows * ldo, ldo);
  fetch(0, 0);
  const std::uint32_t q_addr = own_rows_addr(sm.x), do_addr = own_rows_addr(sm.y);
  const float sl2 = scale * core::kLog2e;
  const int row0 = qb * kRows + own_row(), row1 = row0 + 8;
  const std::int64_t rows = std::int64_t(bh) * T;
  const float lse0 = lse[rows + row0] * core::kLog2e, lse1 = lse[rows + row1] * core::kLog2e;
  const float d0 = dsum[rows + row0], d1 = dsum[rows + row1];
  AccD<D> dq_acc;
  zero<D>(dq_acc);
  const int last = (qb + 1) * kRows / kStep - 1;  // the key tile holding the block's last diagonal
  for (int kt = 0; kt <= last; ++kt) {
    const int buf = kt & 1;
    fetch_next_and_wait(kt < last, [&] { fetch(kt + 1, buf ^ 1); });
    const std::uint32_t k_tile = core::smem_addr(sm.a[buf]), v_tile = core::smem_addr(sm.b[buf]);
    // S and dP together (both from shared memory), then dQ.
    AccN<kStep> s, dp;
    two_abt<D>(s, q_addr, k_tile, dp, do_addr, v_tile);
#pragma unroll
    for (int j = 0; j < kStep / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = kt * kStep + 8 * j + 2 * t + (e & 1), row = e < 2 ? row0 : row1;
        float& x = s[4 * j + e];
        x = col > row ? 0.0f : core::exp2_fast(x * sl2 - (e < 2 ? lse0 : lse1));
      }
    FragsK<kStep> f;  // P in BF16 (as in the dK/dV kernel), then dS
    to_a<kStep>(f, s);
#pragma unroll
    for (int j = 0; j < kStep / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) dp[4 * j + e] = flash::frag_value(f, j, e) * (dp[4 * j + e] - (e < 2 ? d0 : d1)) * scale;
    to_a<kStep>(f, dp);
    core::wgmma_fence();
    issue_ab<D, kStep>(dq_acc, f, k_tile);
    core::wgmma_commit();
    core::wgmma_wait<0>();
    hold<D>(dq_acc);
    __syncthreads();
  }
  store_rows<D>(dq + flash::head_start<D>(bh, NH, T, ldg), ldg, row0, dq_acc, 1.0f, 1.0f);
}

template <int D>
void forward(const AttentionHeads& h, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, cudaStream_t s) {
  flash::launch<kThreads>(flash_forward_wgmma_kernel<D>, smem_bytes<FwdSmem<D>>(), dim3(unsigned(h.T / kRows), unsigned(h.B * h.NH)), s,
                          out, h.ld_out, lse, q, k, v, h.ld_qkv, h.NH, h.kv_heads(), h.T, h.scale);
}

template <int D>
void backward(const AttentionHeads& h, bf16* dq, bf16* dk, bf16* dv, const float* dsum, const bf16* dout, const bf16* q, const bf16* k,
              const bf16* v, const float* lse, cudaStream_t s) {
  const std::size_t smem = smem_bytes<BwdSmem<D>>();
  flash::launch<kThreads>(flash_backward_dkdv_wgmma_kernel<D>, smem, dim3(unsigned(h.T / kRows), unsigned(h.B * h.kv_heads())), s, dk, dv,
                          h.ld_qkv, q, k, v, h.ld_qkv, dout, h.ld_out, lse, dsum, h.NH, h.kv_heads(), h.T, h.scale);
  flash::launch<kThreads>(flash_backward_dq_wgmma_kernel<D>, smem, dim3(unsigned(h.T / kRows), unsigned(h.B * h.NH)), s, dq, h.ld_qkv, q, k,
                          v, h.ld_qkv, dout, h.ld_out, lse, dsum, h.NH, h.kv_heads(), h.T, h.scale);
}

}  // namespace

bool flash_attention_wgmma_fits(const AttentionHeads& h) {
#ifdef FP8SCOPE_BUILT_FOR_SM90A
  return (h.HS == 64 || h.HS == 128) && h.T % kRows == 0 && core::device_compute_capability() == 90;
#else
  (void)h;
  return false;
#endif
}

void flash_attention_forward_wgmma(const AttentionHeads& h, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                                   cudaStream_t s) {
  if (h.HS == 128)
    forward<128>(h, out, lse, q, k, v, s);
  else
    forward<64>(h, out, lse, q, k, v, s);
}

void flash_attention_backward_wgmma(const AttentionHeads& h, bf16* dq, bf16* dk, bf16* dv, const float* dsum, const bf16* dout,
                                    const bf16* q, const bf16* k, const bf16* v, const float* lse, cudaStream_t s) {
  if (h.HS == 128)
    backward<128>(h, dq, dk, dv, dsum, dout, q, k, v, lse, s);
  else
    backward<64>(h, dq, dk, dv, dsum, dout, q, k, v, lse, s);
}

}  // namespace fp8scope::gpu_model
