#include "fp8scope/gemm/spec.hpp"

#include "fp8scope/core/enum_names.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace fp8scope::gemm {
namespace {
constexpr std::pair<DType, const char*> kTypes[] = {
    {DType::e4m3, "e4m3"}, {DType::e5m2, "e5m2"}, {DType::bf16, "bf16"}, {DType::fp16, "fp16"}, {DType::fp32, "fp32"}};
constexpr std::pair<Epilogue, const char*> kEpilogues[] = {{Epilogue::none, "none"},           {Epilogue::bias, "bias"},
                                                           {Epilogue::gelu, "gelu"},           {Epilogue::gelu_aux, "gelu_aux"},
                                                           {Epilogue::bias_gelu, "bias_gelu"}, {Epilogue::bias_gelu_aux, "bias_gelu_aux"},
                                                           {Epilogue::dgelu, "dgelu"},         {Epilogue::dgelu_bgrad, "dgelu_bgrad"}};
}  // namespace

std::string to_string(DType t) { return core::name_of(kTypes, t); }
std::string to_string(Epilogue e) { return core::name_of(kEpilogues, e); }
std::optional<DType> parse_dtype(const std::string& s) { return core::value_of(kTypes, s); }
std::optional<Epilogue> parse_epilogue(const std::string& s) { return core::value_of(kEpilogues, s); }
std::size_t size_of(DType t) {
  switch (t) {
    case DType::e4m3:
    case DType::e5m2: return 1;
    case DType::bf16:
    case DType::fp16: return 2;
    case DType::fp32: return 4;
  }
  return 0;
}
bool is_fp8(DType t) { return t == DType::e4m3 || t == DType::e5m2; }

DType epilogue_type(const GemmSpec& s) {
  if (is_fp8(s.a) || is_fp8(s.b)) return s.c == DType::fp16 ? DType::fp16 : DType::bf16;
  return s.d;
}
DType aux_type(const GemmSpec& s) {
  if (s.aux) return *s.aux;
  return s.d == DType::e4m3 ? DType::e4m3 : epilogue_type(s);
}

bool parse_layout(const std::string& s, bool& ta, bool& tb) {
  if (s.size() != 2) return false;
  for (char c : s)
    if (c != 'T' && c != 'N') return false;
  ta = s[0] == 'T';
  tb = s[1] == 'T';
  return true;
}

double GemmSpec::min_bytes() const {
  return double(batch) * (double(m) * double(k) * double(size_of(a)) + double(k) * double(n) * double(size_of(b)) +
                          double(m) * double(n) * double(size_of(d)));
}

double GemmSpec::device_bytes(std::int64_t ref_cols) const {
  const double nb = double(batch);
  const double a_bytes = nb * double(lda_eff()) * double(a_cols()) * double(size_of(a));
  const double b_bytes = nb * double(ldb_eff()) * double(b_cols()) * double(size_of(b));
  const double d_bytes = nb * double(ldd_eff()) * double(n) * double(size_of(d));
  const double c_bytes = c == d ? 0.0 : nb * double(m) * double(n) * double(size_of(c));
  const double ref = nb * double(m) * double(std::min<std::int64_t>(n, ref_cols)) * 4.0;
  const double aux = writes_aux(epilogue) ? nb * double(m) * double(n) * double(size_of(aux_type(*this))) : 0.0;
  // FP32 sources of both operands, their block scales and a second reference (the product of
  // the unquantised sources).
  double sources = 0;
  if (from_sources()) {
    const ScaleGeometry ga = a_geometry(), gb = b_geometry();
    sources = (a_bytes / double(size_of(a)) + b_bytes / double(size_of(b))) * 4.0 + ref +
              8.0 * double(ga.blocks() + ga.lt_elements() + gb.blocks() + gb.lt_elements());
  }
  return a_bytes + b_bytes + d_bytes + c_bytes + ref + aux + sources + double(workspace_bytes);
}

std::string structural_error(const GemmSpec& s) {
  if (s.m <= 0 || s.n <= 0 || s.k <= 0 || s.batch <= 0) return "m, n, k and batch must be positive";
  if (s.lda && s.lda < s.a_rows()) return fmt::format("lda={} is below A's {} rows", s.lda, s.a_rows());
  if (s.ldb && s.ldb < s.b_rows()) return fmt::format("ldb={} is below B's {} rows", s.ldb, s.b_rows());
  if (s.ldd && s.ldd < s.m) return fmt::format("ldd={} is below D's {} rows", s.ldd, s.m);
  if (s.a_offset < 0 || s.b_offset < 0 || s.d_offset < 0 || s.scale_offset < 0) return "offsets must be >= 0";
  if (s.a_scale != ScaleMode::tensor && !is_fp8(s.a))
    return fmt::format("a_scale={} scales an FP8 A; A is {}", to_string(s.a_scale), to_string(s.a));
  if (s.b_scale != ScaleMode::tensor && !is_fp8(s.b))
    return fmt::format("b_scale={} scales an FP8 B; B is {}", to_string(s.b_scale), to_string(s.b));
  if ((s.a_scale != ScaleMode::tensor || s.b_scale != ScaleMode::tensor) && s.batch != 1)
    return "scale modes other than tensor are probed with batch 1";
  return {};
}

double tolerance(const GemmSpec& s) {
  double u = 0;
  switch (s.d) {
    case DType::fp32: u = std::ldexp(1.0, -24); break;
    case DType::fp16: u = std::ldexp(1.0, -11); break;
    case DType::bf16: u = std::ldexp(1.0, -8); break;
    case DType::e4m3: u = std::ldexp(1.0, -4); break;
    case DType::e5m2: u = std::ldexp(1.0, -3); break;
  }
  return std::max(1e-3, 4.0 * u / std::sqrt(3.0));
}

nlohmann::json to_json(const GemmSpec& s) {
  return {{"m", s.m},
          {"n", s.n},
          {"k", s.k},
          {"batch", s.batch},
          {"layout", s.layout()},
          {"a", to_string(s.a)},
          {"b", to_string(s.b)},
          {"c", to_string(s.c)},
          {"d", to_string(s.d)},
          {"epilogue", to_string(s.epilogue)},
          {"fast_accum", s.fast_accum},
          {"lda", s.lda_eff()},
          {"ldb", s.ldb_eff()},
          {"ldd", s.ldd_eff()},
          {"a_offset", s.a_offset},
          {"b_offset", s.b_offset},
          {"d_offset", s.d_offset},
          {"scale_offset", s.scale_offset},
          {"a_scale", to_string(s.a_scale)},
          {"b_scale", to_string(s.b_scale)},
          {"inputs", to_string(s.inputs)},
          {"workspace_bytes", s.workspace_bytes}};
}

}  // namespace fp8scope::gemm
