#pragma once
// What the two fused attention implementations share (flash_attention.cu, on mma.sync for any
// sm_80+ GPU, and flash_attention_wgmma.cu, on Hopper's warpgroup MMA): where a head lives in
// the model's tensors, the grouped-query mapping, and the register-level pieces of the online
// softmax, the launch. Both keep a thread's accumulator rows g and g+8 (g = lane / 4) spread
// over a quad.
#include "fp8scope/core/cp_async.cuh"
#include "fp8scope/core/cuda_util.hpp"

#include <cuda_bf16.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace fp8scope::gpu_model::flash {

constexpr float kLn2 = 0.6931471805599453f;

// Two floats as the BF16 pair of one 32-bit register (the first in the low half).
__device__ __forceinline__ std::uint32_t pack(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const std::uint32_t*>(&v);
}

// Where head bh = b * NH + h starts in a [B, T, ld] tensor (its row t is `ld` further per t).
template <int D>
__device__ __forceinline__ std::int64_t head_start(int bh, int NH, int T, std::int64_t ld) {
  return std::int64_t(bh / NH) * T * ld + std::int64_t(bh % NH) * D;
}
// Grouped-query attention: q head h of NH reads k/v head h / (NH / KVH) of KVH (KVH == NH:
// multi-head attention). The (batch, kv head) index of the (batch, q head) index bh.
__device__ __forceinline__ int kv_of(int bh, int NH, int KVH) { return (bh / NH) * KVH + (bh % NH) / (NH / KVH); }

// The largest of a row's values over the four threads of a quad.
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// Starts copying 64 floats (a tile's log-sum-exps or row dots) into shared memory: threads
// first_thread .. first_thread + 15 copy 16 bytes each.
__device__ __forceinline__ void fetch_row_floats(float* dst, const float* src, int first_thread) {
  const int i = int(threadIdx.x) - first_thread;
  if (i >= 0 && i < 16) core::cp_async16(dst + 4 * i, src + 4 * i);
}

// Value e of accumulator group j (the thread's registers 4j+e, in both kernels' accumulator
// layout) read back from its repacking as BF16 A operands (K/16 of them), i.e. as rounded to
// BF16: the probabilities the next product used.
template <int K>
__device__ __forceinline__ float frag_value(const std::uint32_t (&a)[K][4], int j, int e) {
  const std::uint32_t w = a[j / 2][(j % 2) * 2 + e / 2];
  const __nv_bfloat162 v = *reinterpret_cast<const __nv_bfloat162*>(&w);
  return e % 2 == 0 ? __low2float(v) : __high2float(v);
}

// Calls f with the head size as a compile-time constant (std::integral_constant): 128, or 64
// for anything else (what every kind of fused-attention kernel is built for; callers check).
template <class F>
void with_head_size(int hs, F&& f) {
  if (hs == 128)
    f(std::integral_constant<int, 128>{});
  else
    f(std::integral_constant<int, 64>{});
}

// Launches `kernel` with THREADS threads a block and `smem` bytes of dynamic shared memory
// (opted into above 48 KB).
template <int THREADS, class Kernel, class... Args>
void launch(Kernel kernel, std::size_t smem, dim3 grid, cudaStream_t s, Args... args) {
  core::allow_dynamic_smem(kernel, int(smem));
  kernel<<<grid, THREADS, smem, s>>>(args...);
}

}  // namespace fp8scope::gpu_model::flash
