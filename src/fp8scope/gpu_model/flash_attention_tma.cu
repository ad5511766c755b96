// The wgmma attention kernels warp-specialised: the products and softmax of
// flash_attention_wgmma.cu (flash_wgmma_parts.cuh, the same bits), with the tiles brought by
// Hopper's TMA instead of every thread's cp.async. A block is three warpgroups: one producer
// whose single thread issues each tile's load as soon as its buffer is free, and two consumers
// of 64 rows each that wait only for the tiles they use. Each buffer has a "full" barrier (the
// producer arms it with the tile's bytes, the TMA completes it) and an "empty" one (every
// consumer warp arrives once its products have read the buffer). So there is no block-wide
// barrier inside the loops: the two consumers may drift apart, one's softmax running under the
// other's products, and no consumer spends issue slots or registers on address arithmetic and
// copies. The producer gives its registers to the consumers (24 against 240 a thread).
// The grid is persistent: a block per SM takes work tiles (TileOrder) as it frees up
// (produce/consume), so the producer loads the next tile's own rows and first key tiles while
// the consumers finish this one's last products and store it, where a block per tile paid its
// launch, its barriers' set-up and its first loads' latency every time (at T=1024 a forward
// block averages 4.5 key tiles).
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/core/tensor_map.hpp"
#include "fp8scope/core/tma.cuh"
#include "fp8scope/gpu_model/flash_tile_order.hpp"
#include "fp8scope/gpu_model/flash_wgmma_parts.cuh"

#include <cuda.h>

#include <algorithm>
#include <cstddef>

