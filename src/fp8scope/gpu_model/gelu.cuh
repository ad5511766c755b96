#pragma once
// The GELU (tanh approximation) as every GPU kernel computes it: the elementwise kernels and the
// casts fused with it (mlp.cu, gelu_block_cast.cu) must give the same bits.
#include "fp8scope/core/fast_math.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

namespace fp8scope::gpu_model {

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluA = 0.044715f;

// 0.5 (1 + tanh(u)) is the logistic function of 2u, 1 / (1 + e) with e = exp(-2u): one
// hardware exponential and one reciprocal instead of tanhf's software sequence (which made
// the fused GELU casts issue-bound), and accurate in relative terms over the whole range,
// where 1 + tanh(u) with an approximate tanh loses all digits in the negative tail. The
// exponent is capped at 2^126 (u < -43.7, where tanhf already gives exactly -1) so that
// e * s stays finite: s is then 0, as 1 + tanhf(u) was.
struct GeluParts {
  float s, e, du;  // s = 0.5 (1 + tanh(u)), e * s = 1 - s, du = u'(x)
};
__device__ __forceinline__ GeluParts gelu_parts(float x) {
  const float x2 = x * x;
  const float e = core::exp2_fast(fminf(-2.0f * core::kLog2e * kGeluC * x * fmaf(kGeluA, x2, 1.0f), 126.0f));
  const float s = __fdividef(1.0f, 1.0f + e);
  return {s, e, kGeluC * fmaf(3.0f * kGeluA, x2, 1.0f)};
}

__device__ __forceinline__ float gelu_value(float x) { return x * gelu_parts(x).s; }

// d/dx [x s(u)] = s + x * 2 s (1 - s) u'.
__device__ __forceinline__ float gelu_grad(float x) {
  const GeluParts p = gelu_parts(x);
  return fmaf(2.0f * x * p.s * (p.e * p.s), p.du, p.s);
}

// The GELU's input as the backward reads it when it is kept in E4M3 (gelu_input_e4m3): unit
// scale, saturating (see model::Fp8ModelConfig::gelu_input_e4m3), 8 values per 8 bytes.
__device__ __forceinline__ uint2 e4m3_unit8(const uint4& raw) {
  const __nv_bfloat162_raw* h = reinterpret_cast<const __nv_bfloat162_raw*>(&raw);
  unsigned c[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) c[i] = __nv_cvt_bfloat16raw2_to_fp8x2(h[i], __NV_SATFINITE, __NV_E4M3);
  return make_uint2(c[0] | c[1] << 16, c[2] | c[3] << 16);
}
__device__ __forceinline__ std::uint8_t e4m3_unit(__nv_bfloat16 x) {
  return std::uint8_t(__nv_cvt_bfloat16raw_to_fp8(static_cast<__nv_bfloat16_raw>(x), __NV_SATFINITE, __NV_E4M3));
}
__device__ __forceinline__ void unpack8_e4m3(const uint2& raw, float* out) {
  const unsigned w[2] = {raw.x, raw.y};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(w[i / 2] >> (16 * (i % 2))), __NV_E4M3);
    const float2 f = __half22float2(__half2(h));
    out[2 * i] = f.x, out[2 * i + 1] = f.y;
  }
}

// 8 BF16 values (16 bytes) through f, each rounded back to BF16 as the elementwise kernels
// store it.
template <class F>
__device__ __forceinline__ uint4 map_bf16x8(const uint4& raw, F f) {
  const __nv_bfloat16* x = reinterpret_cast<const __nv_bfloat16*>(&raw);
  uint4 res;
  __nv_bfloat16* y = reinterpret_cast<__nv_bfloat16*>(&res);
#pragma unroll
  for (int j = 0; j < 8; ++j) y[j] = __float2bfloat16(f(j, __bfloat162float(x[j])));
  return res;
}

}  // namespace fp8scope::gpu_model
