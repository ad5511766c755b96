#pragma once
// The FP8 casts of per-row and per-block scaling (the model's `scaling: rowwise | block`). From
// a BF16 matrix [rows][cols] they write two FP8 copies, each with the scale tensor cuBLASLt
// reads beside it: the matrix itself, scaled along its rows (the operand of a GEMM that reduces
// over cols), and its transpose [cols][rows], scaled along the original columns (the operand of
// a GEMM that reduces over rows; wgrad's copies, TransformerEngine's "columnwise" data). Block
// scaling reads the input once (each 128x128 tile holds whole 1x128 and 128x128 blocks of both
// copies); row-wise scaling needs each whole row's and column's amax first, one more read.
// Codes are round(x / d), d = model_block_dequant(mode, amax of the block, rule) (block_scale.hpp),
// exactly as the CPU emulation (cpu::Fp8Emulation::quantize_operand) computes them: a gpu test
// compares every code and scale, another the kernels' division with __fdiv_rn for every BF16
// value and every scale. Thin launchers; CUDA builds only.
#include "fp8scope/fp8/block_scale.hpp"
#include "fp8scope/fp8/cast.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace fp8scope::fp8 {

// One copy's outputs. codes null: this copy is not written.
struct BlockCastCopy {
  std::uint8_t* codes = nullptr;  // [rows][cols] (the matrix) or [cols][rows] (the transpose)
  float* lt = nullptr;            // its scale tensor, as ScaleGeometry::lt_offset lays it out
  CastStats* stats = nullptr;     // optional; zeroed by the caller
  float* block_amax = nullptr;    // optional: each block's amax, [n_ob][n_kb], inf where non-finite
  float* max_dequant = nullptr;   // optional: the largest block dequantisation scale (atomic max)
};

// mode: outer_vec (one scale per row of each copy), vec128 (1x128 blocks) or blk128 (128x128
// blocks); the transpose's geometry is scale_geometry(mode, cols, rows). The scale tensors'
// padding is never written (zero it once). scratch: block_cast_scratch_floats(rows, cols)
// floats, used by outer_vec only. col_sums (may be null): the input's column sums as
// block_cast_sum_rows(rows) rows of partial sums [..][cols] (a bias gradient from the
// gradient's cast, one read fewer; column_sum_add sums them in a fixed order).
void block_cast_transpose(const __nv_bfloat16* in, int rows, int cols, ScaleMode mode, Format f, Overflow o, BlockScaleRule rule,
                          const BlockCastCopy& direct, const BlockCastCopy& transposed, float* scratch, cudaStream_t s,
                          float* col_sums = nullptr);
inline std::size_t block_cast_scratch_floats(int rows, int cols) { return std::size_t(rows) + std::size_t(cols); }
inline int block_cast_sum_rows(int rows) { return (rows + 127) / 128; }

// Checks the casts' division (a block's reciprocal and two corrections, see block_cast.cu; for
// a power-of-two scale also the single product by its reciprocal) against __fdiv_rn for every
// finite BF16 value and each of n scales (those the fast path takes: 2^-76 <= d <= 2^100);
// adds the pairs whose quotients differ within the FP8 range to *mismatches (zeroed by the
// caller).
void block_division_mismatches(const float* scales, int n, unsigned long long* mismatches, cudaStream_t s);

// The smallest non-zero and the median block amax of n blocks (finite blocks only, as the CPU
// emulation's taps), from an array block_cast_transpose wrote: out[0] = smallest non-zero,
// out[1] = median. sorted: n floats; temp: block_amax_sort_temp_bytes(n) bytes.
std::size_t block_amax_sort_temp_bytes(std::int64_t n);
void block_amax_quantiles(const float* block_amax, std::int64_t n, float* sorted, void* temp, std::size_t temp_bytes, float* out,
                          cudaStream_t s);

}  // namespace fp8scope::fp8
