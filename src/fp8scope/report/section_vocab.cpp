// The probe_vocab section: the computed verdict, the V x (format, role) availability matrix,
// throughput per V with the FP8/BF16 ratio, and the availability matrix drawn as a grid.
#include "fp8scope/gemm/vocab_summary.hpp"
#include "fp8scope/report/sections.hpp"

#include <fmt/format.h>

#include <map>
#include <set>

namespace fp8scope::report {
using core::Outcome;

json vocab_section(const ReportInput& in) {
  const auto& recs = in.file.records;
  json sec = {{"title", fmt::format("Vocab sweep '{}'", in.file.meta.value("sweep", in.path))},
              {"text", json::array()},
              {"summary", json::array()},
              {"tables", json::array()},
              {"figures", json::array()}};
  const json summary = gemm::summarize_vocab(recs, in.file.env);
  const std::string sweep = in.file.meta.value("sweep", std::string("vocab"));
  for (const char* f : {"e4m3", "hybrid", "bf16"}) {
    if (!summary.contains(f)) continue;
    const json& s = summary[f];
    sec["text"].push_back("**Verdict** " + s["verdict"].get<std::string>());
    if (std::string(f) == "bf16" || !s.contains("consistent_divisors")) continue;
    // One line for the report's summary: where the FP8 LM head runs, and the seed claim.
    std::string where_ok;
    const auto& cd = s["consistent_divisors"];
    if (cd.size() == 1)
      where_ok = fmt::format("exactly when V % {} == 0", cd[0].get<long long>());
    else if (!cd.empty())
      where_ok = fmt::format("when V % p == 0 for p in {} (undecided: {})", cd.dump(), s["undecided_without"].dump());
    else
      where_ok = "for no power-of-two divisor of V exactly";
    sec["summary"].push_back(fmt::format("Vocab '{}' ({}): the FP8 LM head runs every role for {} of {} V, {}; \"divisible by 32\" {}.",
                                         sweep, f, s["all_roles_ok"].size(), s["tested"].get<int>(), where_ok,
                                         s["divisible_by_32"].value("verdict", std::string("?"))));
  }

  std::set<long long> vs;
  std::vector<std::string> combos;
  std::map<std::pair<long long, std::string>, const core::Record*> cell;
  for (auto& r : recs) {
    const long long v = r.params.value("vocab", 0LL);
    const std::string c = r.params.value("format", "?") + " " + r.params.value("role", "?");
    vs.insert(v);
    if (std::find(combos.begin(), combos.end(), c) == combos.end()) combos.push_back(c);
    cell[{v, c}] = &r;
  }
  std::sort(combos.begin(), combos.end());
  Table m{"Availability per vocab size (cell: outcome, TFLOP/s)", {"V", "V mod 16"}, {}};
  for (auto& c : combos) m.columns.push_back(c);
  for (long long v : vs) {
    std::vector<std::string> row{std::to_string(v), std::to_string(v % 16)};
    for (auto& c : combos) row.push_back(cell.count({v, c}) ? outcome_cell(*cell[{v, c}]) : "");
    m.rows.push_back(row);
  }
  sec["tables"].push_back(m.to_json());
  // The same matrix as a picture: V down, format and role across, colour = outcome, the
  // heuristic's TFLOP/s in the cells that ran.
  {
    std::vector<std::string> row_names, col_names(combos.begin(), combos.end());
    json cells = json::array();
    for (long long v : vs) {
      row_names.push_back(fmt::format("{} (mod 16 = {})", v, v % 16));
      json row = json::array();
      for (auto& c : combos) {
        auto it = cell.find({v, c});
        if (it == cell.end()) {
          row.push_back(nullptr);
          continue;
        }
        const core::Record& r = *it->second;
        const bool ran = r.outcome == Outcome::ok && r.data.contains("metrics");
        row.push_back({{"category", outcome_category(r)},
                       {"text", ran ? fmt::format("{:.0f}", r.data["metrics"].value("tflops", 0.0)) : std::string()}});
      }
      cells.push_back(row);
    }
    place_after(sec,
                grid_figure(sweep + "_availability", "LM-head GEMMs per vocab size V: outcome (colour) and TFLOP/s (in the cells that ran)",
                            "format and role", "V", row_names, col_names, cells, outcome_categories()),
                0);
  }

  Table why{"Why the failing points fail (first V of each role and outcome)",
            {"format", "role", "outcome", "V", "dimensions carrying V", "cuBLASLt says"},
            {}};
  std::set<std::string> seen;
  for (auto& r : recs) {
    if (r.outcome == Outcome::ok || r.outcome == Outcome::skipped) continue;
    const std::string k = r.params.value("format", "") + r.params.value("role", "") + std::string(core::to_string(r.outcome));
    if (!seen.insert(k).second) continue;
    why.rows.push_back({r.params.value("format", ""), r.params.value("role", ""), std::string(core::to_string(r.outcome)),
                        std::to_string(r.params.value("vocab", 0LL)), r.data.value("vocab_dimensions", ""), r.reason});
  }
  if (!why.rows.empty()) sec["tables"].push_back(why.to_json());

  // FP8 vs BF16 per role, averaged over the V where both ran.
  Table sp{"FP8 vs BF16 per role (same V, same run; geometric mean over the V where both ran)",
           {"role", "format", "V where both ran", "FP8 TFLOP/s (geomean)", "BF16 TFLOP/s (geomean)", "speedup"},
           {}};
  for (const char* role : {"fprop", "dgrad", "wgrad"})
    for (const char* fmt8 : {"e4m3", "hybrid"}) {
      std::vector<double> f8, b16;
      for (long long v : vs) {
        auto a = cell.find({v, std::string(fmt8) + " " + role}), b = cell.find({v, std::string("bf16 ") + role});
        if (a == cell.end() || b == cell.end() || a->second->outcome != Outcome::ok || b->second->outcome != Outcome::ok) continue;
        f8.push_back(a->second->data["metrics"]["tflops"]);
        b16.push_back(b->second->data["metrics"]["tflops"]);
      }
      if (!f8.empty())
        sp.rows.push_back({role, fmt8, std::to_string(f8.size()), fmt_num(geomean(f8)), fmt_num(geomean(b16)),
                           fmt_num(geomean(f8) / geomean(b16), 2) + "x"});
    }
  if (!sp.rows.empty()) sec["tables"].push_back(sp.to_json());

  // Available is not the same as fast: TFLOP/s by the largest power of two dividing V.
  const std::vector<long long> pows = {1, 2, 4, 8, 16};
  Table dv{
      "Speed by divisibility of V (geometric-mean TFLOP/s of the points that ran; column = largest power of two "
      "dividing V, 16 = 16 or more)",
      {"format", "role"},
      {}};
  for (long long p : pows) dv.columns.push_back(p == 16 ? "16+" : std::to_string(p));
  for (auto& c : combos) {
    std::vector<std::string> row{c.substr(0, c.find(' ')), c.substr(c.find(' ') + 1)};
    bool any = false;
    for (long long p : pows) {
      std::vector<double> t;
      for (long long v : vs) {
        long long q = 1;
        while (q < 16 && v % (2 * q) == 0) q *= 2;
        auto it = cell.find({v, c});
        if (q == p && it != cell.end() && it->second->outcome == Outcome::ok && it->second->data.contains("metrics"))
          t.push_back(it->second->data["metrics"]["tflops"]);
      }
      row.push_back(t.empty() ? "-" : fmt_num(geomean(t), 0));
      any = any || !t.empty();
    }
    if (any) dv.rows.push_back(row);
  }
  if (!dv.rows.empty()) sec["tables"].push_back(dv.to_json());
  return sec;
}

}  // namespace fp8scope::report
