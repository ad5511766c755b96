#pragma once
// From cuBLASLt's answers to an outcome. Host-only and numeric (cublasStatus_t values) so it
// is tested without a GPU; the CUDA build checks the numbers against cublas_api.h.
#include "fp8scope/core/record.hpp"

#include <optional>
#include <string>

namespace fp8scope::gemm {

inline constexpr int kStatusSuccess = 0;
inline constexpr int kStatusInvalidValue = 7;
inline constexpr int kStatusNotSupported = 15;

std::string status_name(int status);  // "CUBLAS_STATUS_NOT_SUPPORTED" (or "status 42")

// The heuristic's verdict: nullopt = algorithms are available, go on.
//   status NOT_SUPPORTED (or any failure while describing the problem) -> heuristic_unsupported
//   status SUCCESS with zero algorithms                                 -> no_algorithm
std::optional<core::Outcome> heuristic_verdict(int status, int returned_algorithms);

// A matmul the heuristic offered that cublasLtMatmul refused -> run_rejected.
std::optional<core::Outcome> run_verdict(int status);

// The accuracy verdict of a run: nonfinite outputs, then the error against the tolerance.
core::Outcome accuracy_verdict(double rel_error, double tolerance, std::int64_t nonfinite_outputs);

}  // namespace fp8scope::gemm