namespace fp8scope::gpu_model {
namespace {
using namespace wgmma_attention;
using flash::tile_order;
using flash::TileOrder;

constexpr int kThreads = 384;  // warpgroup 0 produces, 1 and 2 consume
constexpr int kProducerRegs = 24, kConsumerRegs = 240;
constexpr int kConsumerWarps = 8;  // the arrivals that free a buffer
constexpr int kFwdKStages = 3, kBwdStages = 3;
template <int D>
constexpr int fwd_v_stages() {
  return D == 64 ? 3 : 2;  // at D = 128, 32 KB a tile: Q, three K and two V fill 192 KB
}

// Shared memory: the tiles first (whole 1024-byte swizzle groups, so each stays aligned), then
// the barriers.
template <int D>
struct TmaFwdSmem {
  bf16 q[kRows * D];
  bf16 k[kFwdKStages][kKeys * D], v[fwd_v_stages<D>()][kKeys * D];
  std::uint64_t q_full, q_empty, k_full[kFwdKStages], k_empty[kFwdKStages], v_full[fwd_v_stages<D>()], v_empty[fwd_v_stages<D>()];
  int tile;  // the work tile whose Q q_full brings
};
template <int D>
struct TmaBwdSmem {
  bf16 x[kRows * D], y[kRows * D];                          // the block's own tiles (K, V for dK/dV; Q, dO for dQ)
  bf16 a[kBwdStages][kStep * D], b[kBwdStages][kStep * D];  // the loop's tiles (Q, dO for dK/dV; K, V for dQ)
  float lse[kBwdStages][kStep], dsum[kBwdStages][kStep];    // dK/dV: per loop query row
  std::uint64_t own_full, own_empty, full[kBwdStages], empty[kBwdStages];
  int tile;  // the work tile whose own rows own_full brings
};

// A persistent grid: a block per SM (one fits: 384 threads at 168 registers), no more than
// tiles; or a block per tile.
dim3 grid_of(const TileOrder& order, bool persistent) {
  return dim3(unsigned(persistent ? std::max(1, std::min(order.tiles(), core::device_sm_count())) : order.tiles()));
}

// The n-th use (from 0) of a ring of S buffers: which buffer, and the parity of the phase of its
// full barrier that brings it; the producer's n-th refill waits for the empty barrier's phase
// of the previous use, parity(n - S).
template <int S>
__device__ __forceinline__ int ring_buf(int n) {
  return n % S;
}
template <int S>
__device__ __forceinline__ std::uint32_t ring_parity(int n) {
  return std::uint32_t(n / S) & 1u;
}

// Loads a ROWS x D tile (D/64 boxes of 64 columns, one per swizzled panel) at column `col`,
// row `row` of `map` into `tile`, its bytes completing on `bar` (armed by the caller).
template <int ROWS, int D>
__device__ __forceinline__ void load_tile(bf16* tile, const CUtensorMap* map, int col, int row, std::uint64_t* bar) {
#pragma unroll
  for (int p = 0; p < D / 64; ++p) core::tma_load_2d(tile + p * ROWS * 64, map, col + 64 * p, row, bar);
}
template <int ROWS, int D>
constexpr std::uint32_t tile_bytes() {
  return std::uint32_t(ROWS * D * 2);
}

// A consumer warp's arrival on an empty barrier: lane 0 for the warp.
__device__ __forceinline__ void release(std::uint64_t* bar) { core::mbar_arrive_if(bar, threadIdx.x % 32 == 0); }

// Waits (every consumer thread) for the n-th fill of buffer ring_buf<S>(n).
template <int S>
__device__ __forceinline__ void wait_full(std::uint64_t* full, int n) {
  core::mbar_wait(&full[ring_buf<S>(n)], ring_parity<S>(n));
}
// The producer's wait before the n-th fill: the consumers are done with use n - S.
template <int S>
__device__ __forceinline__ void wait_empty(std::uint64_t* empty, int n) {
  if (n >= S) core::mbar_wait(&empty[ring_buf<S>(n)], ring_parity<S>(n - S));
}

// Initialises a ring's barriers and the two for the work tile's own rows (thread 0: one
// arrival, the producer's, completes a full barrier, every consumer warp's an empty one) and
// publishes them to the block and the TMA unit.
template <int S>
__device__ __forceinline__ void init_barriers(std::uint64_t (&full)[S], std::uint64_t (&empty)[S], std::uint64_t& own_full,
                                              std::uint64_t& own_empty) {
  if (threadIdx.x == 0) {
    for (int i = 0; i < S; ++i) core::mbar_init(&full[i], 1), core::mbar_init(&empty[i], kConsumerWarps);
    core::mbar_init(&own_full, 1);
    core::mbar_init(&own_empty, kConsumerWarps);
    core::mbar_fence_init();
  }
  __syncthreads();
}
// The producer's wait before the j-th fill of a single buffer (a tile's own rows).
__device__ __forceinline__ void wait_own_empty(std::uint64_t* empty, int j) {
  if (j > 0) core::mbar_wait(empty, std::uint32_t(j - 1) & 1u);
}

// Work tiles handed out as blocks free up: a block's first tile is its index, each next one the
// next value of a counter (plus the grid), so tiles start in TileOrder and a block that drew
// light tiles takes more of them; a fixed stride gave every block the same count whatever the
// weights (on an H100 the persistent grid then lost to a block per tile at head 128). The last
// producer to finish resets the counter, so every launch (and every replay of a captured step)
// starts from zero. One counter per kernel: launches of one kernel on one GPU must not overlap
// (the model runs one stream per GPU).
struct TileClaims {
  unsigned next, done;
};
__device__ TileClaims g_forward_claims, g_dkdv_claims, g_dq_claims;

// The producer's side: for each tile it claims, waits for `empty` to free the own rows' buffer,
// publishes the tile in `slot` (the arrival on `full`, armed by body(t) with the rows' bytes,
// releases it to the consumers) and runs body(t), which issues all of the tile's loads; a value
// >= tiles, published with a plain arrival, ends the consumers.
template <class Body>
__device__ __forceinline__ void produce(TileClaims& claims, int tiles, int& slot, std::uint64_t* full, std::uint64_t* empty, Body&& body) {
  int t = int(blockIdx.x);
  for (int j = 0;; ++j) {
    wait_own_empty(empty, j);
    slot = t;
    if (t >= tiles) {
      core::mbar_arrive_if(full, true);
      break;
    }
    body(t);
    t = int(gridDim.x) + int(atomicAdd(&claims.next, 1u));
  }
  if (atomicAdd(&claims.done, 1u) == gridDim.x - 1) claims.next = 0, claims.done = 0;
}
// The consumers' side: body(t) for every tile published in `slot`, each once `full` brought its
// own rows.
template <class Body>
__device__ __forceinline__ void consume(int tiles, const int& slot, std::uint64_t* full, Body&& body) {
  for (int j = 0;; ++j) {
    core::mbar_wait(full, std::uint32_t(j) & 1u);
    const int t = *static_cast<const volatile int*>(&slot);
    if (t >= tiles) break;
    body(t);
  }
}

// Forward: for each of its work tiles (128 queries of one head) the producer loads Q, then K and
// V of every key tile up to the diagonal, each into the next free buffer of its ring (the rings
// run on across tiles); the consumers run flash_attention_wgmma.cu's pipeline (forward_step), K
// one tile ahead of V, and free Q with the tile's last scores.
template <int D>
__global__ void __launch_bounds__(kThreads, 1)
    flash_forward_tma_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap k_map,
                             const __grid_constant__ CUtensorMap v_map, bf16* out, int ldo, float* lse, int NH, int KVH, int T, float scale,
                             TileOrder order) {
  constexpr int KS = kFwdKStages, VS = fwd_v_stages<D>();
  extern __shared__ unsigned char smem_raw[];
  TmaFwdSmem<D>& sm = aligned_smem<TmaFwdSmem<D>>(smem_raw);
  const int tiles = order.tiles(), nq = order.per_head;
  if (threadIdx.x == 0) {
    core::mbar_init(&sm.q_full, 1);
    core::mbar_init(&sm.q_empty, kConsumerWarps);
    for (int i = 0; i < KS; ++i) core::mbar_init(&sm.k_full[i], 1), core::mbar_init(&sm.k_empty[i], kConsumerWarps);
    for (int i = 0; i < VS; ++i) core::mbar_init(&sm.v_full[i], 1), core::mbar_init(&sm.v_empty[i], kConsumerWarps);
    core::mbar_fence_init();
  }
  __syncthreads();
  if (threadIdx.x < 128) {
    core::regs_shrink<kProducerRegs>();
    if (threadIdx.x == 0) {
      int n = 0;  // key tiles loaded so far: the rings' position
      produce(g_forward_claims, tiles, sm.tile, &sm.q_full, &sm.q_empty, [&](int t) {
        int rank, bh;
        order.at(t, rank, bh);
        const int qt = nq - 1 - rank, row = (bh / NH) * T, kv_col = (flash::kv_of(bh, NH, KVH) % KVH) * D;
        core::mbar_expect_tx(&sm.q_full, tile_bytes<kRows, D>());
        load_tile<kRows, D>(sm.q, &q_map, (bh % NH) * D, row + qt * kRows, &sm.q_full);
        for (int kt = 0; kt <= qt; ++kt, ++n) {  // kRows == kKeys: key tile qt is the diagonal
          wait_empty<KS>(sm.k_empty, n);
          core::mbar_expect_tx(&sm.k_full[ring_buf<KS>(n)], tile_bytes<kKeys, D>());
          load_tile<kKeys, D>(sm.k[ring_buf<KS>(n)], &k_map, kv_col, row + kt * kKeys, &sm.k_full[ring_buf<KS>(n)]);
          wait_empty<VS>(sm.v_empty, n);
          core::mbar_expect_tx(&sm.v_full[ring_buf<VS>(n)], tile_bytes<kKeys, D>());
          load_tile<kKeys, D>(sm.v[ring_buf<VS>(n)], &v_map, kv_col, row + kt * kKeys, &sm.v_full[ring_buf<VS>(n)]);
        }
      });
    }
    return;
  }
  core::regs_grow<kConsumerRegs>();
  const int wg = int(threadIdx.x / 128) - 1;
  const bool lane0 = threadIdx.x % 32 == 0;
  const std::uint32_t q_addr = own_rows_addr(sm.q, wg);
  const float sl2 = scale * core::kLog2e;  // exponentials in base 2
  int n = 0;                               // the rings' position at the tile's first key tile
  consume(tiles, sm.tile, &sm.q_full, [&](int t) {
    int rank, bh;
    order.at(t, rank, bh);
    const int qt = nq - 1 - rank, last = qt, row0 = qt * kRows + own_row(wg);
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    FragsK<kKeys> pf;  // P of the tile whose P V is next
    wait_full<KS>(sm.k_full, n);
    forward_first<D>(pf, q_addr, core::smem_addr(sm.k[ring_buf<KS>(n)]), last == 0, row0, sl2, m0, m1, l0, l1);
    release(&sm.k_empty[ring_buf<KS>(n)]);
    core::mbar_arrive_if(&sm.q_empty, lane0 && last == 0);  // Q's last scores are in
    AccD<D> o;
    zero<D>(o);
    for (int kt = 0; kt < last; ++kt) {
      const int kn = ring_buf<KS>(n + kt + 1), vb = ring_buf<VS>(n + kt);
      wait_full<KS>(sm.k_full, n + kt + 1);
      wait_full<VS>(sm.v_full, n + kt);
      forward_step<D>(
          o, pf, q_addr, core::smem_addr(sm.k[kn]), core::smem_addr(sm.v[vb]), kt + 1 == last, (kt + 1) * kKeys, row0, sl2, m0, m1, l0, l1,
          [&] {
            release(&sm.k_empty[kn]);
            core::mbar_arrive_if(&sm.q_empty, lane0 && kt + 1 == last);
          },
          [&] { release(&sm.v_empty[vb]); });
    }
    const int vl = ring_buf<VS>(n + last);
    wait_full<VS>(sm.v_full, n + last);
    forward_last<D>(o, pf, core::smem_addr(sm.v[vl]));
    release(&sm.v_empty[vl]);
    store_output<D>(out + flash::head_start<D>(bh, NH, T, ldo), ldo, lse + std::int64_t(bh) * T, row0, o, m0, m1, l0, l1);
    n += last + 1;
  });
}

// dK, dV for 128 keys of one k/v head per work tile (flash_attention_wgmma.cu's kernel of that
// name): the producer loads the tile's K and V once, then per pass the Q and dO tiles and the
// rows' log-sum-exps and row dots; the consumers run the passes pipelined (each pass's score
// products queued behind the previous pass's dV and dK) and free K and V after the last.
template <int D>
__global__ void __launch_bounds__(kThreads, 1)
    flash_backward_dkdv_tma_kernel(const __grid_constant__ CUtensorMap k_map, const __grid_constant__ CUtensorMap v_map,
                                   const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap do_map, bf16* dk,
                                   bf16* dv, int ldg, const float* lse, const float* dsum, int NH, int KVH, int T, float scale,
                                   TileOrder order) {
  constexpr int S = kBwdStages;
  extern __shared__ unsigned char smem_raw[];
  TmaBwdSmem<D>& sm = aligned_smem<TmaBwdSmem<D>>(smem_raw);
  const int tiles = order.tiles(), nt = T / kStep, group = NH / KVH;
  // Pass `it` of key tile kb: q head (group member it / span) and its query tile first + it % span.
  auto passes_of = [&](int kb, int& first, int& span) {
    first = kb * kRows / kStep, span = nt - first;
    return group * span;
  };
  init_barriers(sm.full, sm.empty, sm.own_full, sm.own_empty);
  if (threadIdx.x < 128) {
    core::regs_shrink<kProducerRegs>();
    if (threadIdx.x == 0) {
      int n = 0;  // loop tiles loaded so far: the ring's position
      produce(g_dkdv_claims, tiles, sm.tile, &sm.own_full, &sm.own_empty, [&](int t) {
        int kb, bkv, first, span;
        order.at(t, kb, bkv);  // rank 0 (kb = 0) has the most passes
        const int passes = passes_of(kb, first, span), row = (bkv / KVH) * T;
        const int first_q = (bkv / KVH) * NH + (bkv % KVH) * group;  // the (batch, q head) index of the group's first head
        core::mbar_expect_tx(&sm.own_full, 2 * tile_bytes<kRows, D>());
        load_tile<kRows, D>(sm.x, &k_map, (bkv % KVH) * D, row + kb * kRows, &sm.own_full);
        load_tile<kRows, D>(sm.y, &v_map, (bkv % KVH) * D, row + kb * kRows, &sm.own_full);
        for (int it = 0; it < passes; ++it, ++n) {
          const int bh = first_q + it / span, qt = first + it % span, buf = ring_buf<S>(n);
          wait_empty<S>(sm.empty, n);
          core::mbar_expect_tx(&sm.full[buf], 2 * tile_bytes<kStep, D>() + 2 * kStep * 4);
          load_tile<kStep, D>(sm.a[buf], &q_map, (bh % NH) * D, row + qt * kStep, &sm.full[buf]);
          load_tile<kStep, D>(sm.b[buf], &do_map, (bh % NH) * D, row + qt * kStep, &sm.full[buf]);
          const std::int64_t rows = std::int64_t(bh) * T + std::int64_t(qt) * kStep;
          core::bulk_load(sm.lse[buf], lse + rows, kStep * 4, &sm.full[buf]);
          core::bulk_load(sm.dsum[buf], dsum + rows, kStep * 4, &sm.full[buf]);
        }
      });
    }
    return;
  }
  core::regs_grow<kConsumerRegs>();
  const int wg = int(threadIdx.x / 128) - 1;
  int n = 0;
  consume(tiles, sm.tile, &sm.own_full, [&](int t) {
    int kb, bkv, first, span;
    order.at(t, kb, bkv);
    const int passes = passes_of(kb, first, span);
    DkdvRows<D> own(sm.x, sm.y, wg, kb, scale);
    if constexpr (D == 64) {
      own.pipelined(
          passes,
          [&](int it, std::uint32_t& q_tile, std::uint32_t& do_tile, const float*& l, const float*& d, int& qt) {
            const int buf = ring_buf<S>(n + it);
            wait_full<S>(sm.full, n + it);
            q_tile = core::smem_addr(sm.a[buf]), do_tile = core::smem_addr(sm.b[buf]), l = sm.lse[buf], d = sm.dsum[buf];
            qt = first + it % span;
          },
          [&](int it) { release(&sm.empty[ring_buf<S>(n + it)]); });
    } else {
      // At D = 128 dK and dV take 128 registers a thread; with a second pass's scores and
      // operands beside them (96 more) the consumers' 240 do not hold the rest: ptxas
      // serialised every product and spilled.
      for (int it = 0; it < passes; ++it) {
        const int buf = ring_buf<S>(n + it);
        wait_full<S>(sm.full, n + it);
        own.pass(core::smem_addr(sm.a[buf]), core::smem_addr(sm.b[buf]), sm.lse[buf], sm.dsum[buf], first + it % span);
        release(&sm.empty[buf]);
      }
    }
    release(&sm.own_empty);  // the last pass's products are done with K and V
    own.store(dk, dv, ldg, bkv, KVH, T);
    n += passes;
  });
}

// dQ for 128 queries per work tile (flash_attention_wgmma.cu's kernel of that name): the
// producer loads the tile's Q and dO once, then K and V of every key tile of 64 up to the
// diagonal; the consumers run the passes pipelined (each pass's score products queued behind
// the previous pass's dQ product) and free Q and dO after the last.
template <int D>
__global__ void __launch_bounds__(kThreads, 1)
    flash_backward_dq_tma_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap do_map,
                                 const __grid_constant__ CUtensorMap k_map, const __grid_constant__ CUtensorMap v_map, bf16* dq, int ldg,
                                 const float* lse, const float* dsum, int NH, int KVH, int T, float scale, TileOrder order) {
  constexpr int S = kBwdStages;
  extern __shared__ unsigned char smem_raw[];
  TmaBwdSmem<D>& sm = aligned_smem<TmaBwdSmem<D>>(smem_raw);
  const int tiles = order.tiles(), nq = order.per_head;
  init_barriers(sm.full, sm.empty, sm.own_full, sm.own_empty);
  if (threadIdx.x < 128) {
    core::regs_shrink<kProducerRegs>();
    if (threadIdx.x == 0) {
      int n = 0;
      produce(g_dq_claims, tiles, sm.tile, &sm.own_full, &sm.own_empty, [&](int t) {
        int rank, bh;
        order.at(t, rank, bh);
        const int qb = nq - 1 - rank, last = (qb + 1) * kRows / kStep - 1;  // the key tile holding the block's last diagonal
        const int row = (bh / NH) * T, kv_col = (flash::kv_of(bh, NH, KVH) % KVH) * D;
        core::mbar_expect_tx(&sm.own_full, 2 * tile_bytes<kRows, D>());
        load_tile<kRows, D>(sm.x, &q_map, (bh % NH) * D, row + qb * kRows, &sm.own_full);
        load_tile<kRows, D>(sm.y, &do_map, (bh % NH) * D, row + qb * kRows, &sm.own_full);
        for (int kt = 0; kt <= last; ++kt, ++n) {
          const int buf = ring_buf<S>(n);
          wait_empty<S>(sm.empty, n);
          core::mbar_expect_tx(&sm.full[buf], 2 * tile_bytes<kStep, D>());
          load_tile<kStep, D>(sm.a[buf], &k_map, kv_col, row + kt * kStep, &sm.full[buf]);
          load_tile<kStep, D>(sm.b[buf], &v_map, kv_col, row + kt * kStep, &sm.full[buf]);
        }
      });
    }
    return;
  }
  core::regs_grow<kConsumerRegs>();
  const int wg = int(threadIdx.x / 128) - 1;
  const std::uint32_t q_addr = own_rows_addr(sm.x, wg), do_addr = own_rows_addr(sm.y, wg);
  const float sl2 = scale * core::kLog2e;
  int n = 0;
  consume(tiles, sm.tile, &sm.own_full, [&](int t) {
    int rank, bh;
    order.at(t, rank, bh);
    const int qb = nq - 1 - rank, last = (qb + 1) * kRows / kStep - 1;
    const DqRows r = dq_rows(lse, dsum, bh, T, qb * kRows + own_row(wg));
    AccD<D> dq_acc;
    zero<D>(dq_acc);
    dq_pipelined<D>(
        dq_acc, q_addr, do_addr, last, r, sl2, scale,
        [&](int kt, std::uint32_t& k_tile, std::uint32_t& v_tile) {
          const int buf = ring_buf<S>(n + kt);
          wait_full<S>(sm.full, n + kt);
          k_tile = core::smem_addr(sm.a[buf]), v_tile = core::smem_addr(sm.b[buf]);
        },
        [&](int kt) { release(&sm.empty[ring_buf<S>(n + kt)]); });
    release(&sm.own_empty);  // the last pass's products are done with Q and dO
    store_rows<D>(dq + flash::head_start<D>(bh, NH, T, ldg), ldg, r.row0, dq_acc, 1.0f, 1.0f);
    n += last + 1;
  });
}

