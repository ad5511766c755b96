#include "fp8scope/report/tables.hpp"

#include <fmt/format.h>

#include <cmath>

namespace fp8scope::report {

std::string fmt_num(double v, int digits) { return std::isfinite(v) ? fmt::format("{:.{}f}", v, digits) : "-"; }
std::string fmt_sci(double v) { return std::isfinite(v) ? fmt::format("{:.2g}", v) : "-"; }
std::string fmt_pct(double f) { return std::isfinite(f) ? fmt::format("{:.1f}%", 100 * f) : "-"; }
double number_or_nan(const json& j, const char* k) { return j.is_object() && j.contains(k) && j[k].is_number() ? j[k].get<double>() : NAN; }

std::string algo_identity(const json& a) {
  if (!a.is_object() || !a.contains("id")) return {};
  std::string s;
  for (const char* k : {"id", "tile", "stages", "splitk", "cluster", "swizzle", "custom"}) {
    if (!s.empty()) s += ':';
    s += a.contains(k) ? a[k].dump() : std::string("?");
  }
  return s;
}

double geomean(const std::vector<double>& v) {
  if (v.empty()) return NAN;
  double s = 0;
  for (double x : v) s += std::log(x);
  return std::exp(s / double(v.size()));
}

json Table::to_json() const { return {{"title", title}, {"columns", columns}, {"rows", rows}}; }

}  // namespace fp8scope::report
