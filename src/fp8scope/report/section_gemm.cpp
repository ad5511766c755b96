// The probe_gemm section: availability (as a matrix when the sweep crosses shapes with
// configurations), throughput with FP8/BF16 ratios, and ours vs a peer file.
#include "fp8scope/report/sections.hpp"

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <set>

namespace fp8scope::report {
using core::Outcome;
using core::Record;

namespace {

bool is_fp8(const std::string& t) { return t == "e4m3" || t == "e5m2"; }

std::string shape_label(const json& p) {
  std::string s = fmt::format("{}x{}x{}", p.value("m", 0LL), p.value("n", 0LL), p.value("k", 0LL));
  if (p.value("batch", 1LL) > 1) s += fmt::format(" b{}", p.value("batch", 1LL));
  return s;
}

// with_inputs: name the scale-mode points' data pattern (their refusals do not depend on it).
std::string config_label(const json& p, bool with_inputs = true) {
  std::string s = fmt::format("{} {}x{}->{}", p.value("layout", "?"), p.value("a", "?"), p.value("b", "?"), p.value("d", "?"));
  if (p.value("epilogue", "none") != "none") s += " +" + p.value("epilogue", std::string());
  if (is_fp8(p.value("a", "")) && !p.value("fast_accum", true)) s += " noFA";
  if (p.value("a_scale", std::string("tensor")) != "tensor" || p.value("b_scale", std::string("tensor")) != "tensor")
    s += fmt::format(" scales {}x{}", p.value("a_scale", std::string("tensor")), p.value("b_scale", std::string("tensor")));
  if (const std::string in = p.value("inputs", std::string("fp8_exact")); with_inputs && in != "fp8_exact") s += fmt::format(" {}", in);
  for (const char* o : {"a_offset", "b_offset", "d_offset", "scale_offset"})
    if (p.value(o, 0LL)) s += fmt::format(" {}+{}", std::string(o).substr(0, std::string(o).find('_')), p.value(o, 0LL));
  return s;
}

std::string row_label(const json& p) {
  const std::string role = p.value("role", "");
  return role.empty() ? shape_label(p) : role;
}

// Identity of a GEMM apart from its element types: joins an FP8 point to its BF16 twin.
std::string twin_key(const json& p) {
  return fmt::format("{}|{}|{}|{}|{}|{}", p.value("role", ""), shape_label(p), p.value("layout", ""), p.value("epilogue", ""),
                     p.value("a_offset", 0LL) + p.value("b_offset", 0LL), p.value("d_offset", 0LL));
}

double metric(const Record& r, const char* name) {
  if (!r.data.contains("metrics") || !r.data["metrics"].contains(name)) return NAN;
  return r.data["metrics"][name].get<double>();
}

}  // namespace

json gemm_section(const ReportInput& in, const ReportInput* peer) {
  const auto& recs = in.file.records;
  json sec = {{"title", fmt::format("GEMM sweep '{}'", in.file.meta.value("sweep", in.path))},
              {"text", json::array()},
              {"summary", json::array()},
              {"tables", json::array()},
              {"figures", json::array()}};
  if (!in.file.meta.value("description", std::string()).empty()) sec["text"].push_back(in.file.meta["description"]);

  // --- availability -------------------------------------------------------------------------
  std::vector<std::string> rows, cols;
  std::map<std::pair<std::string, std::string>, const Record*> cell;
  for (auto& r : recs) {
    const std::string rl = row_label(r.params), cl = config_label(r.params);
    if (std::find(rows.begin(), rows.end(), rl) == rows.end()) rows.push_back(rl);
    if (std::find(cols.begin(), cols.end(), cl) == cols.end()) cols.push_back(cl);
    cell[{rl, cl}] = &r;
  }
  const bool scaling = is_scaling_sweep(recs);  // has its own availability table, by mode pair
  if (!scaling && rows.size() >= 2 && cols.size() >= 2 && rows.size() * cols.size() <= 4 * recs.size()) {
    Table m{"Availability (cell: outcome, TFLOP/s of the heuristic's first algorithm)", {"GEMM"}, {}};
    for (auto& c : cols) m.columns.push_back(c);
    for (auto& rl : rows) {
      std::vector<std::string> row{rl};
      for (auto& c : cols) row.push_back(cell.count({rl, c}) ? outcome_cell(*cell[{rl, c}]) : "");
      m.rows.push_back(row);
    }
    sec["tables"].push_back(m.to_json());
  }
  Table fails{"Points that did not run (or ran wrong), with cuBLASLt's reason", {"GEMM", "configuration", "outcome", "reason"}, {}};
  if (scaling) {
    // A scale-mode sweep refuses whole configurations: one row per configuration and reason.
    fails.columns = {"configuration", "outcome", "reason", "points"};
    std::vector<std::string> order;
    std::map<std::string, std::pair<std::vector<std::string>, int>> groups;
    for (auto& r : recs)
      if (r.outcome != Outcome::ok && r.outcome != Outcome::skipped) {
        const std::string cfg = config_label(r.params, false);
        const std::string why = r.reason.size() > 220 ? r.reason.substr(0, 217) + "..." : r.reason;
        const std::string key = cfg + "|" + why;
        if (!groups.count(key)) order.push_back(key), groups[key].first = {cfg, std::string(core::to_string(r.outcome)), why};
        ++groups[key].second;
      }
    for (auto& k : order) {
      auto row = groups[k].first;
      row.push_back(std::to_string(groups[k].second));
      fails.rows.push_back(row);
    }
  }
  for (auto& r : recs)
    if (!scaling && r.outcome != Outcome::ok) {
      std::string why = r.reason.size() > 220 ? r.reason.substr(0, 217) + "..." : r.reason;
      fails.rows.push_back({row_label(r.params) + (r.params.value("role", "").empty() ? "" : " " + shape_label(r.params)),
                            config_label(r.params), std::string(core::to_string(r.outcome)), why});
    }
  if (!fails.rows.empty()) sec["tables"].push_back(fails.to_json());
  if (scaling) add_scaling_tables(recs, in.file.meta.value("sweep", std::string("gemm")), sec);

  // --- throughput -----------------------------------------------------------------------------
  std::map<std::string, const Record*> bf16_twin;
  for (auto& r : recs)
    if (r.outcome == Outcome::ok && r.params.value("a", "") == "bf16") bf16_twin[twin_key(r.params)] = &r;
  std::map<std::string, const Record*> peer_rec;
  if (peer)
    for (auto& r : peer->file.records) peer_rec[r.key] = &r;
  Table t{"Throughput (median of L2-flushed samples; `autotuned` = fastest of the algorithms the heuristic returned)",
          {"GEMM", "configuration", "TFLOP/s", "autotuned", "ms", "IQR", "SM MHz", "rel err"},
          {}};
  const bool have_twins = !bf16_twin.empty();
  if (have_twins) t.columns.push_back("FP8/BF16");
  if (peer) {
    t.columns.push_back("peer TFLOP/s");
    t.columns.push_back("ours/peer");
    t.columns.push_back("autotuned/peer");
  }
  std::vector<double> speedups, peer_fp8, peer_fp8_best, peer_bf16, peer_bf16_best;
  for (auto& r : recs) {
    if (r.outcome != Outcome::ok || !r.data.contains("metrics")) continue;
    const json& tm = r.data["timing"];
    std::vector<std::string> row{row_label(r.params),
                                 config_label(r.params),
                                 fmt_num(metric(r, "tflops")),
                                 fmt_num(metric(r, "best_tflops")),
                                 fmt_num(metric(r, "ms"), 3),
                                 fmt_pct(tm.value("rel_iqr", NAN)),
                                 fmt_num(tm.value("mean_sm_clock_mhz", NAN), 0),
                                 fmt_sci(r.data["accuracy"].value("rel_error", NAN))};
    const bool fp8 = is_fp8(r.params.value("a", ""));
    if (have_twins) {
      auto it = bf16_twin.find(twin_key(r.params));
      if (fp8 && it != bf16_twin.end()) {
        const double s = metric(*it->second, "ms") / metric(r, "ms");
        speedups.push_back(s);
        row.push_back(fmt_num(s, 2) + "x");
      } else {
        row.push_back("");
      }
    }
    if (peer) {
      auto it = peer_rec.find(r.key);
      if (it != peer_rec.end() && it->second->outcome == Outcome::ok) {
        const double pt = metric(*it->second, "tflops");
        const double ours = metric(r, "tflops"), best = metric(r, "best_tflops");
        row.push_back(fmt_num(pt));
        row.push_back(fmt_num(ours / pt, 2));
        row.push_back(fmt_num(best / pt, 2));
        (fp8 ? peer_fp8 : peer_bf16).push_back(ours / pt);
        (fp8 ? peer_fp8_best : peer_bf16_best).push_back(best / pt);
      } else {
        row.insert(row.end(), {it == peer_rec.end() ? "-" : std::string(core::to_string(it->second->outcome)), "", ""});
      }
    }
    t.rows.push_back(row);
  }
  if (!t.rows.empty()) sec["tables"].push_back(t.to_json());
  const std::string sweep = in.file.meta.value("sweep", std::string("gemm"));
  // TFLOP/s per GEMM and configuration (and the peer's), with the spread of the samples'
  // quartiles, after the throughput table: when the sweep pairs FP8 GEMMs with BF16 twins.
  if (have_twins && !t.rows.empty()) {
    std::vector<std::string> groups, configs;
    std::map<std::pair<std::string, std::string>, const Record*> ran;
    for (auto& r : recs) {
      if (r.outcome != Outcome::ok || !r.data.contains("metrics")) continue;
      const std::string g = row_label(r.params), c = config_label(r.params);
      if (std::find(groups.begin(), groups.end(), g) == groups.end()) groups.push_back(g);
      if (std::find(configs.begin(), configs.end(), c) == configs.end()) configs.push_back(c);
      ran[{g, c}] = &r;
    }
    if (groups.size() <= 40) {
      json series = json::array();
      auto add_series = [&](const std::string& label, auto value_of) {
        json sr = {{"label", label}, {"values", json::array()}, {"low", json::array()}, {"high", json::array()}};
        bool any = false;
        for (auto& g : groups) {
          const auto [v, lo, hi] = value_of(g);
          sr["values"].push_back(std::isfinite(v) ? json(v) : json(nullptr));
          sr["low"].push_back(std::isfinite(lo) ? json(lo) : json(nullptr));
          sr["high"].push_back(std::isfinite(hi) ? json(hi) : json(nullptr));
          any = any || std::isfinite(v);
        }
        if (any) series.push_back(sr);
      };
      // TFLOP/s at the median and at the samples' third and first quartile of time.
      using Spread = std::tuple<double, double, double>;
      const Spread none{NAN, NAN, NAN};
      auto spread = [](const Record& r) -> Spread {
        const double tf = metric(r, "tflops"), med = r.data["timing"].value("median", NAN);
        return std::make_tuple(tf, tf * med / r.data["timing"].value("q3", NAN), tf * med / r.data["timing"].value("q1", NAN));
      };
      for (auto& c : configs)
        add_series("ours " + c, [&](const std::string& g) {
          auto it = ran.find({g, c});
          return it == ran.end() ? none : spread(*it->second);
        });
      if (peer)
        for (auto& c : configs)
          add_series(peer->file.meta.value("peer", std::string("peer")) + " " + c, [&](const std::string& g) {
            auto it = ran.find({g, c});
            if (it == ran.end()) return none;
            auto pt = peer_rec.find(it->second->key);
            return pt == peer_rec.end() || pt->second->outcome != Outcome::ok ? none : spread(*pt->second);
          });
      place_after(sec,
                  bars_figure(sweep + "_tflops", "TFLOP/s per GEMM (heuristic's first algorithm; whiskers: the samples' quartiles)",
                              "TFLOP/s", groups, series),
                  sec["tables"].size() - 1);
    }
  }
  std::string line = fmt::format("GEMMs '{}': {} points, {}", sweep, recs.size(), outcome_tally(recs));
  if (!speedups.empty())
    line += fmt::format("; FP8 {:.2f}x BF16 (geometric mean of {} GEMMs, {:.2f}-{:.2f}x)", geomean(speedups), speedups.size(),
                        *std::min_element(speedups.begin(), speedups.end()), *std::max_element(speedups.begin(), speedups.end()));
  if (!peer_fp8.empty())
    line += fmt::format("; ours/{} on FP8 {:.2f}x ({:.2f}x autotuned)", peer->file.meta.value("peer", std::string("peer")),
                        geomean(peer_fp8), geomean(peer_fp8_best));
  sec["summary"].push_back(line + ".");
  if (!speedups.empty())
    sec["text"].push_back(
        fmt::format("FP8 vs BF16 (same GEMM, heuristic's first algorithm, same run): geometric-mean speedup "
                    "{:.2f}x over {} GEMMs (min {:.2f}x, max {:.2f}x).",
                    geomean(speedups), speedups.size(), *std::min_element(speedups.begin(), speedups.end()),
                    *std::max_element(speedups.begin(), speedups.end())));
  if (peer && (!peer_fp8.empty() || !peer_bf16.empty())) {
    const std::string who = peer->file.meta.value("peer", peer->path);
    if (!peer_fp8.empty())
      sec["text"].push_back(
          fmt::format("Ours vs {} on FP8 GEMMs ({} shapes): geometric-mean ratio {:.3f} with the heuristic's "
                      "first algorithm, {:.3f} autotuned (>1 means we are faster).",
                      who, peer_fp8.size(), geomean(peer_fp8), geomean(peer_fp8_best)));
    if (!peer_bf16.empty())
      sec["text"].push_back(fmt::format("Ours vs {} on BF16 GEMMs ({} shapes): {:.3f} heuristic, {:.3f} autotuned.", who, peer_bf16.size(),
                                        geomean(peer_bf16), geomean(peer_bf16_best)));
  }
  return sec;
}

}  // namespace fp8scope::report