// The tensor maps: q, k, v (and out, dout) as [B*T rows][heads*D columns] with their row
// strides, in boxes of `box_rows` rows.
CUtensorMap heads_map(const bf16* p, const AttentionHeads& h, int heads, int ld, int box_rows) {
  return core::bf16_swizzled_tile_map(p, std::uint64_t(h.B) * h.T, std::uint64_t(heads) * h.HS, std::uint64_t(ld), std::uint32_t(box_rows));
}

// The bytes a head's work tiles read in their loop (two tiles of T x D), for the L2 sections.
template <int D>
std::size_t loop_bytes(const AttentionHeads& h) {
  return std::size_t(h.T) * D * 2 * 2;
}

template <int D>
void forward(const AttentionHeads& h, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, cudaStream_t s) {
  const TileOrder order = tile_order(h.T / kRows, h.B * h.NH, loop_bytes<D>(h));
  flash::launch<kThreads>(flash_forward_tma_kernel<D>, smem_bytes<TmaFwdSmem<D>>(), grid_of(order, h.persistent), s,
                          heads_map(q, h, h.NH, h.ld_qkv, kRows), heads_map(k, h, h.kv_heads(), h.ld_qkv, kKeys),
                          heads_map(v, h, h.kv_heads(), h.ld_qkv, kKeys), out, h.ld_out, lse, h.NH, h.kv_heads(), h.T, h.scale, order);
}

