// probe_recipe results, and the "Seed claims" section: each claim of the seed summary judged
// from the records (never by hand) as confirmed, refuted, not reproduced or not tested.
#include "fp8scope/gemm/vocab_summary.hpp"
#include "fp8scope/model/fp8_fields.hpp"
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

// The scaling as a recipe names it: per-row / per-block scaling with power-of-two scales is
// "block pow2".
std::string scaling_label(const json& p) { return p.value("scaling", std::string("?")) + (model::pow2_block_scales(p) ? " pow2" : ""); }

std::string recipe_label(const json& p) {
  return fmt::format("{} m={} h={} {} {} {} {}", p.value("format", "?"), p.value("margin", 0), p.value("amax_history_len", 0),
                     p.value("amax_compute_algo", "?"), scaling_label(p), p.value("saturation", "?"), p.value("variant", "?"));
}

std::string onset_text(const Record& r) {
  if (!r.data.contains("nan_onset")) return "";
  const json& o = r.data["nan_onset"];
  return fmt::format("step {}, layer {}, {} ({})", o.value("step", -1), o.value("layer", -1), o.value("tensor", std::string("?")),
                     o.value("pass", std::string("?")));
}

struct Tally {
  int runs = 0, nan = 0;
  const Record* earliest = nullptr;
  std::map<std::string, std::pair<int, int>> by_saturation;  // saturation -> (nan, runs)
  void add(const Record& r) {
    ++runs;
    auto& s = by_saturation[r.params.value("saturation", "?")];
    ++s.second;
    if (r.outcome != Outcome::nonfinite) return;
    ++nan;
    ++s.first;
    if (!earliest || r.data["nan_onset"].value("step", 1 << 30) < earliest->data["nan_onset"].value("step", 1 << 30)) earliest = &r;
  }
  std::string text() const {
    std::string t = fmt::format("{}/{} runs NaN", nan, runs);
    std::string parts;
    for (auto& [sat, c] : by_saturation) parts += fmt::format("{}{} {}/{}", parts.empty() ? "" : ", ", sat, c.first, c.second);
    if (!parts.empty()) t += " (" + parts + ")";
    if (earliest) t += fmt::format("; earliest at {}", onset_text(*earliest));
    return t;
  }
  // What a verdict is judged on: the runs with saturating casts when there are any (as
  // TransformerEngine casts), otherwise all runs. nosat runs stay in the evidence text.
  bool judged_on_satfinite() const {
    auto it = by_saturation.find("satfinite");
    return it != by_saturation.end() && it->second.second > 0;
  }
  std::pair<int, int> judged() const { return judged_on_satfinite() ? by_saturation.at("satfinite") : std::make_pair(nan, runs); }
};

std::string where(const std::vector<ReportInput>& inputs) {
  for (auto& in : inputs)
    if (in.file.meta.value("probe", std::string()) == "recipe") {
      const json& e = in.file.env;
      const std::string backend = in.file.records.empty() ? "?" : in.file.records.front().params.value("backend", "?");
      return backend == "cpu" ? "on the FP8-emulating CPU reference (tiny models)"
                              : fmt::format("on {}", e.contains("gpu") && e["gpu"].is_object() ? e["gpu"].value("name", "?") : "?");
    }
  return "";
}

// The class of a quantised tensor from its tap name ("0.fc1.grad_t" -> "grad_t"): what it is
// (input, weight, gradient) and, for per-row and per-block scaling, which GEMM's copy (_t: the
// one wgrad or dgrad reads along the other dimension).
std::string tensor_class(const std::string& tap) { return tap.substr(tap.rfind('.') + 1); }

