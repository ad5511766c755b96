#pragma once
// Device helpers of the GEMM probe: random typed inputs, the FP32 reference GEMM on sampled
// output columns, and the comparison of cuBLASLt's output with it. Thin launchers only.
#include "fp8scope/gemm/dtype.hpp"
#include "fp8scope/gemm/scale_mode.hpp"

#include <cuda_runtime.h>

#include <cstdint>

namespace fp8scope::gemm {

// Fills count elements of type t with N(0,1) * quant_scale (FP8: encoded with saturation),
// a deterministic function of (seed, index).
void fill_normal(void* p, DType t, std::int64_t count, float quant_scale, std::uint64_t seed, cudaStream_t s);

struct ReferenceArgs {
  const void* a;
  const void* b;
  DType a_type, b_type;
  bool trans_a, trans_b;
  std::int64_t m, k, lda, ldb, stride_a, stride_b, batch;
  float a_dequant, b_dequant;  // multiplies the stored values (1 for non-FP8)
  const std::int64_t* cols;    // sampled output columns (device), ncols of them
  std::int64_t ncols;
  Epilogue epilogue;
  const void* bias;  // length m, of bias_type
  DType bias_type;
  float* out;  // [batch][ncols][m] float
  // Per-block dequantisation scales ([n_ob][n_kb] of the geometry) multiplying the stored
  // values on top of a_dequant / b_dequant; null: none.
  const float* a_block_dequant = nullptr;
  const float* b_block_dequant = nullptr;
  ScaleGeometry a_geo{}, b_geo{};
};
void reference_gemm(const ReferenceArgs& args, cudaStream_t s);

// max |x| over n floats into *amax (device, must be zeroed before).
void abs_max(const float* x, std::int64_t n, float* amax, cudaStream_t s);

struct CompareArgs {
  const void* d;
  DType d_type;
  std::int64_t m, n, ldd, stride_d, batch;
  float d_dequant;   // 1 / scale_d for FP8 outputs, else 1
  const float* ref;  // as reference_gemm wrote it
  const std::int64_t* cols;
  std::int64_t ncols;
};
struct CompareResult {  // device-side accumulators, zero before compare()
  double err_sq, ref_sq;
  unsigned long long nonfinite;  // over every element of D (rows < m): catches unwritten output
  float max_abs_d;
};
void compare(const CompareArgs& args, CompareResult* result, cudaStream_t s);

// Per output row (m of them) and per sampled column (ncols): sums of squared error against
// the reference and of the squared reference (all four zeroed before), for the relative error
// of each row and column -- what a whole-matrix norm hides when magnitudes differ by row.
struct LineErrors {
  double *row_err2, *row_ref2, *col_err2, *col_ref2;
};
void line_errors(const CompareArgs& args, const LineErrors& out, cudaStream_t s);

}  // namespace fp8scope::gemm