template <int D>
void backward(const AttentionHeads& h, bf16* dq, bf16* dk, bf16* dv, const float* dsum, const bf16* dout, const bf16* q, const bf16* k,
              const bf16* v, const float* lse, cudaStream_t s) {
  const std::size_t smem = smem_bytes<TmaBwdSmem<D>>();
  const int KVH = h.kv_heads();
  // dK/dV's loop reads the Q and dO of a k/v head's whole group.
  const TileOrder kv_order = tile_order(h.T / kRows, h.B * KVH, loop_bytes<D>(h) * std::size_t(h.NH / KVH));
  flash::launch<kThreads>(flash_backward_dkdv_tma_kernel<D>, smem, grid_of(kv_order, h.persistent), s,
                          heads_map(k, h, KVH, h.ld_qkv, kRows), heads_map(v, h, KVH, h.ld_qkv, kRows),
                          heads_map(q, h, h.NH, h.ld_qkv, kStep), heads_map(dout, h, h.NH, h.ld_out, kStep), dk, dv, h.ld_qkv, lse, dsum,
                          h.NH, KVH, h.T, h.scale, kv_order);
  const TileOrder q_order = tile_order(h.T / kRows, h.B * h.NH, loop_bytes<D>(h));
  flash::launch<kThreads>(flash_backward_dq_tma_kernel<D>, smem, grid_of(q_order, h.persistent), s, heads_map(q, h, h.NH, h.ld_qkv, kRows),
                          heads_map(dout, h, h.NH, h.ld_out, kRows), heads_map(k, h, KVH, h.ld_qkv, kStep),
                          heads_map(v, h, KVH, h.ld_qkv, kStep), dq, h.ld_qkv, lse, dsum, h.NH, KVH, h.T, h.scale, q_order);
}

}  // namespace

void flash_attention_forward_tma(const AttentionHeads& h, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                                 cudaStream_t s) {
  flash::with_head_size(h.HS, [&](auto d) { forward<decltype(d)::value>(h, out, lse, q, k, v, s); });
}

void flash_attention_backward_tma(const AttentionHeads& h, bf16* dq, bf16* dk, bf16* dv, const float* dsum, const bf16* dout, const bf16* q,
                                  const bf16* k, const bf16* v, const float* lse, cudaStream_t s) {
  flash::with_head_size(h.HS, [&](auto d) { backward<decltype(d)::value>(h, dq, dk, dv, dsum, dout, q, k, v, lse, s); });
}

}  // namespace fp8scope::gpu_model
