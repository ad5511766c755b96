#pragma once
// The verdict of a vocab sweep, computed from its records (never written by hand): per
// format, which roles fail for which V and why, the smallest power-of-two divisor of V that
// makes every role available, and whether "V divisible by 32" is required, sufficient or
// neither on the GPU and cuBLASLt version that ran it.
#include "fp8scope/core/record.hpp"

#include <vector>

namespace fp8scope::gemm {

core::json summarize_vocab(const std::vector<core::Record>& records, const core::json& env);

}  // namespace fp8scope::gemm
