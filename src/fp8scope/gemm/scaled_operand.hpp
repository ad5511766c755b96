#pragma once
// One GEMM operand prepared for a point whose inputs come from FP32 sources or carry block
// scales (GemmSpec::from_sources): the source, the stored codes, the per-block dequantisation
// scales the reference applies and the scale tensor cuBLASLt reads. CUDA builds only.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/gemm/scaled_inputs.cuh"
#include "fp8scope/gemm/spec.hpp"

#include <cstdint>

namespace fp8scope::gemm {

struct OperandRequest {
  void* codes = nullptr;  // the operand as the GEMM reads it (already allocated)
  DType type = DType::e4m3;
  ScaleGeometry geo;
  OperandIndex idx;
  std::int64_t count = 0;  // stored elements
  InputPattern inputs = InputPattern::fp8_exact;
  float exact_scale = 1.0f;  // fp8_exact: the codes are N(0,1) * exact_scale
  std::uint64_t seed = 0;
  std::int64_t scale_offset = 0;  // bytes added to the scale tensor's pointer
};

class ScaledOperand {
 public:
  ScaledOperand(const OperandRequest& req, cudaStream_t s);
  // What cuBLASLt's scale pointer gets: the operand's scale tensor (a single float for tensor).
  const void* lt_scales() const { return lt_.bytes_at(std::size_t(offset_)); }
  // Per-block dequantisation for the reference; null for a non-FP8 operand (scale 1).
  const float* block_dequant() const { return fp8_ ? dequant_.as<float>() : nullptr; }
  // The unquantised FP32 source (stored like the operand); null for fp8_exact.
  const float* source() const { return has_source_ ? src_.as<float>() : nullptr; }
  // Non-zero sources whose code is zero (device counter, read after the stream syncs).
  const unsigned long long* underflow() const { return counter_.as<unsigned long long>(); }

 private:
  std::int64_t offset_;
  bool fp8_, has_source_;
  core::DeviceBuffer src_, amax_, dequant_, lt_, counter_;
};

}  // namespace fp8scope::gemm
