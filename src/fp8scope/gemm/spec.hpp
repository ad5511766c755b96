#pragma once
// What one GEMM is: D[m x n] = epilogue(alpha * scale_a * scale_b * op(A)[m x k] . op(B)[k x n])
// (times scale_d when D is FP8), column-major as cuBLASLt sees it. Host-only: probes build
// specs from sweep points, tests check them without a GPU.
#include "fp8scope/gemm/dtype.hpp"
#include "fp8scope/gemm/scale_mode.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace fp8scope::gemm {

std::string to_string(DType t);
std::string to_string(Epilogue e);
std::optional<DType> parse_dtype(const std::string& s);
std::optional<Epilogue> parse_epilogue(const std::string& s);
std::size_t size_of(DType t);
bool is_fp8(DType t);

struct GemmSpec {
  std::int64_t m = 0, n = 0, k = 0, batch = 1;
  bool trans_a = true, trans_b = false;  // layout "TN": Hopper's FP8 tensor cores need this one
  DType a = DType::e4m3, b = DType::e4m3, c = DType::bf16, d = DType::bf16;
  Epilogue epilogue = Epilogue::none;
  bool fast_accum = true;
  std::int64_t lda = 0, ldb = 0, ldd = 0;  // 0 = the smallest valid leading dimension
  // Byte offsets added to the allocation of A, B, D and the scale/amax pointers, to probe
  // pointer-alignment requirements (cuBLASLt checks them only at run time).
  std::int64_t a_offset = 0, b_offset = 0, d_offset = 0, scale_offset = 0;
  std::size_t workspace_bytes = 32u << 20;
  float alpha = 1.0f, beta = 0.0f;  // D = alpha * op(A) op(B) + beta * C (C is D when types match)
  // How A and B are scaled (per tensor, per row, per block) and what the inputs are.
  ScaleMode a_scale = ScaleMode::tensor, b_scale = ScaleMode::tensor;
  InputPattern inputs = InputPattern::fp8_exact;
  std::optional<DType> aux;  // the GELU aux's type where not aux_type's default

  std::string layout() const { return std::string(trans_a ? "T" : "N") + (trans_b ? "T" : "N"); }
  // Stored shapes (rows x cols, column-major) of A, B and D.
  std::int64_t a_rows() const { return trans_a ? k : m; }
  std::int64_t a_cols() const { return trans_a ? m : k; }
  std::int64_t b_rows() const { return trans_b ? n : k; }
  std::int64_t b_cols() const { return trans_b ? k : n; }
  std::int64_t lda_eff() const { return lda ? lda : a_rows(); }
  std::int64_t ldb_eff() const { return ldb ? ldb : b_rows(); }
  std::int64_t ldd_eff() const { return ldd ? ldd : m; }
  // The scale blocks of A (outer m) and B (outer n), both along K.
  ScaleGeometry a_geometry() const { return scale_geometry(a_scale, m, k); }
  ScaleGeometry b_geometry() const { return scale_geometry(b_scale, n, k); }
  // Inputs built from FP32 values (quantised by the scale modes), or codes drawn directly.
  bool from_sources() const { return inputs != InputPattern::fp8_exact || a_scale != ScaleMode::tensor || b_scale != ScaleMode::tensor; }
  double flops() const { return 2.0 * double(m) * double(n) * double(k) * double(batch); }
  // Bytes the GEMM must at least move (each operand once): the bandwidth floor.
  double min_bytes() const;
  // Device memory the probe allocates for this point (operands, C, reference, workspace).
  double device_bytes(std::int64_t ref_cols) const;
};

// The bias element type cuBLASLt expects with these operand types (with FP8 inputs BF16, or
// FP16 beside an FP16 C).
DType epilogue_type(const GemmSpec& s);
// The aux (GELU input) element type: as set, else E4M3 beside an E4M3 D (cuBLASLt's FP8 kernels
// take E4M3 or FP16 there; E4M3 is what an FP8 training step keeps), else the bias type.
DType aux_type(const GemmSpec& s);

// Parses a layout string "TN", "NN", "NT", "TT".
bool parse_layout(const std::string& s, bool& trans_a, bool& trans_b);

// Structural problems (not cuBLASLt's to judge): non-positive sizes, a leading dimension
// smaller than its matrix, a scale mode on an operand that is not FP8, a block scale mode with
// a batch. Empty when fine.
std::string structural_error(const GemmSpec& s);

// Relative-error tolerance ||D - ref|| / ||ref|| for a correct GEMM. The inputs are exactly
// representable (the reference uses the same quantised values), so the error is the output's
// rounding (unit roundoff u: fp32 2^-24, fp16 2^-11, bf16 2^-8, e4m3 2^-4, e5m2 2^-3; the
// RMS of uniform rounding is about u/sqrt(3)) plus accumulation in reduced precision
// (Hopper's FP8 fast accumulation). The bound is about 4x the output's rounding RMS, with a
// floor of 1e-3 for the accumulation.
double tolerance(const GemmSpec& s);

nlohmann::json to_json(const GemmSpec& s);

}  // namespace fp8scope::gemm