// Per run, the worst underflow (values quantised to zero) of each tensor class, and for a sweep
// holding both, the worst tensor under block scaling (each scale rule apart) against delayed
// per-tensor E4M3.
void add_underflow_table(const std::vector<Record>& recs, const std::vector<std::string>& extra, json& sec) {
  std::vector<std::string> classes;
  for (auto& r : recs)
    if (r.data.contains("taps"))
      for (auto it = r.data["taps"].begin(); it != r.data["taps"].end(); ++it)
        if (const std::string c = tensor_class(it.key()); std::find(classes.begin(), classes.end(), c) == classes.end())
          classes.push_back(c);
  if (classes.empty()) return;
  std::sort(classes.begin(), classes.end());
  Table t{"Underflow by tensor class (the worst tensor of each class over the run: share of its non-zero values quantised to zero)",
          {"recipe", "seed"},
          {}};
  for (auto& c : classes) t.columns.push_back(c);
  t.columns.push_back("worst tensor");
  double worst_delayed_e4m3 = -1;
  std::map<std::string, std::pair<double, std::string>> worst_block;  // "block" / "block pow2" -> worst, its tensor
  for (auto& r : recs) {
    if (!r.data.contains("taps") || r.data["taps"].empty()) continue;
    std::map<std::string, double> by_class;
    std::string worst_name;
    double worst = -1;
    for (auto it = r.data["taps"].begin(); it != r.data["taps"].end(); ++it) {
      const double u = it.value().value("underflow_rate", 0.0);
      by_class[tensor_class(it.key())] = std::max(by_class[tensor_class(it.key())], u);
      if (u > worst) worst = u, worst_name = it.key();
    }
    std::vector<std::string> row{recipe_label(r.params) + params_suffix(r.params, extra), std::to_string(r.params.value("seed", 0))};
    for (auto& c : classes) row.push_back(by_class.count(c) ? fmt_pct(by_class[c]) : "-");
    row.push_back(fmt::format("{} {}", worst_name, fmt_pct(worst)));
    t.rows.push_back(row);
    const std::string sc = r.params.value("scaling", ""), f = r.params.value("format", "");
    if (sc == "delayed" && f == "e4m3") worst_delayed_e4m3 = std::max(worst_delayed_e4m3, worst);
    if (sc == "block") {
      auto [it, fresh] = worst_block.try_emplace(scaling_label(r.params), worst, worst_name);
      if (!fresh && worst > it->second.first) it->second = {worst, worst_name};
    }
  }
  sec["tables"].push_back(t.to_json());
  if (worst_delayed_e4m3 > 0)
    for (auto& [label, w] : worst_block)
      sec["summary"].push_back(
          fmt::format("Worst tensor's underflow: {} under {} scaling ({}) against {} under delayed per-tensor E4M3 "
                      "({:.2g}x of it).",
                      fmt_pct(w.first), label, w.second, fmt_pct(worst_delayed_e4m3), w.first / worst_delayed_e4m3));
}

