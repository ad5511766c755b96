#pragma once
// Element types and epilogues of a GEMM; a plain header so that kernels can share it.
#include <cstdint>

namespace fp8scope::gemm {

enum class DType : std::uint8_t { e4m3, e5m2, bf16, fp16, fp32 };
// dgelu, dgelu_bgrad: the backward's (D = product * GELU'(aux), the bias gradient summed over
// D's columns); the GEMM probe does not sweep them (its reference has no aux input).
enum class Epilogue : std::uint8_t { none, bias, gelu, gelu_aux, bias_gelu, bias_gelu_aux, dgelu, dgelu_bgrad };

// What an epilogue does: adds a bias (per row of D), applies GELU, writes GELU's input as aux,
// reads it (the GELU's gradient), writes the bias gradient.
constexpr bool adds_bias(Epilogue e) { return e == Epilogue::bias || e == Epilogue::bias_gelu || e == Epilogue::bias_gelu_aux; }
constexpr bool applies_gelu(Epilogue e) {
  return e == Epilogue::gelu || e == Epilogue::gelu_aux || e == Epilogue::bias_gelu || e == Epilogue::bias_gelu_aux;
}
constexpr bool writes_aux(Epilogue e) { return e == Epilogue::gelu_aux || e == Epilogue::bias_gelu_aux; }
constexpr bool reads_aux(Epilogue e) { return e == Epilogue::dgelu || e == Epilogue::dgelu_bgrad; }
constexpr bool writes_bias_grad(Epilogue e) { return e == Epilogue::dgelu_bgrad; }

}  // namespace fp8scope::gemm
