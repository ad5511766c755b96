#pragma once
// Typed element loads and stores and the deterministic normal samples of the GEMM probe's
// kernels (the input fill, the quantisation of scaled inputs, the reference and the compare).
#include "fp8scope/fp8/format.hpp"
#include "fp8scope/gemm/dtype.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace fp8scope::gemm {

__device__ __forceinline__ std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A standard normal from (seed, index): Box-Muller on two 32-bit uniforms of one hash.
__device__ __forceinline__ float normal_at(std::uint64_t seed, std::int64_t i) {
  const std::uint64_t h = splitmix64(seed ^ (std::uint64_t(i) * 0xD1B54A32D192ED03ull));
  const float u1 = (float(std::uint32_t(h >> 32)) + 1.0f) * 2.3283064e-10f;  // (0, 1]
  const float u2 = float(std::uint32_t(h)) * 2.3283064e-10f;
  return sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
}

__device__ __forceinline__ float load(const void* p, DType t, std::int64_t i) {
  switch (t) {
    case DType::e4m3: return fp8::decode(static_cast<const std::uint8_t*>(p)[i], fp8::Format::e4m3);
    case DType::e5m2: return fp8::decode(static_cast<const std::uint8_t*>(p)[i], fp8::Format::e5m2);
    case DType::bf16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DType::fp16: return __half2float(static_cast<const __half*>(p)[i]);
    case DType::fp32: return static_cast<const float*>(p)[i];
  }
  return 0.0f;
}

__device__ __forceinline__ void store(void* p, DType t, std::int64_t i, float v) {
  switch (t) {
    case DType::e4m3: static_cast<std::uint8_t*>(p)[i] = fp8::encode(v, fp8::Format::e4m3, fp8::Overflow::satfinite); break;
    case DType::e5m2: static_cast<std::uint8_t*>(p)[i] = fp8::encode(v, fp8::Format::e5m2, fp8::Overflow::satfinite); break;
    case DType::bf16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(v); break;
    case DType::fp16: static_cast<__half*>(p)[i] = __float2half(v); break;
    case DType::fp32: static_cast<float*>(p)[i] = v; break;
  }
}

// Blocks for a grid-stride loop over n elements: enough to fill the GPU, at most 32 per SM.
inline int grid_for(std::int64_t n, int block) {
  const std::int64_t g = (n + block - 1) / block;
  return int(g < 132 * 32 ? (g < 1 ? 1 : g) : 132 * 32);
}

}  // namespace fp8scope::gemm
