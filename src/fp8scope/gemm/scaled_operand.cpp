#include "fp8scope/gemm/scaled_operand.hpp"

#include "fp8scope/gemm/kernels.cuh"

#include <cmath>

namespace fp8scope::gemm {

ScaledOperand::ScaledOperand(const OperandRequest& r, cudaStream_t s)
    : offset_(r.scale_offset), fp8_(is_fp8(r.type)), has_source_(r.inputs != InputPattern::fp8_exact) {
  const ScaleGeometry& g = r.geo;
  // The scale tensor's bytes, plus the probed offset and room for a misaligned last element.
  lt_ = core::DeviceBuffer(std::size_t(g.lt_elements() * g.lt_element_bytes()) + std::size_t(offset_) + 16);
  dequant_ = core::DeviceBuffer(std::size_t(g.blocks()) * sizeof(float));
  counter_ = core::DeviceBuffer(sizeof(unsigned long long));
  FP8S_CUDA(cudaMemsetAsync(lt_.get(), 0, lt_.size(), s));
  FP8S_CUDA(cudaMemsetAsync(counter_.get(), 0, counter_.size(), s));
  void* lt = lt_.bytes_at(std::size_t(offset_));
  if (!fp8_) {
    // Not scaled (structural_error allows only per-tensor here): scale 1 everywhere.
    const float one = 1.0f;
    FP8S_CUDA(cudaMemcpyAsync(dequant_.get(), &one, sizeof one, cudaMemcpyHostToDevice, s));
    FP8S_CUDA(cudaMemcpyAsync(lt, &one, sizeof one, cudaMemcpyHostToDevice, s));
  }
  if (!has_source_) {
    // Codes drawn directly; a block mode gets random power-of-two block scales around the
    // power of two nearest 1 / exact_scale, so every block's values stay O(1).
    fill_normal(r.codes, r.type, r.count, fp8_ ? r.exact_scale : 1.0f, r.seed, s);
    if (fp8_) random_block_scales(g, std::ldexp(1.0f, -int(std::lround(std::log2(r.exact_scale)))), r.seed, dequant_.as<float>(), lt, s);
    FP8S_CUDA(cudaGetLastError());
    return;
  }
  src_ = core::DeviceBuffer(std::size_t(r.count) * sizeof(float));
  fill_source(src_.as<float>(), r.idx, g, r.count, r.inputs, r.seed, s);
  if (fp8_) {
    amax_ = core::DeviceBuffer(std::size_t(g.blocks()) * sizeof(float));
    FP8S_CUDA(cudaMemsetAsync(amax_.get(), 0, amax_.size(), s));
    block_amax(src_.as<float>(), r.idx, g, amax_.as<float>(), s);
    block_scales(amax_.as<float>(), g, r.type, dequant_.as<float>(), lt, s);
  }
  // Padding of the leading dimension stays as the source has it (zero).
  FP8S_CUDA(cudaMemsetAsync(r.codes, 0, std::size_t(r.count) * size_of(r.type), s));
  quantize_operand(src_.as<float>(), r.idx, g, dequant_.as<float>(), r.codes, r.type, counter_.as<unsigned long long>(), s);
  FP8S_CUDA(cudaGetLastError());
}

}  // namespace fp8scope::gemm
