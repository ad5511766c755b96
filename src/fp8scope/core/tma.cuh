#pragma once
// Hopper's tensor memory accelerator (TMA, sm_90) and the shared-memory transaction barriers it
// signals (mbarrier), for producer/consumer pipelines: one thread issues a tile's copy with
// tma_load_2d after arming the tile's "full" barrier with the bytes it will bring
// (mbar_expect_tx); consumers wait for that barrier's phase, work on the tile, and arrive on
// its "empty" barrier, which the producer waits for before it refills the buffer. A barrier
// completes a phase when its arrival count is reached and every expected byte has landed; its
// n-th phase (from 0) is waited for with parity n & 1.
//
// The tensor map a load names lives in the kernel's parameters (a __grid_constant__
// CUtensorMap, made on the host by core/tensor_map.hpp). With the 128-byte swizzle a box of
// 64 BF16 columns lands exactly in wgmma's swizzled layout (core/wgmma.cuh), given a
// 1024-byte aligned destination.
//
// Built for anything but sm_90a the wrappers trap (FP8SCOPE_WGMMA, as the wgmma ones).
#include "fp8scope/core/cp_async.cuh"
#include "fp8scope/core/wgmma.cuh"

#include <cuda.h>

#include <cstdint>

namespace fp8scope::core {

// Before any arrival: `count` arrivals (besides the expected bytes) complete a phase.
__device__ __forceinline__ void mbar_init(std::uint64_t* bar, int count) {
#if FP8SCOPE_WGMMA
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
#else
  (void)bar, (void)count;
  __trap();
#endif
}
// After the initialising thread's mbar_init calls, before the barrier that publishes them:
// makes the initialised barriers visible to the async proxy (the TMA unit).
__device__ __forceinline__ void mbar_fence_init() {
#if FP8SCOPE_WGMMA
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}
// One arrival that also announces `bytes` more to come from copies naming this barrier.
__device__ __forceinline__ void mbar_expect_tx(std::uint64_t* bar, std::uint32_t bytes) {
#if FP8SCOPE_WGMMA
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
#else
  (void)bar, (void)bytes;
  __trap();
#endif
}
// One arrival where `arrive` holds, branch-free (a predicated instruction: no branch may sit
// between a wgmma and its wait). Release: this thread's earlier shared-memory reads, and the
// wgmma reads it waited for, are done before a producer that sees the phase refills the buffer.
__device__ __forceinline__ void mbar_arrive_if(std::uint64_t* bar, bool arrive) {
#if FP8SCOPE_WGMMA
  asm volatile("{\n.reg .pred p;\nsetp.ne.u32 p, %1, 0;\n@p mbarrier.arrive.shared::cta.b64 _, [%0];\n}\n" ::"r"(smem_addr(bar)),
               "r"(std::uint32_t(arrive))
               : "memory");
#else
  (void)bar, (void)arrive;
  __trap();
#endif
}
// Waits until the phase of parity `parity` has completed (acquire: what the copies wrote is
// then visible to this thread and to the wgmma it issues).
__device__ __forceinline__ void mbar_wait(std::uint64_t* bar, std::uint32_t parity) {
#if FP8SCOPE_WGMMA
  std::uint32_t done = 0;
  do {
    asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(done)
                 : "r"(smem_addr(bar)), "r"(parity)
                 : "memory");
  } while (!done);
#else
  (void)bar, (void)parity;
  __trap();
#endif
}

// Copies the box at column x, row y of the 2-D tensor `map` describes into shared memory at
// `dst` (1024-byte aligned for the 128-byte swizzle), completing its bytes on `bar`.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int x, int y, std::uint64_t* bar) {
#if FP8SCOPE_WGMMA
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
                   smem_addr(dst)),
               "l"(reinterpret_cast<std::uint64_t>(map)), "r"(x), "r"(y), "r"(smem_addr(bar))
               : "memory");
#else
  (void)dst, (void)map, (void)x, (void)y, (void)bar;
  __trap();
#endif
}
// Copies `bytes` contiguous bytes (a multiple of 16, both addresses 16-byte aligned) from
// global memory to shared memory, completing them on `bar`.
__device__ __forceinline__ void bulk_load(void* dst, const void* src, std::uint32_t bytes, std::uint64_t* bar) {
#if FP8SCOPE_WGMMA
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(bytes), "r"(smem_addr(bar))
               : "memory");
#else
  (void)dst, (void)src, (void)bytes, (void)bar;
  __trap();
#endif
}

// Warp-specialised kernels move registers from the producer warpgroup to the consumers: every
// warp of a warpgroup executes the same one. The kernel needs __launch_bounds__ with a minimum of
// blocks per SM (ptxas must know the register count at entry), and the warpgroups' new counts
// must fit the register file the block was given (e.g. 24 + 2 x 240 against 3 x 168).
template <int N>
__device__ __forceinline__ void regs_shrink() {
#if FP8SCOPE_WGMMA
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
template <int N>
__device__ __forceinline__ void regs_grow() {
#if FP8SCOPE_WGMMA
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}

}  // namespace fp8scope::core
