#pragma once
// Exponentials in base 2 for the kernels: log2 e (one definition for the attention, loss and
// GELU), and 2^x as the single hardware instruction (MUFU.EX2, relative error about 2^-22).
// exp2f and ex2.approx.f32 without .ftz keep denormal results, which costs extra instructions
// around the MUFU in every element of the exponential-heavy kernels (attention, cross-entropy,
// GELU); results below 2^-126 become 0 here.
namespace fp8scope::core {

constexpr float kLog2e = 1.4426950408889634f;  // exp(x) = 2^(x log2 e)

__device__ __forceinline__ float exp2_fast(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace fp8scope::core
