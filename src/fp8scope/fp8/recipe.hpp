#pragma once
// FP8 scaling recipes as a host-side state machine; the GPU path mirrors it and the tests
// pin both to hand-computed sequences.
//
// A tensor is quantised as q = fp8(x * scale) and dequantised as q / scale.
// DelayedScaling (TransformerEngine's semantics, re-derived):
//   each step the tensor's amax is pushed into a history of amax_history_len slots;
//   a = max(history) (algo max) or the newest amax (algo most_recent);
//   scale = fp8_max / a / 2^margin, used for the *next* step;
//   if a is 0, inf or NaN the previous scale is kept (NaN in the history propagates through
//   max, as torch.max does, so a NaN keeps the scale frozen until it rolls out);
//   a scale that overflows to inf becomes FLT_MAX. The initial scale is 1.
// CurrentScaling: the same formula with the tensor's own amax of this step (history 1); the
// caller measures amax, calls update(), then quantises the same tensor with scale().
// Rowwise and block scaling (no history, no delay): each GEMM operand gets scales of its own,
// from this step's amax of each row (rowwise: one per row along the GEMM's reduction
// dimension, torchao's row-wise recipe) or of each block (block: TransformerEngine's
// Float8BlockScaling, 1x128 blocks along the reduction dimension for activations and
// gradients, 128x128 blocks for weights; the wgrad GEMM's operands are blocked along the
// tokens). A block's scale is amax / fp8_max (times 2^margin) dividing its values, or with
// pow2_block_scales the power of two TransformerEngine's Float8BlockScaling takes by default,
// as fp8/block_scale.hpp computes it; the TensorScaler below is not used for them.
// HYBRID uses E4M3 for forward tensors and E5M2 for gradients; E4M3 uses E4M3 for both.
#include "fp8scope/fp8/block_scale.hpp"
#include "fp8scope/fp8/format.hpp"

#include <deque>
#include <optional>
#include <string>

namespace fp8scope::fp8 {

enum class RecipeFormat : std::uint8_t { e4m3, hybrid };
enum class AmaxAlgo : std::uint8_t { max, most_recent };
enum class Scaling : std::uint8_t { delayed, current, rowwise, block };
// Scales per row or block of each GEMM operand.
inline bool per_block(Scaling s) { return s == Scaling::rowwise || s == Scaling::block; }
enum class Pass : std::uint8_t { forward, backward };

struct RecipeConfig {
  Scaling scaling = Scaling::delayed;
  RecipeFormat format = RecipeFormat::hybrid;
  int margin = 0;  // may be negative (stress tests)
  int amax_history_len = 1024;
  AmaxAlgo amax_algo = AmaxAlgo::max;
  bool pow2_block_scales = false;  // rowwise / block: each scale a power of two (block_scale.hpp)
};

// The rule of a recipe's per-row / per-block scales.
inline BlockScaleRule block_scale_rule(const RecipeConfig& r) { return {r.margin, r.pow2_block_scales}; }

// The FP8 format a tensor of the given pass uses under a recipe format.
Format format_for(RecipeFormat rf, Pass pass);

// scale = fp8_max / amax / 2^margin with the FLT_MAX clamp; nullopt when amax is 0 or not
// finite (the caller keeps its previous scale).
std::optional<float> scale_from_amax(float amax, float fp8_max, int margin);

class TensorScaler {
 public:
  TensorScaler(const RecipeConfig& cfg, Format fmt);
  float scale() const { return scale_; }
  float scale_inv() const { return 1.0f / scale_; }
  // Feed this step's amax; afterwards scale() is the scale for the next step.
  void update(float amax);
  const std::deque<float>& history() const { return history_; }
  // The amax the last update chose (after history reduction).
  float reduced_amax() const { return reduced_; }

 private:
  RecipeConfig cfg_;
  float fp8_max_;
  float scale_ = 1.0f;
  float reduced_ = 0.0f;
  std::deque<float> history_;  // newest first
};

std::string to_string(RecipeFormat f);
std::string to_string(AmaxAlgo a);
std::string to_string(Scaling s);

}  // namespace fp8scope::fp8
