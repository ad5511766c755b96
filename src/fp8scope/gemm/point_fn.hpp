#pragma once
// The per-point function of the GEMM-based probes: builds a GemmRunner in the measuring
// process and runs each point's spec through it. In host-only builds it reports that
// CUDA is missing (the probes never call it there: without a GPU every point is skipped).
#include "fp8scope/core/probe_main.hpp"
#include "fp8scope/gemm/spec.hpp"

#include <functional>

namespace fp8scope::gemm {

using SpecFromPoint = std::function<GemmSpec(const core::json& point)>;

std::function<core::Record(const core::json&, const std::string&)> make_gemm_point_fn(const core::ProbeContext& ctx, SpecFromPoint to_spec);

}  // namespace fp8scope::gemm
