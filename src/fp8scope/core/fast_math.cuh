#pragma once
// 2^x as the single hardware instruction (MUFU.EX2, relative error about 2^-22). exp2f and
// ex2.approx.f32 without .ftz keep denormal results, which costs extra instructions around
// the MUFU in every element of the exponential-heavy kernels (cross-entropy, GELU); results
// below 2^-126 become 0 here.
namespace fp8scope::core {

__device__ __forceinline__ float exp2_fast(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace fp8scope::core
