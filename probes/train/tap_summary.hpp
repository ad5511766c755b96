#pragma once
// From the taps of a run (CPU emulation or GPU model) to the record: per-tensor amax/scale/
// saturation histories (downsampled) and rates, and the NaN onset with the amax and scale of
// the tensor in the steps before it.
#include "fp8scope/core/record.hpp"
#include "fp8scope/fp8/tap.hpp"

#include <vector>

namespace fp8scope::train {

// {"<layer>.<tensor>": {amax: [...], scale: [...], saturated: [...], saturated_rate, underflow_rate}}
// for the quantised tensors; `points`: most values kept per history.
core::json summarize_taps(const std::vector<fp8::Tap>& taps, int points);

// Sets nonfinite + data.nan_onset + reason when a tap saw a non-finite value; returns
// whether it did. keep: steps of history before the onset.
bool record_nan_onset(core::Record& r, const std::vector<fp8::Tap>& taps, int keep);

}  // namespace fp8scope::train
