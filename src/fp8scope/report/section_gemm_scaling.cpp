// The scale-mode part of a GEMM section (probe_gemm's a_scale / b_scale / inputs axes): per
// pair of scale modes, where it runs (the power-of-two multiples each of m, n, k must be, from
// the records), its speed against per-tensor scaling on the same shapes in the same run, and its
// accuracy against the unquantised FP32 product on the same data.
#include "fp8scope/core/stats.hpp"
#include "fp8scope/gemm/vocab_summary.hpp"
#include "fp8scope/report/sections.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

namespace fp8scope::report {
using core::Outcome;
using core::Record;

namespace {

std::string mode_pair(const json& p) {
  std::string s = p.value("a_scale", std::string("tensor")) + " x " + p.value("b_scale", std::string("tensor"));
  if (!p.value("fast_accum", true)) s += " noFA";
  return s;
}

std::string shape_of(const json& p) { return fmt::format("{}x{}x{}", p.value("m", 0LL), p.value("n", 0LL), p.value("k", 0LL)); }

// Same GEMM and data with per-tensor scales on both operands (and the given accumulation).
std::string tensor_twin(const json& p, bool fast_accum) {
  return fmt::format("{}|{}|{}|{}|{}|{}|{}", p.value("role", ""), shape_of(p), p.value("a", ""), p.value("b", ""), p.value("d", ""),
                     p.value("inputs", "fp8_exact"), fast_accum);
}

double ms_of(const Record& r) { return r.data.contains("metrics") ? r.data["metrics"].value("ms", NAN) : NAN; }
double acc_of(const Record& r, const char* k) { return r.data.contains("accuracy") ? r.data["accuracy"].value(k, NAN) : NAN; }

// The median of the finite values (NaN when there are none).
double median(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); }), v.end());
  return v.empty() ? NAN : core::compute_stats(std::move(v)).median;
}

std::string ratio_cell(const std::vector<double>& r) {
  if (r.empty()) return "-";
  return fmt::format("{:.2f}x ({:.2f}-{:.2f}, {} shapes)", geomean(r), *std::min_element(r.begin(), r.end()),
                     *std::max_element(r.begin(), r.end()), r.size());
}

// "multiple of 16", "any tested", "none ran", or the candidates the records cannot separate.
std::string divisor_rule(const std::vector<long long>& tested, const std::set<long long>& ok, const char* dim) {
  if (tested.size() < 2) return "-";
  const gemm::DivisorAnalysis a = gemm::analyse_divisors(tested, ok);
  if (a.all_ok) return "any tested";
  if (a.none_ok) return "none ran";
  if (a.consistent.empty()) return "no power-of-two rule";
  if (a.consistent.size() == 1) return fmt::format("multiple of {}", a.consistent[0]);
  return fmt::format("multiple of {} .. {} (no {} with {} % {} == {})", a.consistent.front(), a.consistent.back(), dim, dim,
                     a.consistent[1], a.consistent[0]);
}

}  // namespace

bool is_scaling_sweep(const std::vector<Record>& recs) {
  return std::any_of(recs.begin(), recs.end(), [](const Record& r) {
    return r.params.value("a_scale", std::string("tensor")) != "tensor" || r.params.value("b_scale", std::string("tensor")) != "tensor";
  });
}

