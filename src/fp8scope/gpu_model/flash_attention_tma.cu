// The wgmma attention kernels warp-specialised: the products and softmax of
// flash_attention_wgmma.cu (flash_wgmma_parts.cuh, the same bits), with the tiles brought by
// Hopper's TMA instead of every thread's cp.async. A block is three warpgroups: one producer
// whose single thread issues each tile's load as soon as its buffer is free, and two consumers
// of 64 rows each that wait only for the tiles they use. Each buffer has a "full" barrier (the
// producer arms it with the tile's bytes, the TMA completes it) and an "empty" one (every
// consumer warp arrives once its products have read the buffer). So there is no block-wide
// barrier inside the loops: the two consumers may drift apart, one's softmax running under the
// other's products, and no consumer spends issue slots or registers on address arithmetic and
// copies. The producer gives its registers to the consumers (24 against 240 a thread). On an
// H100 these take 0.87-0.95x the cp.async kernels' time (docs/performance.md).
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/core/tensor_map.hpp"
#include "fp8scope/core/tma.cuh"
#include "fp8scope/gpu_model/flash_wgmma_parts.cuh"

#include <cuda.h>

namespace fp8scope::gpu_model {
namespace {
using namespace wgmma_attention;

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
  std::uint64_t q_full, k_full[kFwdKStages], k_empty[kFwdKStages], v_full[fwd_v_stages<D>()], v_empty[fwd_v_stages<D>()];
};
template <int D>
struct TmaBwdSmem {
  bf16 x[kRows * D], y[kRows * D];                          // the block's own tiles (K, V for dK/dV; Q, dO for dQ)
  bf16 a[kBwdStages][kStep * D], b[kBwdStages][kStep * D];  // the loop's tiles (Q, dO for dK/dV; K, V for dQ)
  float lse[kBwdStages][kStep], dsum[kBwdStages][kStep];    // dK/dV: per loop query row
  std::uint64_t own_full, full[kBwdStages], empty[kBwdStages];
};

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

// Initialises a ring's barriers and the one for the block's own tiles (thread 0: one arrival,
// the producer's, completes a full barrier, every consumer warp's an empty one) and publishes
// them to the block and the TMA unit.
template <int S>
__device__ __forceinline__ void init_barriers(std::uint64_t (&full)[S], std::uint64_t (&empty)[S], std::uint64_t& own_full) {
  if (threadIdx.x == 0) {
    for (int i = 0; i < S; ++i) core::mbar_init(&full[i], 1), core::mbar_init(&empty[i], kConsumerWarps);
    core::mbar_init(&own_full, 1);
    core::mbar_fence_init();
  }
  __syncthreads();
}

// Forward: the producer loads Q, then K and V of every key tile up to the diagonal, each into
// the next free buffer of its ring; the consumers run flash_attention_wgmma.cu's pipeline
// (forward_step), K one tile ahead of V.
template <int D>
__global__ void __launch_bounds__(kThreads, 1)
    flash_forward_tma_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap k_map,
                             const __grid_constant__ CUtensorMap v_map, bf16* out, int ldo, float* lse, int NH, int KVH, int T,
                             float scale) {
  constexpr int KS = kFwdKStages, VS = fwd_v_stages<D>();
  extern __shared__ unsigned char smem_raw[];
  TmaFwdSmem<D>& sm = aligned_smem<TmaFwdSmem<D>>(smem_raw);
  // The longest rows (last query tiles) start first so the short ones fill the tail.
  const int qt = int(gridDim.x) - 1 - int(blockIdx.x), bh = blockIdx.y, last = qt;  // kRows == kKeys: key tile qt is the diagonal
  if (threadIdx.x == 0) {
    core::mbar_init(&sm.q_full, 1);
    for (int i = 0; i < KS; ++i) core::mbar_init(&sm.k_full[i], 1), core::mbar_init(&sm.k_empty[i], kConsumerWarps);
    for (int i = 0; i < VS; ++i) core::mbar_init(&sm.v_full[i], 1), core::mbar_init(&sm.v_empty[i], kConsumerWarps);
    core::mbar_fence_init();
  }
  __syncthreads();
  if (threadIdx.x < 128) {
    core::regs_shrink<kProducerRegs>();
    if (threadIdx.x == 0) {
      const int row = (bh / NH) * T, kv_col = (flash::kv_of(bh, NH, KVH) % KVH) * D;
      core::mbar_expect_tx(&sm.q_full, tile_bytes<kRows, D>());
      load_tile<kRows, D>(sm.q, &q_map, (bh % NH) * D, row + qt * kRows, &sm.q_full);
      for (int kt = 0; kt <= last; ++kt) {
        wait_empty<KS>(sm.k_empty, kt);
        core::mbar_expect_tx(&sm.k_full[ring_buf<KS>(kt)], tile_bytes<kKeys, D>());
        load_tile<kKeys, D>(sm.k[ring_buf<KS>(kt)], &k_map, kv_col, row + kt * kKeys, &sm.k_full[ring_buf<KS>(kt)]);
        wait_empty<VS>(sm.v_empty, kt);
        core::mbar_expect_tx(&sm.v_full[ring_buf<VS>(kt)], tile_bytes<kKeys, D>());
        load_tile<kKeys, D>(sm.v[ring_buf<VS>(kt)], &v_map, kv_col, row + kt * kKeys, &sm.v_full[ring_buf<VS>(kt)]);
      }
    }
    return;
  }
  core::regs_grow<kConsumerRegs>();
  const int wg = int(threadIdx.x / 128) - 1;
  const std::uint32_t q_addr = own_rows_addr(sm.q, wg);
  const float sl2 = scale * core::kLog2e;  // exponentials in base 2
  const int row0 = qt * kRows + own_row(wg);
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  FragsK<kKeys> pf;  // P of the tile whose P V is next
  core::mbar_wait(&sm.q_full, 0);
  wait_full<KS>(sm.k_full, 0);
  forward_first<D>(pf, q_addr, core::smem_addr(sm.k[0]), last == 0, row0, sl2, m0, m1, l0, l1);
  release(&sm.k_empty[0]);
  AccD<D> o;
  zero<D>(o);
  for (int kt = 0; kt < last; ++kt) {
    const int kn = ring_buf<KS>(kt + 1), vb = ring_buf<VS>(kt);
    wait_full<KS>(sm.k_full, kt + 1);
    wait_full<VS>(sm.v_full, kt);
    forward_step<D>(
        o, pf, q_addr, core::smem_addr(sm.k[kn]), core::smem_addr(sm.v[vb]), kt + 1 == last, (kt + 1) * kKeys, row0, sl2, m0, m1, l0, l1,
        [&] { release(&sm.k_empty[kn]); }, [&] { release(&sm.v_empty[vb]); });
  }
  wait_full<VS>(sm.v_full, last);
  forward_last<D>(o, pf, core::smem_addr(sm.v[ring_buf<VS>(last)]));
  store_output<D>(out + flash::head_start<D>(bh, NH, T, ldo), ldo, lse + std::int64_t(bh) * T, row0, o, m0, m1, l0, l1);
}

