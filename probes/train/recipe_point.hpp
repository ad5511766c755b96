#pragma once
// One probe_recipe point: train a model in FP8 under a recipe (the GPU model, or the
// FP8-emulating CPU reference), next to its high-precision twin (same seed and data, trained
// once per model/lr/seed/steps and reused), and record the NaN onset, the loss gap and the
// per-tensor amax/scale histories.
#include "fp8scope/core/config.hpp"
#include "fp8scope/core/probe_main.hpp"
#include "fp8scope/core/record.hpp"

#include <vector>

namespace fp8scope::train {

std::vector<core::ParamSpec> recipe_axes();
std::vector<core::ParamSpec> recipe_settings();
std::string check_recipe_point(const core::json& point, const core::json& settings, const core::json& env);

// Builds the per-worker function (it keeps the twins it has trained).
std::function<core::Record(const core::json&, const std::string&)> make_recipe_point_fn(const core::ProbeContext& ctx);

}  // namespace fp8scope::train