void add_scaling_tables(const std::vector<Record>& recs, const std::string& sweep_name, json& sec) {
  std::vector<std::string> pairs;
  std::map<std::string, std::vector<const Record*>> by_pair;
  std::map<std::string, const Record*> tensor_rec;
  for (auto& r : recs) {
    if (r.outcome == Outcome::skipped) continue;
    const std::string pr = mode_pair(r.params);
    if (!by_pair.count(pr)) pairs.push_back(pr);
    by_pair[pr].push_back(&r);
    if (r.outcome == Outcome::ok && r.params.value("a_scale", std::string("tensor")) == "tensor" &&
        r.params.value("b_scale", std::string("tensor")) == "tensor")
      tensor_rec[tensor_twin(r.params, r.params.value("fast_accum", true))] = &r;
  }

  // --- where each pair runs, and how fast against per-tensor scaling --------------------------
  Table avail{
      "Scale modes (A x B): where they run and their speed against per-tensor scaling on the same shapes (heuristic's first "
      "algorithm; geometric mean, range)",
      {"scale modes", "ran", "m must be", "n must be", "k must be", "vs tensor (same accum)", "vs tensor + fast accum", "median TFLOP/s",
       "refused because"},
      {}};
  std::vector<std::string> summary_bits, speed_groups;
  std::vector<double> speed_mean, speed_low, speed_high;
  for (auto& pr : pairs) {
    const auto& rs = by_pair[pr];
    std::size_t ok = 0;
    // A dimension's rule is read from the points that vary it alone: the other two at their
    // most common value (the sweep's base shape), so a refusal is not blamed on the wrong one.
    auto dim = [](const Record* r, int d) { return r->params.value(std::string(1, "mnk"[d]), 0LL); };
    long long base[3];
    for (int d = 0; d < 3; ++d) {
      std::map<long long, int> count;
      for (auto* r : rs) ++count[dim(r, d)];
      base[d] = std::max_element(count.begin(), count.end(), [](auto& x, auto& y) { return x.second < y.second; })->first;
    }
    std::map<int, std::map<long long, bool>> runs;  // dim -> value -> every such point ran
    std::vector<double> same, fa, tflops;
    std::string why;
    for (auto* r : rs) {
      const bool ran = r->outcome == Outcome::ok;
      ok += ran;
      for (int d = 0; d < 3; ++d) {
        if (dim(r, (d + 1) % 3) != base[(d + 1) % 3] || dim(r, (d + 2) % 3) != base[(d + 2) % 3]) continue;
        auto [it, fresh] = runs[d].emplace(dim(r, d), ran);
        if (!fresh) it->second = it->second && ran;
      }
      if (!ran && why.empty()) why = fmt::format("{} ({}): {}", shape_of(r->params), core::to_string(r->outcome), r->reason.substr(0, 140));
      if (!ran) continue;
      tflops.push_back(r->data.contains("metrics") ? r->data["metrics"].value("tflops", NAN) : NAN);
      for (auto [fast, out] : {std::pair{r->params.value("fast_accum", true), &same}, std::pair{true, &fa}}) {
        auto it = tensor_rec.find(tensor_twin(r->params, fast));
        if (it != tensor_rec.end() && it->second != r) out->push_back(ms_of(*it->second) / ms_of(*r));
      }
    }
    std::vector<std::string> rule;
    for (int d = 0; d < 3; ++d) {
      std::vector<long long> tested;
      std::set<long long> good;
      for (auto& [v, all] : runs[d]) {
        tested.push_back(v);
        if (all) good.insert(v);
      }
      rule.push_back(divisor_rule(tested, good, std::string(1, "mnk"[d]).c_str()));
    }
    avail.rows.push_back({pr, fmt::format("{} of {}", ok, rs.size()), rule[0], rule[1], rule[2], ratio_cell(same), ratio_cell(fa),
                          fmt_num(median(tflops)), why});
    if (!same.empty() && pr.rfind("tensor x tensor", 0) != 0) {
      speed_groups.push_back(pr);
      speed_mean.push_back(geomean(same));
      speed_low.push_back(*std::min_element(same.begin(), same.end()));
      speed_high.push_back(*std::max_element(same.begin(), same.end()));
    }
    if (ok == 0)
      summary_bits.push_back(pr + " refused");
    else if (!same.empty())
      summary_bits.push_back(fmt::format("{} {:.2f}x", pr, geomean(same)));
  }
  sec["tables"].push_back(avail.to_json());
  if (!speed_groups.empty()) {
    json series = json::array({{{"label", "geometric mean over shapes (whiskers: slowest and fastest shape)"},
                                {"values", speed_mean},
                                {"low", speed_low},
                                {"high", speed_high}}});
    place_after(sec,
                bars_figure(sweep_name + "_scale_modes", "Speed against per-tensor scaling with the same accumulation (1 = as fast)",
                            "time(tensor) / time(mode)", speed_groups, series, 1.0),
                sec["tables"].size() - 1);
  }

  // --- accuracy on the same data ---------------------------------------------------------------
  Table acc{
      "Scale modes: accuracy against the unquantised FP32 product on the same data (median over shapes; the error of each "
      "output row and column shows the rows a coarse scale flushed, which the whole-matrix error hides; underflow = non-zero "
      "inputs quantised to zero)",
      {"inputs", "scale modes", "rel. error vs FP32", "vs tensor", "row error p50 / p90", "column error p50 / p90", "A underflow",
       "B underflow", "GEMM error (vs its own inputs)"},
      {}};
  std::map<std::string, double> tensor_error;  // inputs -> median error of tensor x tensor
  for (const char* inputs : {"normal", "outliers"})
    for (auto& pr : pairs) {
      std::vector<double> err, ua, ub, gemm_err, r50, r90, c50, c90;
      for (auto* r : by_pair[pr])
        if (r->outcome == Outcome::ok && r->params.value("inputs", std::string("fp8_exact")) == inputs) {
          err.push_back(acc_of(*r, "quant_rel_error"));
          ua.push_back(acc_of(*r, "a_underflow"));
          ub.push_back(acc_of(*r, "b_underflow"));
          gemm_err.push_back(acc_of(*r, "rel_error"));
          r50.push_back(acc_of(*r, "row_error_p50")), r90.push_back(acc_of(*r, "row_error_p90"));
          c50.push_back(acc_of(*r, "col_error_p50")), c90.push_back(acc_of(*r, "col_error_p90"));
        }
      if (err.empty()) continue;
      const double e = median(err);
      if (pr.rfind("tensor x tensor", 0) == 0 && !tensor_error.count(inputs)) tensor_error[inputs] = e;
      const double te = tensor_error.count(inputs) ? tensor_error[inputs] : NAN;
      acc.rows.push_back({inputs, pr, fmt_sci(e), std::isfinite(te) ? fmt_num(e / te, 2) + "x" : "-",
                          fmt_sci(median(r50)) + " / " + fmt_sci(median(r90)), fmt_sci(median(c50)) + " / " + fmt_sci(median(c90)),
                          fmt_pct(median(ua)), fmt_pct(median(ub)), fmt_sci(median(gemm_err))});
    }
  if (!acc.rows.empty()) sec["tables"].push_back(acc.to_json());
  if (!summary_bits.empty())
    sec["summary"].push_back(
        fmt::format("Scale modes, speed against per-tensor scaling (same accumulation): {}.", fmt::join(summary_bits, "; ")));
}

}  // namespace fp8scope::report
