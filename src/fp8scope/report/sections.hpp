#pragma once
// One function per kind of report section; each returns {title, text, tables, figures}.
#include "fp8scope/report/report.hpp"
#include "fp8scope/report/tables.hpp"

#include <set>
#include <string>
#include <vector>

namespace fp8scope::report {

json env_section(const std::vector<ReportInput>& inputs);
json gemm_section(const ReportInput& in, const ReportInput* peer);
json vocab_section(const ReportInput& in);
json train_section(const ReportInput& in, const ReportInput* peer);
json bench_section(const ReportInput& in);
json recipe_section(const ReportInput& in);
// null when the inputs hold nothing a seed claim can be judged from.
json seed_claims_section(const std::vector<ReportInput>& inputs);
json generic_section(const ReportInput& in);

// Short cell text for an outcome ("ok", "heuristic_unsupported" -> "✗ heuristic", ...).
std::string outcome_cell(const core::Record& r);
// "ok=30 run_rejected=2"
std::string outcome_tally(const std::vector<core::Record>& records);
// Row labels must tell rows apart: the parameters whose values differ between the records
// (other than those the label already shows), and " k=v ..." of them for one record.
std::vector<std::string> varying_params(const std::vector<core::Record>& records, const std::set<std::string>& shown);
std::string params_suffix(const json& params, const std::vector<std::string>& keys);
// A figure spec: a line chart, written as data; figures.cpp draws it.
json line_figure(const std::string& file, const std::string& title, const std::string& xlabel, const std::string& ylabel,
                 const json& series);

}  // namespace fp8scope::report
