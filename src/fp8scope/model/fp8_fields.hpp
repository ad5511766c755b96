#pragma once
// The FP8 fields of a sweep point (recipe, saturation, variant, which linears, fast
// accumulation, tap interval), shared by probe_train (precision fp8) and probe_recipe, and
// their translation into the Fp8ModelConfig that both the GPU model and the CPU emulation take.
#include "fp8scope/core/config.hpp"
#include "fp8scope/model/fp8_plan.hpp"

#include <vector>

namespace fp8scope::model {

std::vector<core::ParamSpec> fp8_axes();

// "" or one line naming the bad field.
std::string check_fp8_point(const core::json& p);
Fp8ModelConfig fp8_config_from(const core::json& p);
// Whether a point's (or a record's) fields ask for power-of-two per-row / per-block scales; a
// record made before the block_scales axis had FP32 scales.
bool pow2_block_scales(const core::json& p);

}  // namespace fp8scope::model