// dK, dV for 128 keys of one k/v head (flash_attention_wgmma.cu's kernel of that name): the
// producer loads K and V once, then per pass the Q and dO tiles and the rows' log-sum-exps and
// row dots.
template <int D>
__global__ void __launch_bounds__(kThreads, 1)
    flash_backward_dkdv_tma_kernel(const __grid_constant__ CUtensorMap k_map, const __grid_constant__ CUtensorMap v_map,
                                   const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap do_map, bf16* dk,
                                   bf16* dv, int ldg, const float* lse, const float* dsum, int NH, int KVH, int T, float scale) {
  constexpr int S = kBwdStages;
  extern __shared__ unsigned char smem_raw[];
  TmaBwdSmem<D>& sm = aligned_smem<TmaBwdSmem<D>>(smem_raw);
  const int kb = blockIdx.x, bkv = blockIdx.y;  // kb = 0 has the most work
  // Pass `it`: q head (group member it / span) and its query tile first + it % span.
  const int nt = T / kStep, first = kb * kRows / kStep, group = NH / KVH, span = nt - first, passes = group * span;
  const int first_q = (bkv / KVH) * NH + (bkv % KVH) * group;  // the (batch, q head) index of the group's first head
  init_barriers(sm.full, sm.empty, sm.own_full);
  if (threadIdx.x < 128) {
    core::regs_shrink<kProducerRegs>();
    if (threadIdx.x == 0) {
      const int row = (bkv / KVH) * T;
      core::mbar_expect_tx(&sm.own_full, 2 * tile_bytes<kRows, D>());
      load_tile<kRows, D>(sm.x, &k_map, (bkv % KVH) * D, row + kb * kRows, &sm.own_full);
      load_tile<kRows, D>(sm.y, &v_map, (bkv % KVH) * D, row + kb * kRows, &sm.own_full);
      for (int it = 0; it < passes; ++it) {
        const int bh = first_q + it / span, qt = first + it % span, buf = ring_buf<S>(it);
        wait_empty<S>(sm.empty, it);
        core::mbar_expect_tx(&sm.full[buf], 2 * tile_bytes<kStep, D>() + 2 * kStep * 4);
        load_tile<kStep, D>(sm.a[buf], &q_map, (bh % NH) * D, row + qt * kStep, &sm.full[buf]);
        load_tile<kStep, D>(sm.b[buf], &do_map, (bh % NH) * D, row + qt * kStep, &sm.full[buf]);
        const std::int64_t rows = std::int64_t(bh) * T + std::int64_t(qt) * kStep;
        core::bulk_load(sm.lse[buf], lse + rows, kStep * 4, &sm.full[buf]);
        core::bulk_load(sm.dsum[buf], dsum + rows, kStep * 4, &sm.full[buf]);
      }
    }
    return;
  }
  core::regs_grow<kConsumerRegs>();
  const int wg = int(threadIdx.x / 128) - 1;
  DkdvRows<D> own(sm.x, sm.y, wg, kb, scale);
  core::mbar_wait(&sm.own_full, 0);
  for (int it = 0; it < passes; ++it) {
    const int qt = first + it % span, buf = ring_buf<S>(it);
    wait_full<S>(sm.full, it);
    own.pass(core::smem_addr(sm.a[buf]), core::smem_addr(sm.b[buf]), sm.lse[buf], sm.dsum[buf], qt);
    release(&sm.empty[buf]);
  }
  own.store(dk, dv, ldg, bkv, KVH, T);
}

