#pragma once
// FP8 training emulated on the CPU reference: the quantise-dequantise points an FP8 linear
// has (its input and weight in the forward format, the output gradient in the backward
// format, each with its own recipe-driven scale), taps of every tensor (amax, scale,
// non-finite, saturated and underflow counts) and the NaN onset. The oracle the GPU FP8 model
// is checked against; values are rounded exactly as the FP8 codecs round them.
#include "fp8scope/fp8/recipe.hpp"
#include "fp8scope/fp8/tap.hpp"
#include "fp8scope/model/fp8_plan.hpp"

#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace fp8scope::cpu {

using fp8::Tap;

class Fp8Emulation {
 public:
  // What runs in FP8 and how (recipe, overflow mode, which linears, FP8 attention, planted
  // scales) is the model spec's Fp8ModelConfig, the description the GPU model takes too; its
  // GPU-only fields (fused variants, fast accumulation, tap interval) change no numerics here.
  explicit Fp8Emulation(model::Fp8ModelConfig opt);

  // Quantise-dequantise an FP8 GEMM operand; records its tap. role: "input", "weight" (forward
  // format) or "grad" (backward format). The returned buffer lives until the same
  // (layer, tensor) is quantised again.
  const double* quantize(int layer, const std::string& tensor, const std::string& role, const double* x, std::size_t n);
  // Rowwise and block scaling: quantise-dequantise one GEMM operand, row-major [rows x cols],
  // whose reduction dimension is its columns (k_along_cols) or its rows, with a scale per row
  // along it (rowwise) or per block (block: 128x128 for role "weight", else 1x128 along the
  // reduction). The tap's amax is the largest block amax, its scale the smallest block scale
  // (1 / dequantisation). The buffer lives until the same (layer, tensor) is quantised again.
  const double* quantize_operand(int layer, const std::string& tensor, const std::string& role, const double* x, int rows, int cols,
                                 bool k_along_cols);
  // The buffer the last quantize / quantize_operand of (layer, tensor) returned.
  const double* quantized(int layer, const std::string& tensor) const { return buffers_.at({layer, tensor}).data(); }
  fp8::Scaling scaling() const { return opt_.recipe.scaling; }
  // A tensor that stays in high precision: only amax and non-finite count are tapped.
  void observe(int layer, const std::string& tensor, const std::string& pass, const double* x, std::size_t n);
  // Delayed scaling: every scaler takes this step's amax; the next step uses the new scales.
  void end_step();

  const std::vector<Tap>& taps() const { return taps_; }
  // The first tap (in execution order) of the first step with a non-finite value.
  std::optional<Tap> nan_onset() const;
  int step() const { return step_; }
  bool attention() const { return opt_.attention(); }
  bool fp8_linear(const std::string& name) const { return opt_.fp8(name); }
  const model::Fp8ModelConfig& config() const { return opt_; }

 private:
  model::Fp8ModelConfig opt_;
  int step_ = 0;
  std::map<std::pair<int, std::string>, fp8::TensorScaler> scalers_;
  std::map<std::pair<int, std::string>, float> amax_this_step_;
  std::map<std::pair<int, std::string>, std::vector<double>> buffers_;
  std::vector<Tap> taps_;
};

}  // namespace fp8scope::cpu
