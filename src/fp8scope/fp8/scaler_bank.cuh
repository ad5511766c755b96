#pragma once
// The scaling recipe of many tensors on the device: the GPU mirror of TensorScaler
// (recipe.hpp), state and update kernel. Slot i keeps its amax history (a ring of
// amax_history_len values), the recipe's scale, and the scale a cast uses (the recipe's
// scale times a test-only planted factor) with its inverse for the GEMM. One kernel updates
// every slot at the end of a step (delayed scaling) or one slot before its cast (current
// scaling). Slots with no format (observed-only tensors) are skipped. CUDA builds only.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/fp8/cast.cuh"
#include "fp8scope/fp8/recipe.hpp"

#include <optional>
#include <vector>

namespace fp8scope::fp8 {

class ScalerBank {
 public:
  // formats[i]: the FP8 format of slot i, or nullopt for a slot without a recipe.
  // planted[i]: factor applied to slot i's scale at use (1 = none); empty = all 1.
  ScalerBank(const RecipeConfig& cfg, const std::vector<std::optional<Format>>& formats, const std::vector<float>& planted, cudaStream_t s);

  // Delayed scaling: slot i takes stats[i] as this step's amax (NaN when it saw a
  // non-finite input) and computes the scale of the next step.
  void update_all(const CastStats* stats, cudaStream_t s);
  // One slot from one stats record (current scaling: the tensor's own amax, right before
  // its cast).
  void update_one(int slot, const CastStats* stats, cudaStream_t s);

  // cuBLASLt reads the dequantisation scales through pointers that must be 16-byte aligned
  // (it refuses the matmul otherwise), so every slot's scales are kStride floats apart.
  static constexpr int kStride = 4;
  const float* scale(int slot) const { return scale_use_.as<float>() + slot * kStride; }
  const float* scale_inv(int slot) const { return scale_inv_.as<float>() + slot * kStride; }
  const float* scales() const { return scale_use_.as<float>(); }  // [slots * kStride], as the casts use them
  int slots() const { return n_; }
  const RecipeConfig& config() const { return cfg_; }

 private:
  RecipeConfig cfg_;
  int n_, len_;
  core::DeviceBuffer history_, count_, fmax_, scale_, scale_use_, scale_inv_, planted_;
};

}  // namespace fp8scope::fp8
