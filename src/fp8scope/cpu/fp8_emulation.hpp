#pragma once
// FP8 training emulated on the CPU reference: the quantise-dequantise points an FP8 linear
// has (its input and weight in the forward format, the output gradient in the backward
// format, each with its own recipe-driven scale), taps of every tensor (amax, scale,
// non-finite, saturated and underflow counts) and the NaN onset. The oracle the GPU FP8 model
// is checked against; values are rounded exactly as the FP8 codecs round them.
#include "fp8scope/fp8/recipe.hpp"
#include "fp8scope/fp8/tap.hpp"

#include <map>
#include <set>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace fp8scope::cpu {

using fp8::Tap;

struct Fp8Options {
  fp8::RecipeConfig recipe;
  fp8::Overflow overflow = fp8::Overflow::satfinite;
  // The fp8_attention variant: Q, K and V (inputs of QK^T and PV), the softmax probabilities
  // and the attention output's gradient are FP8 too, each with its own scale.
  bool attention = false;
  // Which linears run in FP8 (qkv, proj, fc1, fc2, lm_head); the others stay in high precision.
  std::set<std::string> linears = {"qkv", "proj", "fc1", "fc2", "lm_head"};
  // Test hook: (layer, tensor) -> factor multiplying that tensor's scale, to plant overflows.
  std::map<std::pair<int, std::string>, float> planted_scale;
};

class Fp8Emulation {
 public:
  explicit Fp8Emulation(Fp8Options opt);

  // Quantise-dequantise an FP8 GEMM operand; records its tap. role: "input", "weight" (forward
  // format) or "grad" (backward format). The returned buffer lives until the same
  // (layer, tensor) is quantised again.
  const double* quantize(int layer, const std::string& tensor, const std::string& role, const double* x, std::size_t n);
  // A tensor that stays in high precision: only amax and non-finite count are tapped.
  void observe(int layer, const std::string& tensor, const std::string& pass, const double* x, std::size_t n);
  // Delayed scaling: every scaler takes this step's amax; the next step uses the new scales.
  void end_step();

  const std::vector<Tap>& taps() const { return taps_; }
  // The first tap (in execution order) of the first step with a non-finite value.
  std::optional<Tap> nan_onset() const;
  int step() const { return step_; }
  bool attention() const { return opt_.attention; }
  bool fp8_linear(const std::string& name) const { return opt_.linears.count(name) > 0; }

 private:
  Fp8Options opt_;
  int step_ = 0;
  std::map<std::pair<int, std::string>, fp8::TensorScaler> scalers_;
  std::map<std::pair<int, std::string>, float> amax_this_step_;
  std::map<std::pair<int, std::string>, std::vector<double>> buffers_;
  std::vector<Tap> taps_;
};

}  // namespace fp8scope::cpu
