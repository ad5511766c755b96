#pragma once
// One function per kind of report section; each returns {title, text, tables, figures}.
#include "fp8scope/model/fp8_plan.hpp"
#include "fp8scope/report/report.hpp"
#include "fp8scope/report/tables.hpp"

#include <cmath>
#include <set>
#include <string>
#include <vector>

namespace fp8scope::report {

struct MeasuredRates;  // step_limits.hpp

json env_section(const std::vector<ReportInput>& inputs);
json gemm_section(const ReportInput& in, const ReportInput* peer);
// A GEMM sweep over scale modes (probe_gemm's a_scale / b_scale axes), and its tables: per
// mode pair the divisibility each dimension needs, speed and accuracy against per-tensor scaling.
bool is_scaling_sweep(const std::vector<core::Record>& records);
void add_scaling_tables(const std::vector<core::Record>& records, const std::string& sweep_name, json& section);
json vocab_section(const ReportInput& in);
// rates: what the report's GEMM and benchmark files measured, for the limit table (may be null).
json train_section(const ReportInput& in, const ReportInput* peer, const MeasuredRates* rates = nullptr);
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
// A GPU training record's LM head (the axes lm_head_chunk and logits), with the defaults of the
// records written before those axes existed: the whole batch's FP32 logits.
struct LmHeadSetup {
  int chunk = 0;
  bool bf16_logits = false;
  bool operator==(const LmHeadSetup&) const = default;
  std::string label() const { return std::to_string(chunk) + (bf16_logits ? "/bf16" : "/fp32"); }
};
LmHeadSetup lm_head_setup(const json& params);
// How the GPU model held its FP8 block weights (per-tensor scaling) when it made a training
// record (model::WeightCopies), told by the params it wrote: no gelu_input field (kept per layer
// beside their BF16 copies; the GELU input then in BF16); weight_cast optimizer under delayed
// scaling (every layer's codes kept, AdamW writing them); else (weight_cast forward, current
// scaling, or a record from before the axis) cast a layer at a time from the FP32 masters.
model::WeightCopies weight_copies_of(const json& params);
// Figure specs, written as data (plot_figures.py draws them; every number is in the spec).
// A section places a figure after the table whose numbers it shows with place_after().
json line_figure(const std::string& file, const std::string& title, const std::string& xlabel, const std::string& ylabel,
                 const json& series);
// groups x series ({label, values, low?, high?}); reference: a dashed line (e.g. 1.0 for ratios).
json bars_figure(const std::string& file, const std::string& title, const std::string& ylabel, const std::vector<std::string>& groups,
                 const json& series, double reference = NAN);
// Curves ({label, x, y, style?}) and, below, their gaps to a reference curve ({label, x, y}).
json curves_gap_figure(const std::string& file, const std::string& title, const std::string& xlabel, const std::string& ylabel,
                       const std::string& gap_label, const json& series, const json& gaps);
// rows x columns of cells {category, text} (null: empty), coloured by category ({name, colour}).
json grid_figure(const std::string& file, const std::string& title, const std::string& xlabel, const std::string& ylabel,
                 const std::vector<std::string>& rows, const std::vector<std::string>& columns, const json& cells, const json& categories);
// The categories of an outcome grid, in legend order, and the category of a record.
json outcome_categories();
std::string outcome_category(const core::Record& r);
// Marks a figure to follow table `table_index` of `section` and adds it.
void place_after(json& section, json figure, std::size_t table_index);

}  // namespace fp8scope::report