// dQ for 128 queries (flash_attention_wgmma.cu's kernel of that name): the producer loads Q and
// dO once, then K and V of every key tile of 64 up to the diagonal.
template <int D>
__global__ void __launch_bounds__(kThreads, 1)
    flash_backward_dq_tma_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap do_map,
                                 const __grid_constant__ CUtensorMap k_map, const __grid_constant__ CUtensorMap v_map, bf16* dq, int ldg,
                                 const float* lse, const float* dsum, int NH, int KVH, int T, float scale) {
  constexpr int S = kBwdStages;
  extern __shared__ unsigned char smem_raw[];
  TmaBwdSmem<D>& sm = aligned_smem<TmaBwdSmem<D>>(smem_raw);
  const int qb = int(gridDim.x) - 1 - int(blockIdx.x), bh = blockIdx.y;
  const int last = (qb + 1) * kRows / kStep - 1;  // the key tile holding the block's last diagonal
  init_barriers(sm.full, sm.empty, sm.own_full);
  if (threadIdx.x < 128) {
    core::regs_shrink<kProducerRegs>();
    if (threadIdx.x == 0) {
      const int row = (bh / NH) * T, kv_col = (flash::kv_of(bh, NH, KVH) % KVH) * D;
      core::mbar_expect_tx(&sm.own_full, 2 * tile_bytes<kRows, D>());
      load_tile<kRows, D>(sm.x, &q_map, (bh % NH) * D, row + qb * kRows, &sm.own_full);
      load_tile<kRows, D>(sm.y, &do_map, (bh % NH) * D, row + qb * kRows, &sm.own_full);
      for (int kt = 0; kt <= last; ++kt) {
        const int buf = ring_buf<S>(kt);
        wait_empty<S>(sm.empty, kt);
        core::mbar_expect_tx(&sm.full[buf], 2 * tile_bytes<kStep, D>());
        load_tile<kStep, D>(sm.a[buf], &k_map, kv_col, row + kt * kStep, &sm.full[buf]);
        load_tile<kStep, D>(sm.b[buf], &v_map, kv_col, row + kt * kStep, &sm.full[buf]);
      }
    }
    return;
  }
  core::regs_grow<kConsumerRegs>();
  const int wg = int(threadIdx.x / 128) - 1;
  const std::uint32_t q_addr = own_rows_addr(sm.x, wg), do_addr = own_rows_addr(sm.y, wg);
  const float sl2 = scale * core::kLog2e;
  const DqRows r = dq_rows(lse, dsum, bh, T, qb * kRows + own_row(wg));
  AccD<D> dq_acc;
  zero<D>(dq_acc);
  core::mbar_wait(&sm.own_full, 0);
  for (int kt = 0; kt <= last; ++kt) {
    const int buf = ring_buf<S>(kt);
    wait_full<S>(sm.full, kt);
    dq_pass<D>(dq_acc, q_addr, do_addr, core::smem_addr(sm.a[buf]), core::smem_addr(sm.b[buf]), kt, r, sl2, scale);
    release(&sm.empty[buf]);
  }
  store_rows<D>(dq + flash::head_start<D>(bh, NH, T, ldg), ldg, r.row0, dq_acc, 1.0f, 1.0f);
}