// A sweep over vocabulary sizes (or their padding): per real V, at which padded widths the FP8
// model trained under every recipe of the sweep and where cuBLASLt refused it. The verdict names
// the smallest padded width that ran under every recipe, or says that none in the sweep did.
void add_vocab_padding_verdict(const std::vector<Record>& recs, json& sec) {
  struct Width {
    long long pad = 1;
    int ran = 0, refused = 0, other = 0;
    std::vector<std::string> refused_by;  // the refused runs, by the settings the sweep varies
    std::string reason;                   // the first refusal's reason
  };
  std::map<long long, std::map<long long, Width>> by_vocab;  // real V -> padded width -> runs
  // A refused run is named by the settings the sweep varies besides the vocabulary.
  const auto setting = varying_params(recs, {"vocab", "pad_vocab_to"});
  for (auto& r : recs) {
    const long long v = r.params.value("vocab", 0LL), pad = std::max(1LL, r.params.value("pad_vocab_to", 1LL));
    if (v <= 0) continue;
    Width& w = by_vocab[v][(v + pad - 1) / pad * pad];
    w.pad = pad;
    if (r.outcome == Outcome::ok || r.outcome == Outcome::nonfinite) {
      ++w.ran;
    } else if (r.outcome == Outcome::heuristic_unsupported || r.outcome == Outcome::no_algorithm || r.outcome == Outcome::run_rejected) {
      ++w.refused;
      const std::string name = params_suffix(r.params, setting);
      w.refused_by.push_back(name.empty() ? "the run" : name.substr(1));
      if (w.reason.empty()) w.reason = r.reason;
    } else {
      ++w.other;
    }
  }
  std::size_t widths = 0;
  for (auto& [v, ws] : by_vocab) widths += ws.size();
  if (widths < 2) return;  // one vocabulary at one width: nothing to compare
  Table t{"Vocabulary and padding: FP8 runs that trained (finite or not) and runs cuBLASLt refused, per padded width",
          {"V", "padded to", "trained", "refused", "other outcomes", "refused recipes", "first refusal"},
          {}};
  for (auto& [v, ws] : by_vocab) {
    std::string parts;
    long long every = 0, every_pad = 1;
    for (auto& [width, w] : ws) {
      std::string refused_by;
      for (auto& s : w.refused_by) refused_by += (refused_by.empty() ? "" : ", ") + s;
      t.rows.push_back({std::to_string(v), width == v ? "unpadded" : std::to_string(width), std::to_string(w.ran),
                        std::to_string(w.refused), std::to_string(w.other), refused_by, w.reason});
      const int runs = w.ran + w.refused + w.other;
      parts += fmt::format("{}{} ran in {} of {} runs", parts.empty() ? "" : "; ",
                           width == v ? std::string("unpadded it") : fmt::format("padded to {} (pad_vocab_to={}) it", width, w.pad), w.ran,
                           runs);
      if (w.refused > 0) parts += fmt::format(" (cuBLASLt refused {}: {})", w.refused == runs ? "every run" : refused_by, w.reason);
      if (every == 0 && w.refused == 0 && w.other == 0 && w.ran > 0) every = width, every_pad = w.pad;
    }
    std::string verdict;
    if (every == v)
      verdict = "it needs no padding";
    else if (every > 0)
      verdict = fmt::format("the smallest width of this sweep that ran under every recipe is {} (pad_vocab_to={})", every, every_pad);
    else
      verdict = "no width of this sweep ran under every recipe";
    sec["summary"].push_back(fmt::format("Vocab {} in FP8: {}; {}.", v, parts, verdict));
  }
  sec["tables"].push_back(t.to_json());
}

}  // namespace

