#pragma once
// Element types and epilogues of a GEMM; a plain header so that kernels can share it.
#include <cstdint>

namespace fp8scope::gemm {

enum class DType : std::uint8_t { e4m3, e5m2, bf16, fp16, fp32 };
enum class Epilogue : std::uint8_t { none, bias, gelu, gelu_aux, bias_gelu };

}  // namespace fp8scope::gemm
