#include "fp8scope/report/sections.hpp"

#include <fmt/format.h>

#include <cmath>
#include <map>

namespace fp8scope::report {
using core::Outcome;

std::string outcome_cell(const core::Record& r) {
  switch (r.outcome) {
    case Outcome::ok: {
      const json& m = r.data.contains("metrics") ? r.data["metrics"] : json::object();
      return m.contains("tflops") ? fmt::format("ok {:.0f}", m["tflops"].get<double>()) : "ok";
    }
    case Outcome::heuristic_unsupported: return "✗ heuristic";
    case Outcome::no_algorithm: return "✗ no algo";
    case Outcome::run_rejected: return "✗ run";
    case Outcome::incorrect: return "✗ wrong";
    case Outcome::nonfinite: return "✗ NaN";
    case Outcome::oom: return "oom";
    case Outcome::crashed: return "crash";
    case Outcome::skipped: return "skip";
  }
  return "?";
}

std::string outcome_tally(const std::vector<core::Record>& records) {
  std::map<std::string, int> t;
  for (auto& r : records) ++t[std::string(core::to_string(r.outcome))];
  std::string s;
  for (auto& [k, v] : t) s += fmt::format("{}{}={}", s.empty() ? "" : " ", k, v);
  return s;
}

json line_figure(const std::string& file, const std::string& title, const std::string& xlabel, const std::string& ylabel,
                 const json& series) {
  return {{"kind", "line"}, {"file", file}, {"title", title}, {"xlabel", xlabel}, {"ylabel", ylabel}, {"series", series}};
}

json bars_figure(const std::string& file, const std::string& title, const std::string& ylabel, const std::vector<std::string>& groups,
                 const json& series, double reference) {
  json f = {{"kind", "bars"}, {"file", file}, {"title", title}, {"ylabel", ylabel}, {"groups", groups}, {"series", series}};
  if (std::isfinite(reference)) f["reference"] = reference;
  return f;
}

json curves_gap_figure(const std::string& file, const std::string& title, const std::string& xlabel, const std::string& ylabel,
                       const std::string& gap_label, const json& series, const json& gaps) {
  return {{"kind", "curves_gap"}, {"file", file},           {"title", title},   {"xlabel", xlabel},
          {"ylabel", ylabel},     {"gap_label", gap_label}, {"series", series}, {"gaps", gaps}};
}

json grid_figure(const std::string& file, const std::string& title, const std::string& xlabel, const std::string& ylabel,
                 const std::vector<std::string>& rows, const std::vector<std::string>& columns, const json& cells, const json& categories) {
  return {{"kind", "grid"}, {"file", file},       {"title", title}, {"xlabel", xlabel},        {"ylabel", ylabel},
          {"rows", rows},   {"columns", columns}, {"cells", cells}, {"categories", categories}};
}

json outcome_categories() {
  return json::array({{{"name", "ok"}, {"colour", "#66bb6a"}},
                      {{"name", "refused by the heuristic"}, {"colour", "#ef5350"}},
                      {{"name", "no algorithm"}, {"colour", "#ffa726"}},
                      {{"name", "refused at run time"}, {"colour", "#ab47bc"}},
                      {{"name", "wrong result"}, {"colour", "#8d6e63"}},
                      {{"name", "NaN/Inf"}, {"colour", "#424242"}},
                      {{"name", "out of memory"}, {"colour", "#42a5f5"}},
                      {{"name", "crashed"}, {"colour", "#000000"}},
                      {{"name", "skipped"}, {"colour", "#e0e0e0"}}});
}

std::string outcome_category(const core::Record& r) {
  switch (r.outcome) {
    case Outcome::ok: return "ok";
    case Outcome::heuristic_unsupported: return "refused by the heuristic";
    case Outcome::no_algorithm: return "no algorithm";
    case Outcome::run_rejected: return "refused at run time";
    case Outcome::incorrect: return "wrong result";
    case Outcome::nonfinite: return "NaN/Inf";
    case Outcome::oom: return "out of memory";
    case Outcome::crashed: return "crashed";
    case Outcome::skipped: return "skipped";
  }
  return "skipped";
}

void place_after(json& section, json figure, std::size_t table_index) {
  figure["after_table"] = table_index;
  section["figures"].push_back(std::move(figure));
}

json env_section(const std::vector<ReportInput>& inputs) {
  Table t{"Where each result was measured",
          {"file", "sweep", "probe", "GPU", "driver", "cuBLASLt", "git", "measured (UTC)", "points", "outcomes"},
          {}};
  for (auto& in : inputs) {
    const json& e = in.file.env;
    const json g = e.contains("gpu") && e["gpu"].is_object() ? e["gpu"] : json::object();
    std::string gpu =
        g.empty() ? "none (" + e.value("gpu_reason", std::string("?")) + ")"
                  : fmt::format("{} ({} SMs, max {} MHz)", g.value("name", "?"), g.value("sm_count", 0), g.value("max_sm_clock_mhz", 0));
    std::string sha = e.value("git_sha", std::string(in.file.meta.value("git_sha", "")));
    if (sha.size() > 10) sha = sha.substr(0, 10);
    const json dirty = e.value("git_dirty", json());
    if (dirty.is_boolean() && dirty.get<bool>()) sha += " (dirty)";
    const json cub = g.value("cublaslt_version", json());
    t.rows.push_back({in.path, in.file.meta.value("sweep", std::string()), in.file.meta.value("probe", std::string()), gpu,
                      g.value("driver", std::string("-")), cub.is_null() ? "-" : cub.dump(), sha, e.value("time_utc", std::string("-")),
                      std::to_string(in.file.records.size()) + (in.file.complete ? "" : " (unfinished)"), outcome_tally(in.file.records)});
  }
  return {{"title", "Environment"}, {"text", json::array()}, {"tables", json::array({t.to_json()})}, {"figures", json::array()}};
}

json generic_section(const ReportInput& in) {
  Table t{"Records", {"point", "outcome", "detail"}, {}};
  for (auto& r : in.file.records)
    t.rows.push_back(
        {r.key, std::string(core::to_string(r.outcome)), r.data.contains("headline") ? r.data["headline"].get<std::string>() : r.reason});
  return {{"title", fmt::format("{} ({})", in.file.meta.value("sweep", in.path), in.file.meta.value("probe", "?"))},
          {"text", json::array()},
          {"tables", json::array({t.to_json()})},
          {"figures", json::array()}};
}

std::vector<std::string> varying_params(const std::vector<core::Record>& records, const std::set<std::string>& shown) {
  std::vector<std::string> keys;
  if (records.empty()) return keys;
  for (auto it = records.front().params.begin(); it != records.front().params.end(); ++it) {
    if (shown.count(it.key())) continue;
    for (auto& r : records)
      if (!r.params.contains(it.key()) || r.params[it.key()] != it.value()) {
        keys.push_back(it.key());
        break;
      }
  }
  return keys;
}

LmHeadSetup lm_head_setup(const json& params) {
  return {params.value("lm_head_chunk", 0), params.value("logits", std::string("fp32")) == "bf16"};
}

model::WeightCopies weight_copies_of(const json& params) {
  if (!params.contains("gelu_input")) return model::WeightCopies::kept_per_layer;
  // (records without weight_cast ran before the axis: cast a layer at a time)
  if (params.value("weight_cast", std::string("forward")) == "optimizer" && params.value("scaling", std::string("delayed")) == "delayed")
    return model::WeightCopies::codes_kept;
  return model::WeightCopies::cast_per_layer;
}

std::string params_suffix(const json& params, const std::vector<std::string>& keys) {
  std::string s;
  for (auto& k : keys) {
    if (!params.contains(k)) continue;
    const json& v = params[k];
    s += " " + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  return s;
}

}  // namespace fp8scope::report
