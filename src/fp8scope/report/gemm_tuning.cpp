#include "fp8scope/report/gemm_tuning.hpp"

#include "fp8scope/report/tables.hpp"

#include <fmt/format.h>

#include <cmath>

namespace fp8scope::report {

json tuned_shapes(const core::Record& r) {
  if (!r.data.contains("gemm_tuning") || !r.data["gemm_tuning"].is_object()) return json::array();
  return r.data["gemm_tuning"].value("shapes", json::array());
}

void add_gemm_tuning_tables(const std::vector<core::Record>& records, const std::function<std::string(const json&)>& label_of,
                            json& section) {
  Table runs{
      "cuBLASLt algorithms timed per GEMM shape at the run's first step (gemm_algos): shapes timed, shapes where another of the "
      "heuristic's candidates than its first was faster, and the timed shapes' trial times summed (each shape once, however many "
      "GEMMs of a step it serves) with the heuristic's first algorithm and with the one kept; plans left to the heuristic: the "
      "weight gradients' plans, which accumulate into their output. What it does to the step: the same run with gemm_algos 1 "
      "beside it",
      {"run", "candidates", "shapes timed", "another won", "plans left to the heuristic", "ms heuristic's first (sum)", "ms kept (sum)",
       "speed-up"},
      {}};
  Table shapes{
      "GEMM shapes where another candidate than the heuristic's first was kept (trial times, ms; plans: the shape's GEMMs with their own "
      "bias or scale pointers, which took the same choice)",
      {"run", "first GEMM of the shape", "shape", "plans", "kept", std::string("kept algorithm (") + kAlgoIdentityFields + ")",
       "ms heuristic's first", "ms kept", "speed-up"},
      {}};
  for (const auto& r : records) {
    if (!r.data.contains("gemm_tuning") || !r.data["gemm_tuning"].is_object()) continue;
    const json& t = r.data["gemm_tuning"];
    const std::string label = label_of(r.params);
    double first = 0, kept = 0;
    int won = 0, timed = 0;
    for (const auto& s : tuned_shapes(r)) {
      const double a = number_or_nan(s, "ms_first"), b = number_or_nan(s, "ms_chosen");
      const int chosen = s.value("chosen", 0);
      ++timed;
      if (!std::isfinite(a) || !std::isfinite(b)) continue;  // the heuristic's first could not run: nothing to compare
      first += a, kept += b;
      if (chosen == 0) continue;
      ++won;
      shapes.rows.push_back({label, s.value("gemm", std::string("?")), s.value("shape", std::string("?")),
                             std::to_string(s.value("plans", 1)), fmt::format("#{} of {}", chosen, s.value("candidates", 0)),
                             algo_identity(s.value("algo", json())), fmt_num(a, 4), fmt_num(b, 4), fmt::format("{:.3f}x", a / b)});
    }
    runs.rows.push_back({label, std::to_string(t.value("algos", 1)), std::to_string(timed), std::to_string(won),
                         std::to_string(t.value("untuned_accumulating", 0)), fmt_num(first, 3), fmt_num(kept, 3),
                         kept > 0 ? fmt::format("{:.3f}x", first / kept) : "-"});
  }
  if (runs.rows.empty()) return;
  section["tables"].push_back(runs.to_json());
  if (!shapes.rows.empty()) section["tables"].push_back(shapes.to_json());
}

}  // namespace fp8scope::report
