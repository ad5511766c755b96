#include "fp8scope/report/gelu_epilogue.hpp"

#include "fp8scope/report/tables.hpp"

#include <fmt/format.h>

#include <cmath>

namespace fp8scope::report {

namespace {
// A run's params without gelu_cast: what its twin with the other setting shares.
json without_gelu_cast(json p) {
  p.erase("gelu_cast");
  return p;
}
double metric(const core::Record& r, const char* k) {
  return r.data.contains("metrics") && r.data["metrics"].is_object() ? number_or_nan(r.data["metrics"], k) : NAN;
}
double phase(const core::Record& r, const char* k) {
  return r.data.contains("time_split_ms") && r.data["time_split_ms"].is_object() ? number_or_nan(r.data["time_split_ms"], k) : NAN;
}
std::string ms_pair(double a, double b) {
  return std::isfinite(a) && std::isfinite(b) ? fmt::format("{:.2f} -> {:.2f}", a, b) : std::string("-");
}
}  // namespace

std::string gelu_ran(const core::Record& r) {
  if (r.params.value("gelu_cast", std::string("kernel")) != "gemm_epilogue") return "kernel/kernel";
  const json g = r.data.contains("gelu_epilogue") && r.data["gelu_epilogue"].is_object() ? r.data["gelu_epilogue"] : json::object();
  return std::string(g.value("forward", std::string()) == "GELU_AUX_BIAS" ? "epilogue" : "kernel") + "/" +
         (g.value("backward", std::string()) == "DGELU_BGRAD" ? "epilogue" : "kernel");
}

void add_gelu_epilogue_tables(const std::vector<core::Record>& records, const std::function<std::string(const json&)>& label_of,
                              json& section) {
  Table where{
      "The GELU in cuBLASLt's epilogues (gelu_cast gemm_epilogue): where it ran", {"run", "forward", "backward", "cuBLASLt's refusal"}, {}};
  Table against{
      "The GELU in cuBLASLt's epilogues against the GELU kernels (the run with gelu_cast kernel beside it in this file; "
      "ms, kernels -> epilogues)",
      {"run", "step", "speed-up", "gelu phase", "matmul phase"},
      {}};
  for (const auto& r : records) {
    if (!r.data.contains("gelu_epilogue") || !r.data["gelu_epilogue"].is_object()) continue;
    const json& g = r.data["gelu_epilogue"];
    std::string refused;
    for (const char* k : {"forward_refused", "backward_refused"})
      if (g.contains(k)) refused += std::string(refused.empty() ? "" : "; ") + (k[0] == 'f' ? "forward: " : "backward: ") + g.value(k, "");
    where.rows.push_back(
        {label_of(r.params), g.value("forward", std::string("-")), g.value("backward", std::string("-")), refused.empty() ? "-" : refused});
    if (r.outcome != core::Outcome::ok) continue;
    const json key = without_gelu_cast(r.params);
    for (const auto& k : records) {
      if (k.outcome != core::Outcome::ok || k.params.value("gelu_cast", std::string("kernel")) != "kernel" ||
          without_gelu_cast(k.params) != key)
        continue;
      const double a = metric(k, "ms_per_step"), b = metric(r, "ms_per_step");
      against.rows.push_back({label_of(key), ms_pair(a, b), std::isfinite(a / b) ? fmt::format("{:.3f}x", a / b) : std::string("-"),
                              ms_pair(phase(k, "gelu"), phase(r, "gelu")), ms_pair(phase(k, "matmul"), phase(r, "matmul"))});
      break;
    }
  }
  if (!where.rows.empty()) section["tables"].push_back(where.to_json());
  if (!against.rows.empty()) section["tables"].push_back(against.to_json());
}

}  // namespace fp8scope::report
