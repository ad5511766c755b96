// Google Benchmark results (bench_gemm, bench_kernels, bench_step): one row per benchmark,
// the median of the repetitions when there are several, with its counters.
#include "fp8scope/report/sections.hpp"

#include <fmt/format.h>

#include <set>

namespace fp8scope::report {

json bench_section(const ReportInput& in) {
  json sec = {{"title", fmt::format("Benchmarks '{}'", in.path)},
              {"text", json::array()},
              {"tables", json::array()},
              {"figures", json::array()}};
  bool any_median = false;
  for (auto& r : in.file.records)
    any_median = any_median || r.data["benchmark"].value("aggregate_name", std::string()) == "median";
  std::set<std::string> counters;
  std::vector<const core::Record*> rows;
  for (auto& r : in.file.records) {
    const json& b = r.data["benchmark"];
    if (any_median && b.value("aggregate_name", std::string()) != "median") continue;
    rows.push_back(&r);
    for (auto it = b.begin(); it != b.end(); ++it)
      if (it.value().is_number() && !std::set<std::string>{"real_time", "cpu_time", "iterations", "repetitions", "repetition_index",
                                                          "threads", "family_index", "per_family_instance_index"}
                                          .count(it.key()))
        counters.insert(it.key());
  }
  Table t{any_median ? "Median of the repetitions" : "Results", {"benchmark", "time", "unit"}, {}};
  for (auto& c : counters) t.columns.push_back(c);
  t.columns.push_back("note");
  for (auto* r : rows) {
    const json& b = r->data["benchmark"];
    std::vector<std::string> row{b.value("run_name", r->key), fmt_num(b.value("real_time", NAN), 2), b.value("time_unit", std::string())};
    for (auto& c : counters) {
      const double v = b.value(c, NAN);
      row.push_back(std::abs(v) >= 100 ? fmt_num(v, 0) : fmt_num(v, 3));
    }
    row.push_back(r->outcome == core::Outcome::skipped ? r->reason : "");
    t.rows.push_back(row);
  }
  sec["tables"].push_back(t.to_json());
  return sec;
}

}  // namespace fp8scope::report
