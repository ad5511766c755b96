#pragma once
// Small helpers shared by the report sections: number formatting and table building.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace fp8scope::report {

using json = nlohmann::json;

std::string fmt_num(double v, int digits = 1);         // fixed digits, "-" for NaN
std::string fmt_sci(double v);                         // 2 significant digits, scientific
std::string fmt_pct(double fraction);                  // 0.034 -> "3.4%"
double number_or_nan(const json& j, const char* key);  // j[key] when it is a number, else NaN
double geomean(const std::vector<double>& v);
// A cuBLASLt algorithm's identity as gemm::algo_json records it, the fields of
// kAlgoIdentityFields joined by ':' ("" for anything without an id).
inline constexpr const char* kAlgoIdentityFields = "id:tile:stages:splitk:cluster:swizzle:custom";
std::string algo_identity(const json& algo);

struct Table {
  std::string title;
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
  json to_json() const;
};

}  // namespace fp8scope::report
