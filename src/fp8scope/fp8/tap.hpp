#pragma once
// A tap: what one tensor looked like at one step (amax, the scale it was cast with, and its
// non-finite, saturated and underflow counts). The CPU emulation and the GPU model record
// the same struct, so probe_recipe reads either the same way.
#include <optional>
#include <string>
#include <vector>

namespace fp8scope::fp8 {

struct Tap {
  int step, layer;           // layer -1: outside the blocks (embedding, final LayerNorm, LM head, loss)
  std::string tensor, pass;  // pass: "forward" or "backward"
  double amax;               // of the finite values
  float scale;               // 0 for tensors that are not quantised
  long long nonfinite;       // quantised tensors: non-finite FP8 values (incl. overflow without saturation)
  long long saturated, underflow;
  long long elements;
  // Per-row and per-block scaling: the tensor's blocks and their smallest (non-zero) and median
  // amax (amax above is the largest): the spread one per-tensor scale would have to cover.
  long long blocks = 0;
  double block_amax_min = 0, block_amax_median = 0;
};

// The first tap (in execution order) of the first step with a non-finite value: where a NaN
// run went wrong.
inline std::optional<Tap> nan_onset(const std::vector<Tap>& taps) {
  for (const auto& t : taps)
    if (t.nonfinite > 0) return t;
  return std::nullopt;
}

}  // namespace fp8scope::fp8
