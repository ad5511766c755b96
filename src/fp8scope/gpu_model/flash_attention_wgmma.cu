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
//
// The products, the softmax and the backward passes live in flash_wgmma_parts.cuh, shared with
// flash_attention_tma.cu: the same kernels warp-specialised with TMA loads (the same bits),
// which FlashKernel::automatic takes; these run when FlashKernel::wgmma forces them.
#include "fp8scope/core/cp_async.cuh"
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/gpu_model/flash_wgmma_parts.cuh"

#include <cuda_bf16.h>

#include <cstdint>

namespace fp8scope::gpu_model {
namespace {
using namespace wgmma_attention;

constexpr int kThreads = 256;  // two warpgroups

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

// Forward: per tile of 128 keys, S = Q K^T, the online softmax, O += P V, pipelined inside each
// warpgroup (forward_step): K runs one tile ahead of V, so K has three buffers (in use, next,
// being fetched), V two; one group of copies (K kt+2, V kt+1) per tile.
template <int D>
__global__ void __launch_bounds__(kThreads, 1) flash_forward_wgmma_kernel(bf16* out, int ldo, float* lse, const bf16* q, const bf16* k,
                                                                          const bf16* v, int ld, int NH, int KVH, int T, float scale) {
  extern __shared__ unsigned char smem_raw[];
  FwdSmem<D>& sm = aligned_smem<FwdSmem<D>>(smem_raw);
  // The longest rows (last query tiles) start first so the short ones fill the tail.
  const int qt = int(gridDim.x) - 1 - int(blockIdx.x), bh = blockIdx.y, wg = int(threadIdx.x / 128);
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
  const std::uint32_t q_addr = own_rows_addr(sm.q, wg);
  const float sl2 = scale * core::kLog2e;  // exponentials in base 2
  const int row0 = qt * kRows + own_row(wg);
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  FragsK<kKeys> pf;  // P of the tile whose P V is next
  tiles_ready<1>();  // Q and K 0
  forward_first<D>(pf, q_addr, core::smem_addr(sm.k[0]), last == 0, row0, sl2, m0, m1, l0, l1);
  AccD<D> o;
  zero<D>(o);
  for (int kt = 0; kt < last; ++kt) {
    tiles_ready<0>();  // K kt+1 and V kt; every thread is done with K kt-1 and V kt-1
    if (kt + 2 <= last) fetch_swizzled<kKeys, D>(sm.k[(kt + 2) % 3], k_tile(kt + 2), ld);
    fetch_swizzled<kKeys, D>(sm.v[(kt + 1) % 2], v_tile(kt + 1), ld);
    core::cp_commit();
    forward_step<D>(
        o, pf, q_addr, core::smem_addr(sm.k[(kt + 1) % 3]), core::smem_addr(sm.v[kt % 2]), kt + 1 == last, (kt + 1) * kKeys, row0, sl2, m0,
        m1, l0, l1, [] {}, [] {});
  }
  tiles_ready<0>();  // V of the last tile
  forward_last<D>(o, pf, core::smem_addr(sm.v[last % 2]));
  store_output<D>(out + flash::head_start<D>(bh, NH, T, ldo), ldo, lse + std::int64_t(bh) * T, row0, o, m0, m1, l0, l1);
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
  const int kb = blockIdx.x, bkv = blockIdx.y, wg = int(threadIdx.x / 128);  // kb = 0 has the most work
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
  DkdvRows<D> own(sm.x, sm.y, wg, kb, scale);
  for (int it = 0; it < passes; ++it) {
    const int qt = first + it % span, buf = it & 1;
    fetch_next_and_wait(it + 1 < passes, [&] { fetch(it + 1, buf ^ 1); });
    own.pass(core::smem_addr(sm.a[buf]), core::smem_addr(sm.b[buf]), sm.lse[buf], sm.dsum[buf], qt);
    __syncthreads();  // the buffer is refilled by the next pass's fetch
  }
  own.store(dk, dv, ldg, bkv, KVH, T);
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
  const int qb = int(gridDim.x) - 1 - int(blockIdx.x), bh = blockIdx.y, wg = int(threadIdx.x / 128);
  const std::int64_t kvbase = flash::head_start<D>(flash::kv_of(bh, NH, KVH), KVH, T, ld);
  auto fetch = [&](int kt, int buf) {
    fetch_swizzled<kStep, D>(sm.a[buf], k + kvbase + std::int64_t(kt) * kStep * ld, ld);
    fetch_swizzled<kStep, D>(sm.b[buf], v + kvbase + std::int64_t(kt) * kStep * ld, ld);
    core::cp_commit();
  };
  fetch_swizzled<kRows, D>(sm.x, q + flash::head_start<D>(bh, NH, T, ld) + std::int64_t(qb) * kRows * ld, ld);
  fetch_swizzled<kRows, D>(sm.y, dout + flash::head_start<D>(bh, NH, T, ldo) + std::int64_t(qb) * kRows * ldo, ldo);
  fetch(0, 0);
  const std::uint32_t q_addr = own_rows_addr(sm.x, wg), do_addr = own_rows_addr(sm.y, wg);
  const float sl2 = scale * core::kLog2e;
  const DqRows r = dq_rows(lse, dsum, bh, T, qb * kRows + own_row(wg));
  AccD<D> dq_acc;
  zero<D>(dq_acc);
  const int last = (qb + 1) * kRows / kStep - 1;  // the key tile holding the block's last diagonal
  for (int kt = 0; kt <= last; ++kt) {
    const int buf = kt & 1;
    fetch_next_and_wait(kt < last, [&] { fetch(kt + 1, buf ^ 1); });
    dq_pass<D>(dq_acc, q_addr, do_addr, core::smem_addr(sm.a[buf]), core::smem_addr(sm.b[buf]), kt, r, sl2, scale);
    __syncthreads();
  }
  store_rows<D>(dq + flash::head_start<D>(bh, NH, T, ldg), ldg, r.row0, dq_acc, 1.0f, 1.0f);
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
  flash::with_head_size(h.HS, [&](auto d) { forward<decltype(d)::value>(h, out, lse, q, k, v, s); });
}

void flash_attention_backward_wgmma(const AttentionHeads& h, bf16* dq, bf16* dk, bf16* dv, const float* dsum, const bf16* dout,
                                    const bf16* q, const bf16* k, const bf16* v, const float* lse, cudaStream_t s) {
  flash::with_head_size(h.HS, [&](auto d) { backward<decltype(d)::value>(h, dq, dk, dv, dsum, dout, q, k, v, lse, s); });
}

}  // namespace fp8scope::gpu_model