json recipe_section(const ReportInput& in) {
  json sec = {{"title", fmt::format("Recipe sweep '{}'", in.file.meta.value("sweep", in.path))},
              {"text", json::array()},
              {"summary", json::array()},
              {"tables", json::array()},
              {"figures", json::array()}};
  if (!in.file.meta.value("description", std::string()).empty()) sec["text"].push_back(in.file.meta["description"]);
  Table t{"Runs (loss gap = FP8 minus its high-precision twin, same seed and data)",
          {"recipe", "seed", "outcome", "NaN onset (or why it did not run)", "steps run", "loss last", "twin loss last", "gap final",
           "gap max", "max saturated", "max underflow", "tokens/s vs twin"},
          {}};
  const auto extra = varying_params(in.file.records, {"format", "margin", "amax_history_len", "amax_compute_algo", "scaling",
                                                      "block_scales", "saturation", "variant", "seed"});
  for (auto& r : in.file.records) {
    double sat = 0, under = 0;
    if (r.data.contains("taps"))
      for (auto it = r.data["taps"].begin(); it != r.data["taps"].end(); ++it) {
        sat = std::max(sat, it.value().value("saturated_rate", 0.0));
        under = std::max(under, it.value().value("underflow_rate", 0.0));
      }
    const json m = r.data.value("metrics", json::object());
    auto num = [&](const char* k, int d) { return fmt_num(number_or_nan(m, k), d); };
    const bool trained = r.outcome == Outcome::ok || r.outcome == Outcome::nonfinite;
    t.rows.push_back({recipe_label(r.params) + params_suffix(r.params, extra), std::to_string(r.params.value("seed", 0)),
                      std::string(core::to_string(r.outcome)), trained ? onset_text(r) : r.reason,
                      r.data.contains("train") ? std::to_string(r.data["train"]["loss"].size()) : "-", num("loss_last", 3),
                      num("twin_loss_last", 3), num("loss_gap_final", 3), num("loss_gap_max", 3), fmt_pct(sat), fmt_pct(under),
                      m.contains("speedup_vs_twin") ? fmt::format("{:.2f}x", m["speedup_vs_twin"].get<double>()) : "-"});
  }
  sec["tables"].push_back(t.to_json());
  add_underflow_table(in.file.records, extra, sec);

  const std::string sweep = in.file.meta.value("sweep", std::string("recipe"));

  // Where NaNs start: each NaN run's first non-finite FP8 tensor, by tensor and layer, with the
  // earliest step it happened at and how many runs started there.
  std::map<std::pair<std::string, int>, std::pair<int, int>> onsets;  // (tensor (pass), layer) -> (earliest step, runs)
  int nan_runs = 0, trained_runs = 0;
  std::map<std::string, std::pair<int, int>> by_saturation;  // saturation -> (NaN, runs)
  for (auto& r : in.file.records) {
    if (r.outcome != Outcome::ok && r.outcome != Outcome::nonfinite) continue;
    ++trained_runs;
    auto& bs = by_saturation[r.params.value("saturation", "?")];
    ++bs.second;
    if (!r.data.contains("nan_onset")) continue;
    ++nan_runs, ++bs.first;
    const json& o = r.data["nan_onset"];
    const auto key =
        std::make_pair(o.value("tensor", std::string("?")) + " (" + o.value("pass", std::string("?")) + ")", o.value("layer", -1));
    auto [it, fresh] = onsets.emplace(key, std::make_pair(o.value("step", 0), 0));
    it->second.first = std::min(it->second.first, o.value("step", 0));
    ++it->second.second;
  }
  if (!onsets.empty()) {
    std::vector<std::string> rows;
    std::vector<int> layers;
    for (auto& [k, v] : onsets) {
      if (std::find(rows.begin(), rows.end(), k.first) == rows.end()) rows.push_back(k.first);
      if (std::find(layers.begin(), layers.end(), k.second) == layers.end()) layers.push_back(k.second);
    }
    std::sort(layers.begin(), layers.end());
    std::vector<std::string> cols;
    for (int l : layers) cols.push_back(l < 0 ? "head / loss" : fmt::format("layer {}", l));
    json cells = json::array();
    for (auto& row : rows) {
      json cr = json::array();
      for (int l : layers) {
        auto it = onsets.find({row, l});
        cr.push_back(it == onsets.end() ? json(nullptr) : json{{"step", it->second.first}, {"runs", it->second.second}});
      }
      cells.push_back(cr);
    }
    std::string sat;
    for (auto& [k, v] : by_saturation) sat += fmt::format("{}{} {} of {}", sat.empty() ? "" : ", ", k, v.first, v.second);
    place_after(sec,
                {{"kind", "onset"},
                 {"file", sweep + "_nan_onset"},
                 {"title", fmt::format("Where NaNs start: the first non-finite FP8 tensor of each of the {} NaN runs of {} ({}); sN = "
                                       "earliest step, colour likewise",
                                       nan_runs, trained_runs, sat)},
                 {"xlabel", "layer"},
                 {"ylabel", "tensor (pass)"},
                 {"rows", rows},
                 {"columns", cols},
                 {"cells", cells}},
                0);
  }
  {
    std::string sat;
    for (auto& [k, v] : by_saturation) sat += fmt::format("{}{} {}/{}", sat.empty() ? "" : ", ", k, v.first, v.second);
    std::string line =
        fmt::format("Recipes '{}': {} of {} runs went NaN{}", sweep, nan_runs, trained_runs, sat.empty() ? "" : " (" + sat + ")");
    const core::Record* first = nullptr;
    for (auto& r : in.file.records)
      if (r.data.contains("nan_onset") &&
          (!first || r.data["nan_onset"].value("step", 1 << 30) < first->data["nan_onset"].value("step", 1 << 30)))
        first = &r;
    if (first) line += "; earliest at " + onset_text(*first);
    double gap = 0;
    std::string gap_run;
    for (auto& r : in.file.records)
      if (r.outcome == Outcome::ok && r.data.contains("metrics") && r.data["metrics"].contains("loss_gap_final") &&
          std::abs(r.data["metrics"]["loss_gap_final"].get<double>()) > std::abs(gap)) {
        gap = r.data["metrics"]["loss_gap_final"].get<double>();
        gap_run = recipe_label(r.params);
      }
    if (!gap_run.empty()) line += fmt::format("; largest final loss gap to the twin among runs that finished: {:+.3f} ({})", gap, gap_run);
    sec["summary"].push_back(line + ".");
  }

  // Loss curves of FP8 runs and their twins, and below them each run's gap to its twin: to stay
  // readable, one run per recipe setting other than variant and seed (the first), at most 6.
  json series = json::array(), gaps = json::array();
  std::set<std::string> twins_drawn, settings_drawn;
  for (auto& r : in.file.records) {
    if (!r.data.contains("train") || settings_drawn.size() >= 6) continue;
    json setting = r.params;
    setting.erase("variant");
    setting.erase("seed");
    if (!settings_drawn.insert(setting.dump()).second) continue;
    const json& loss = r.data["train"]["loss"];
    const std::string label = recipe_label(r.params) + params_suffix(r.params, extra) + fmt::format(" s{}", r.params.value("seed", 0));
    json x = json::array();
    for (std::size_t k = 0; k < loss.size(); ++k) x.push_back(k);
    series.push_back({{"label", label}, {"x", x}, {"y", loss}});
    if (!r.data.contains("twin_loss")) continue;
    const json& twin = r.data["twin_loss"];
    json gy = json::array(), gx = json::array();
    for (std::size_t k = 0; k < loss.size() && k < twin.size(); ++k) {
      if (!loss[k].is_number() || !twin[k].is_number() || !std::isfinite(loss[k].get<double>())) continue;
      gx.push_back(k);
      gy.push_back(loss[k].get<double>() - twin[k].get<double>());
    }
    gaps.push_back({{"label", label}, {"x", gx}, {"y", gy}});
    const std::string twin_label = fmt::format("high-precision twin s{}", r.params.value("seed", 0));
    if (twins_drawn.insert(twin_label).second) {
      json tx = json::array();
      for (std::size_t k = 0; k < twin.size(); ++k) tx.push_back(k);
      series.push_back({{"label", twin_label}, {"x", tx}, {"y", twin}, {"style", "--"}});
    }
  }
  if (!series.empty())
    place_after(
        sec,
        curves_gap_figure(sweep + "_loss", "Loss of FP8 recipes (solid) and their high-precision twins (dashed); below, FP8 minus twin",
                          "step", "loss", "FP8 - twin", series, gaps),
        0);
  add_vocab_padding_verdict(in.file.records, sec);
  return sec;
}

