#include "fp8scope/gemm/verdict.hpp"

#include <fmt/format.h>
#include <cmath>

namespace fp8scope::gemm {

std::string status_name(int status) {
  switch (status) {
    case 0: return "CUBLAS_STATUS_SUCCESS";
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return fmt::format("cuBLAS status {}", status);
  }
}

std::optional<core::Outcome> heuristic_verdict(int status, int returned) {
  if (status != kStatusSuccess) return core::Outcome::heuristic_unsupported;
  if (returned <= 0) return core::Outcome::no_algorithm;
  return std::nullopt;
}

std::optional<core::Outcome> run_verdict(int status) {
  if (status != kStatusSuccess) return core::Outcome::run_rejected;
  return std::nullopt;
}

core::Outcome accuracy_verdict(double rel_error, double tolerance, std::int64_t nonfinite) {
  if (nonfinite > 0) return core::Outcome::nonfinite;
  if (!std::isfinite(rel_error) || rel_error > tolerance) return core::Outcome::incorrect;
  return core::Outcome::ok;
}

}  // namespace fp8scope::gemm