// The tensor maps: q, k, v (and out, dout) as [B*T rows][heads*D columns] with their row
// strides, in boxes of `box_rows` rows.
CUtensorMap heads_map(const bf16* p, const AttentionHeads& h, int heads, int ld, int box_rows) {
  return core::bf16_swizzled_tile_map(p, std::uint64_t(h.B) * h.T, std::uint64_t(heads) * h.HS, std::uint64_t(ld), std::uint32_t(box_rows));
}

template <int D>
void forward(const AttentionHeads& h, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, cudaStream_t s) {
  flash::launch<kThreads>(flash_forward_tma_kernel<D>, smem_bytes<TmaFwdSmem<D>>(), dim3(unsigned(h.T / kRows), unsigned(h.B * h.NH)), s,
                          heads_map(q, h, h.NH, h.ld_qkv, kRows), heads_map(k, h, h.kv_heads(), h.ld_qkv, kKeys),
                          heads_map(v, h, h.kv_heads(), h.ld_qkv, kKeys), out, h.ld_out, lse, h.NH, h.kv_heads(), h.T, h.scale);
}

template <int D>
void backward(const AttentionHeads& h, bf16* dq, bf16* dk, bf16* dv, const float* dsum, const bf16* dout, const bf16* q, const bf16* k,
              const bf16* v, const float* lse, cudaStream_t s) {
  const std::size_t smem = smem_bytes<TmaBwdSmem<D>>();
  const int KVH = h.kv_heads();
  flash::launch<kThreads>(flash_backward_dkdv_tma_kernel<D>, smem, dim3(unsigned(h.T / kRows), unsigned(h.B * KVH)), s,
                          heads_map(k, h, KVH, h.ld_qkv, kRows), heads_map(v, h, KVH, h.ld_qkv, kRows),
                          heads_map(q, h, h.NH, h.ld_qkv, kStep), heads_map(dout, h, h.NH, h.ld_out, kStep), dk, dv, h.ld_qkv, lse, dsum,
                          h.NH, KVH, h.T, h.scale);
  flash::launch<kThreads>(flash_backward_dq_tma_kernel<D>, smem, dim3(unsigned(h.T / kRows), unsigned(h.B * h.NH)), s,
                          heads_map(q, h, h.NH, h.ld_qkv, kRows), heads_map(dout, h, h.NH, h.ld_out, kRows),
                          heads_map(k, h, KVH, h.ld_qkv, kStep), heads_map(v, h, KVH, h.ld_qkv, kStep), dq, h.ld_qkv, lse, dsum, h.NH, KVH,
                          h.T, h.scale);
}

}  // namespace

void flash_attention_forward_tma(const AttentionHeads& h, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                                 cudaStream_t s) {
  if (h.HS == 128)
    forward<128>(h, out, lse, q, k, v, s);
  else
    forward<64>(h, out, lse, q, k, v, s);
}

void flash_attention_backward_tma(const AttentionHeads& h, bf16* dq, bf16* dk, bf16* dv, const float* dsum, const bf16* dout, const bf16* q,
                                  const bf16* k, const bf16* v, const float* lse, cudaStream_t s) {
  if (h.HS == 128)
    backward<128>(h, dq, dk, dv, dsum, dout, q, k, v, lse, s);
  else
    backward<64>(h, dq, dk, dv, dsum, dout, q, k, v, lse, s);
}

}  // namespace fp8scope::gpu_model
