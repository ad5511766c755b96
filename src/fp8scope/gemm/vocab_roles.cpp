#include "fp8scope/gemm/vocab_roles.hpp"

#include <fmt/format.h>

namespace fp8scope::gemm {

std::optional<HeadRole> parse_role(const std::string& s) {
  if (s == "fprop") return HeadRole::fprop;
  if (s == "dgrad") return HeadRole::dgrad;
  if (s == "wgrad") return HeadRole::wgrad;
  return std::nullopt;
}

std::string to_string(HeadRole r) {
  switch (r) {
    case HeadRole::fprop: return "fprop";
    case HeadRole::dgrad: return "dgrad";
    case HeadRole::wgrad: return "wgrad";
  }
  return "?";
}

GemmSpec lm_head_spec(HeadRole role, std::int64_t V, std::int64_t d, std::int64_t T, const std::string& format) {
  GemmSpec s;
  s.trans_a = true;
  s.trans_b = false;
  const bool bf16 = format == "bf16";
  const DType fwd = bf16 ? DType::bf16 : DType::e4m3;
  const DType grad = bf16 ? DType::bf16 : (format == "hybrid" ? DType::e5m2 : DType::e4m3);
  s.c = s.d = DType::bf16;
  // TransformerEngine on Hopper: fast accumulation for the forward GEMM, full for gradients.
  s.fast_accum = role == HeadRole::fprop;
  switch (role) {
    case HeadRole::fprop:
      s.m = V, s.n = T, s.k = d;
      s.a = fwd, s.b = fwd;
      break;
    case HeadRole::dgrad:
      s.m = d, s.n = T, s.k = V;
      s.a = fwd, s.b = grad;
      break;
    case HeadRole::wgrad:
      s.m = d, s.n = V, s.k = T;
      s.a = fwd, s.b = grad;
      break;
  }
  return s;
}

std::string vocab_dimensions(HeadRole role, const GemmSpec& s, std::int64_t V) {
  const auto bytes = [&](DType t) { return V * std::int64_t(size_of(t)); };
  switch (role) {
    case HeadRole::fprop: return fmt::format("m=V, ldd=V ({} B rows of {})", bytes(s.d), to_string(s.d));
    case HeadRole::dgrad:
      return fmt::format("k=V, lda=V ({} B of {}), ldb=V ({} B of {})", bytes(s.a), to_string(s.a), bytes(s.b), to_string(s.b));
    case HeadRole::wgrad: return "n=V (no leading dimension carries V)";
  }
  return {};
}

}  // namespace fp8scope::gemm
