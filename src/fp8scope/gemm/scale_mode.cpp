#include "fp8scope/gemm/scale_mode.hpp"

#include "fp8scope/core/enum_names.hpp"

namespace fp8scope::gemm {
namespace {
constexpr std::pair<InputPattern, const char*> kPatterns[] = {
    {InputPattern::fp8_exact, "fp8_exact"}, {InputPattern::normal, "normal"}, {InputPattern::outliers, "outliers"}};
}  // namespace

std::string to_string(InputPattern p) { return core::name_of(kPatterns, p); }
std::optional<InputPattern> parse_input_pattern(const std::string& s) { return core::value_of(kPatterns, s); }

}  // namespace fp8scope::gemm