json seed_claims_section(const std::vector<ReportInput>& inputs) {
  std::map<long long, Tally> e4m3_delayed_by_margin;
  Tally hybrid, custom, attention;
  bool any_recipe = false;
  json vocab_verdict;
  for (auto& in : inputs) {
    const std::string probe = in.file.meta.value("probe", std::string());
    // With several vocab sweeps, the claim is judged on the one that measured the most V.
    if (probe == "vocab") {
      json v = gemm::summarize_vocab(in.file.records, in.file.env);
      auto tested = [](const json& s) { return s.is_object() && s.contains("e4m3") ? s["e4m3"].value("tested", 0) : -1; };
      if (tested(v) > tested(vocab_verdict)) vocab_verdict = v;
    }
    if (probe != "recipe") continue;
    for (auto& r : in.file.records) {
      if (r.outcome != Outcome::ok && r.outcome != Outcome::nonfinite) continue;
      any_recipe = true;
      const json& p = r.params;
      if (p.value("format", "") == "e4m3" && p.value("scaling", "") == "delayed") e4m3_delayed_by_margin[p.value("margin", 0LL)].add(r);
      if (p.value("format", "") == "hybrid") hybrid.add(r);
      if (p.value("variant", "") == "fp8_attention")
        attention.add(r);
      else
        custom.add(r);
    }
  }
  Table t{"Seed claims, judged from the records above", {"claim", "verdict", "evidence"}, {}};
  if (any_recipe) {
    const std::string at = where(inputs);
    // Claim 1: DelayedScaling(margin=1, E4M3) NaNs; margin 0 and 2 work.
    std::string ev1, absent, judged_on;
    for (long long m : {0LL, 1LL, 2LL}) {
      auto it = e4m3_delayed_by_margin.find(m);
      if (it == e4m3_delayed_by_margin.end() || it->second.runs == 0) {
        absent += fmt::format("{}margin={}", absent.empty() ? "" : ", ", m);
        continue;
      }
      ev1 += fmt::format("{}margin={}: {}", ev1.empty() ? "" : "; ", m, it->second.text());
      if (!it->second.judged_on_satfinite())
        judged_on += fmt::format("; margin={} has no runs with saturating casts and is judged on its runs without", m);
    }
    auto rate = [&](long long m) {
      const auto [n, runs] = e4m3_delayed_by_margin[m].judged();
      return double(n) / runs;
    };
    std::string v1;
    if (absent.size() == std::string("margin=0, margin=1, margin=2").size())
      v1 = "not tested";
    else if (!absent.empty())
      v1 = "undecided";
    else if (rate(1) > 0 && rate(0) == 0 && rate(2) == 0)
      v1 = "confirmed";
    else if (rate(1) == 0 && rate(0) == 0 && rate(2) == 0)
      v1 = "not reproduced";
    else
      v1 = "refuted";
    std::string e1 = ev1.empty() ? std::string("no E4M3 delayed runs with margins 0, 1, 2") : "E4M3 delayed, " + ev1 + " (" + at + ")";
    if (!absent.empty() && v1 == "undecided") e1 += "; no E4M3 delayed runs with " + absent + ", which the claim compares";
    t.rows.push_back({"DelayedScaling(margin=1, E4M3) gives NaN; margin=0 and margin=2 work", v1, e1 + judged_on});
    // Claim 2: HYBRID works (observed: no NaN in the runs; the count says how much was seen).
    t.rows.push_back({"DelayedScaling(HYBRID) works",
                      hybrid.runs == 0             ? "not tested"
                      : hybrid.judged().first == 0 ? "confirmed"
                                                   : "refuted",
                      hybrid.runs ? "HYBRID: " + hybrid.text() + " (" + at + ")" : "no HYBRID runs"});
    // Claim 3: FP8 attention (TransformerLayer) NaNs, custom attention with FP8 linears works.
    const int att_nan = attention.judged().first, custom_nan = custom.judged().first;
    std::string v3 = attention.runs == 0                 ? "not tested"
                     : custom.runs == 0                  ? "undecided"
                     : (att_nan > 0 && custom_nan == 0)  ? "confirmed"
                     : (att_nan == 0 && custom_nan == 0) ? "not reproduced"
                                                         : "refuted";
    t.rows.push_back({"TransformerLayer-style FP8 attention gives NaN while custom attention with FP8 linears works", v3,
                      attention.runs ? fmt::format("fp8_attention: {}; custom/fused: {}", attention.text(),
                                                   custom.runs ? custom.text() : std::string("no runs to compare with"))
                                     : "no fp8_attention runs in these results"});
  }
  if (vocab_verdict.is_object() && vocab_verdict.contains("e4m3")) {
    const json& c = vocab_verdict["e4m3"].value("divisible_by_32", json::object());
    t.rows.push_back({"FP8 needs a vocab divisible by 32 (50264 fails with 'no algorithm', 50304 works)",
                      c.value("verdict", std::string("not tested")),
                      c.value("because", std::string()) + ". " + vocab_verdict["e4m3"].value("verdict", std::string())});
  }
  if (t.rows.empty()) return json();
  json summary = json::array();
  for (auto& row : t.rows) summary.push_back(fmt::format("Seed claim \"{}\": **{}**.", row[0], row[1]));
  return {{"title", "Seed claims"},
          {"text", json::array({"Each verdict is computed from the records in this report: confirmed "
                                "(the runs show it), refuted (the runs contradict it), not reproduced "
                                "(the runs could not make it happen), undecided (the runs fit the claim "
                                "and an alternative alike; the evidence says which runs would decide), "
                                "not tested (no runs for it). "
                                "Recipe verdicts are judged on the runs whose casts saturate (satfinite, "
                                "as TransformerEngine casts) when there are any; the runs without "
                                "saturation (nosat) are listed in the evidence as the counterfactual."})},
          {"tables", json::array({t.to_json()})},
          {"summary", summary},
          {"figures", json::array()}};
}

}  // namespace fp8scope::report
