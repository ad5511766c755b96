#pragma once
// Device side of scaled GEMM inputs: FP32 source operands with a chosen magnitude structure,
// per-block amax, the block scales (as the reference reads them and as cuBLASLt reads them),
// and the quantisation of a source into FP8 codes. Thin launchers only.
#include "fp8scope/gemm/dtype.hpp"
#include "fp8scope/gemm/scale_mode.hpp"

#include <cuda_runtime.h>

#include <cstdint>

namespace fp8scope::gemm {

// Where logical element (o, k) of an operand is stored: k fastest (A of a "T" layout, B of an
// "N" layout) or o fastest, with leading dimension ld.
struct OperandIndex {
  bool k_fastest = true;
  std::int64_t ld = 0;
  __host__ __device__ std::int64_t at(std::int64_t o, std::int64_t k) const { return k_fastest ? k + o * ld : o + k * ld; }
};

// src[at(o, k)] = the pattern's value at (o, k) for o < geo.outer, k < geo.inner (padding of
// the leading dimension is zero). count = the stored elements (ld x the other extent).
void fill_source(float* src, const OperandIndex& idx, const ScaleGeometry& geo, std::int64_t count, InputPattern pattern,
                 std::uint64_t seed, cudaStream_t s);

// amax[block] = max |src| over each block (amax zeroed before).
void block_amax(const float* src, const OperandIndex& idx, const ScaleGeometry& geo, float* amax, cudaStream_t s);

// dequant[block] = block_dequant(amax[block]) and the scale tensor cuBLASLt reads (lt: its
// bytes, zeroed before, so padding is zero).
void block_scales(const float* amax, const ScaleGeometry& geo, DType fmt, float* dequant, void* lt, cudaStream_t s);

// For codes drawn directly (fp8_exact): each block's scale is base * 2^r, r uniform in -3..3,
// written to dequant and to the scale tensor (base must be a power of two for UE8M0).
void random_block_scales(const ScaleGeometry& geo, float base, std::uint64_t seed, float* dequant, void* lt, cudaStream_t s);

// codes[at(o, k)] = saturating round(src / dequant[block]); counts non-zero sources that
// became zero into *underflow (zeroed before). Non-FP8 types are rounded to the type.
void quantize_operand(const float* src, const OperandIndex& idx, const ScaleGeometry& geo, const float* dequant, void* codes, DType type,
                      unsigned long long* underflow, cudaStream_t s);

}  // namespace fp8scope::gemm
