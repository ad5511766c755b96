#pragma once
// One probe_recipe point: train a model in emulated or real FP8 under a recipe, next to its
// high-precision twin (same seed and data, trained once per model/lr/seed/steps and reused),
// and record the NaN onset, the loss gap and the per-tensor amax/scale histories.
#include "fp8scope/core/config.hpp"
#include "fp8scope/core/record.hpp"

#include <vector>

namespace fp8scope::model {

std::vector<core::ParamSpec> recipe_axes();
std::vector<core::ParamSpec> recipe_settings();
std::string check_recipe_point(const core::json& point, const core::json& env);

// Builds the per-worker function (it keeps the twins it has trained).
std::function<core::Record(const core::json&, const std::string&)> make_recipe_point_fn(const core::json& settings);

}  // namespace fp8scope::model
