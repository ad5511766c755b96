#pragma once
// Hopper's warpgroup matrix multiply-accumulate (wgmma, sm_90a): four warps (a warpgroup, 128
// threads) issue one asynchronous 64 x N x 16 product whose B operand (and optionally A) is read
// straight from shared memory through a 64-bit matrix descriptor, with no ldmatrix and no
// registers spent on it. The accumulator's register layout is mma.sync m16n8k16's repeated:
// warp w of the group holds rows 16w .. 16w+15; register 4j+e of a thread (g = lane/4,
// t = lane%4) is row g (e < 2) or g+8 (e >= 2), column 8j + 2t + (e & 1). An A operand in
// registers has mma.sync's A layout (16 x 16 per warp, four 32-bit registers of BF16 pairs).
//
// Operands in shared memory use the 128-byte swizzle: a tile with 64 BF16 (128 bytes) per row
// is stored row after row, the 16-byte chunk c of row r at chunk c ^ (r % 8), in 1024-byte
// aligned groups of 8 rows; wider rows are split into panels of 64 columns stored one after
// another. Both the K-major descriptor (rows of the operand are contiguous along the contraction,
// e.g. Q and K in Q K^T) and the MN-major one (contiguous along the output's columns, e.g. V in
// P V) then have 1024 bytes between groups of 8 rows.
//
// The wrappers below exist only when the code is compiled for sm_90a (FP8SCOPE_WGMMA); built for
// any other target they trap, and the host side must not launch a kernel that uses them there.
#include <cstdint>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FP8SCOPE_WGMMA 1
#else
#define FP8SCOPE_WGMMA 0
#endif

namespace fp8scope::core {

// Byte offset of the 16-byte chunk `chunk` (8 BF16) of row `row` in a tile of `rows` rows stored
// with the 128-byte swizzle (panels of 64 columns, each rows x 128 bytes).
__device__ __forceinline__ int swizzle128_offset(int rows, int row, int chunk) {
  return (chunk / 8) * rows * 128 + row * 128 + (((chunk % 8) ^ (row % 8)) << 4);
}

// The descriptor of an operand at shared address `addr` (1024-byte aligned groups of 8 rows,
// 128-byte swizzle): `sbo` bytes between groups of 8 rows, `lbo` between 64-column panels of an
// MN-major operand wider than 64 (ignored for K-major ones). Moving along the contraction inside
// a 128-byte row is adding its byte offset to the address (the swizzle is applied to the final
// address bits, so the hardware finds the chunks where swizzle128_offset put them).
__device__ __forceinline__ std::uint64_t wgmma_desc(std::uint32_t addr, std::uint32_t lbo, std::uint32_t sbo) {
  return std::uint64_t((addr & 0x3FFFF) >> 4) | std::uint64_t((lbo & 0x3FFFF) >> 4) << 16 | std::uint64_t((sbo & 0x3FFFF) >> 4) << 32 |
         std::uint64_t(1) << 62;  // layout type 1: 128-byte swizzle
}

// Before the first wgmma of a batch: orders this thread's earlier register writes (an
// accumulator rescaled, an A operand packed) before the asynchronous reads of them.
__device__ __forceinline__ void wgmma_fence() {
#if FP8SCOPE_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if FP8SCOPE_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
// Waits until at most N committed batches are in flight.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if FP8SCOPE_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// Shared memory written through the generic proxy (st.shared, cp.async) made visible to the
// async proxy that wgmma reads it through; every writing thread, before the barrier.
__device__ __forceinline__ void fence_proxy_async_shared() {
#if FP8SCOPE_WGMMA
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// The accumulator's registers are written by the wgmma in flight: after wgmma_wait, this keeps
// the compiler from having read (or moved reads of) them earlier.
template <int N>
__device__ __forceinline__ void wgmma_hold(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// d (64 x 128) (+)= A (64 x 16, shared) . B (16 x 128, shared, K-major); accumulate = 0 overwrites d.
__device__ __forceinline__ void wgmma_m64n128k16_ss(float (&d)[64], std::uint64_t a, std::uint64_t b, int accumulate) {
#if FP8SCOPE_WGMMA
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, "
      "%17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, "
      "%43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, "
      "0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]),
        "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),
        "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),
        "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]),
        "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]),
        "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(a), "l"(b), "r"(accumulate));
#else
  __trap();
#endif
}

// d (64 x 64) (+)= A (64 x 16, shared) . B (16 x 64, shared, K-major); accumulate = 0 overwrites d.
__device__ __forceinline__ void wgmma_m64n64k16_ss(float (&d)[32], std::uint64_t a, std::uint64_t b, int accumulate) {
#if FP8SCOPE_WGMMA
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, "
      "%17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]),
        "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),
        "+f"(d[31])
      : "l"(a), "l"(b), "r"(accumulate));
#else
  __trap();
#endif
}

// d (64 x 64) (+)= A (64 x 16, registers) . B (16 x 64, shared, MN-major: rows of B are contiguous
// along the output's columns); accumulate = 0 overwrites d.
__device__ __forceinline__ void wgmma_m64n64k16_rs_tb(float (&d)[32], const std::uint32_t (&a)[4], std::uint64_t b, int accumulate) {
#if FP8SCOPE_WGMMA
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, "
      "%17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]),
        "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),
        "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate));
#else
  __trap();
#endif
}

}  // namespace fp8scope::core
