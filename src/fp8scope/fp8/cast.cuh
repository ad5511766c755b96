#pragma once
// FP8 quantisation on the GPU, fused with the statistics a scaling recipe and the taps need:
// one pass reads BF16, writes FP8 (x * scale, encoded with the chosen overflow mode) and
// accumulates amax of the input, and the counts of non-finite inputs, saturated values
// (|x * scale| above the format's max) and underflows (non-zero x that became zero).
// The transposing variant also writes the FP8 transpose that dgrad/wgrad GEMMs need.
#include "fp8scope/fp8/format.hpp"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace fp8scope::fp8 {

struct CastStats {  // device-side, zeroed by the caller before the cast
  float amax;
  unsigned long long nonfinite, saturated, underflow;
};

// scale: device pointer to the quantisation scale (the recipe's current one).
void quantize(std::uint8_t* out, const __nv_bfloat16* in, std::int64_t n, const float* scale, Format f, Overflow o,
              CastStats* stats, cudaStream_t s);

// in: row-major [rows][cols]; out: the same layout; out_t: row-major [cols][rows].
void quantize_transpose(std::uint8_t* out, std::uint8_t* out_t, const __nv_bfloat16* in, int rows, int cols, const float* scale,
                        Format f, Overflow o, CastStats* stats, cudaStream_t s);

}  // namespace fp8scope::fp8
