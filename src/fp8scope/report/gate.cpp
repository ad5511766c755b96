#include "fp8scope/report/gate.hpp"

#include "fp8scope/core/config.hpp"
#include "fp8scope/core/error.hpp"
#include "fp8scope/report/gemm_tuning.hpp"
#include "fp8scope/report/tables.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace fp8scope::report {
using core::InputError;
using core::Outcome;
using core::Record;

namespace {

GateThresholds parse_thresholds(const json& j, const GateThresholds& base, const std::string& where) {
  GateThresholds t = base;
  if (!j.is_object()) throw InputError(where + ": must be an object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string k = it.key(), w = where + "." + k;
    auto num = [&](double lo) {
      if (!it.value().is_number() || it.value().get<double>() < lo) throw InputError(fmt::format("{}: must be a number >= {}", w, lo));
      return it.value().get<double>();
    };
    if (k == "throughput_pct")
      t.throughput_pct = num(0);
    else if (k == "noise_multiplier")
      t.noise_multiplier = num(0);
    else if (k == "clock_multiplier")
      t.clock_multiplier = num(0);
    else if (k == "accuracy_growth")
      t.accuracy_growth = num(0);
    else if (k == "accuracy_floor")
      t.accuracy_floor = num(0);
    else if (k == "memory_pct")
      t.memory_pct = num(0);
    else if (k == "loss_growth")
      t.loss_growth = num(0);
    else if (k == "ignore") {
      if (!it.value().is_boolean()) throw InputError(w + ": must be true or false");
      t.ignore = it.value().get<bool>();
    } else if (k != "match") {
      throw InputError(
          fmt::format("{}: unknown key; allowed: throughput_pct, noise_multiplier, clock_multiplier, "
                      "accuracy_growth, accuracy_floor, memory_pct, loss_growth, ignore{}",
                      w, where.rfind("rules", 0) == 0 ? ", match" : ""));
    }
  }
  return t;
}

// The timing of a record: (median, relative noise, lower_is_better, unit) if it has one.
struct Speed {
  double value, noise;
  bool lower_better;
  std::string unit;
  double clock_mhz = 0;  // mean SM clock while timed, 0 if unknown
};
std::optional<Speed> speed_of(const Record& r) {
  if (r.data.contains("metrics") && r.data["metrics"].contains("tokens_per_s") && r.data.contains("timing"))
    return Speed{r.data["metrics"]["tokens_per_s"].get<double>(), r.data["timing"].value("rel_iqr", 0.0), false, "tokens/s",
                 r.data["timing"].value("mean_sm_clock_mhz", 0.0)};
  if (r.data.contains("timing") && r.data["timing"].contains("median"))
    return Speed{r.data["timing"]["median"].get<double>(), r.data["timing"].value("rel_iqr", 0.0), true,
                 r.data["timing"].value("unit", std::string("ms")),  // a benchmark's own unit (bench_kernels: us)
                 r.data["timing"].value("mean_sm_clock_mhz", 0.0)};
  if (r.data.contains("benchmark") && r.data["benchmark"].contains("real_time")) {
    const json& b = r.data["benchmark"];
    return Speed{b["real_time"].get<double>(), 0.0, true, b.value("time_unit", std::string("ns"))};
  }
  return std::nullopt;
}

std::optional<double> accuracy_of(const Record& r, const char* key) {
  if (r.data.contains("accuracy") && r.data["accuracy"].contains(key) && r.data["accuracy"][key].is_number())
    return r.data["accuracy"][key].get<double>();
  return std::nullopt;
}

// The errors a record may carry, each gated on its own: against the reference of the values the
// GEMM read, and (scale-mode points with FP32 inputs) against the unquantised product, whole and
// for the worst rows (where a coarser scale shows first): "err fp32", "rows p90".
constexpr std::pair<const char*, const char*> kErrors[] = {
    {"rel_error", "accuracy"}, {"quant_rel_error", "err fp32"}, {"row_error_p90", "rows p90"}};

// A training run's peak device allocation, MiB (cudaMemGetInfo's figure, which adds the CUDA
// context, is left out: it moves with the driver, not with the code).
std::optional<double> peak_memory_of(const Record& r) {
  if (r.data.contains("metrics") && r.data["metrics"].contains("peak_alloc_mib") && r.data["metrics"]["peak_alloc_mib"].is_number())
    return r.data["metrics"]["peak_alloc_mib"].get<double>();
  return std::nullopt;
}

// The mean of a training run's last kLossWindow logged losses (one step's loss is one batch's,
// noisier than the trend); none without a series, or where one of them is not finite (the NaN
// onset judges those).
constexpr std::size_t kLossWindow = 10;
std::optional<double> final_loss_of(const Record& r) {
  if (!r.data.contains("train") || !r.data["train"].is_object() || !r.data["train"].contains("loss")) return std::nullopt;
  const json& loss = r.data["train"]["loss"];
  if (!loss.is_array() || loss.empty()) return std::nullopt;
  const std::size_t n = std::min(kLossWindow, loss.size());
  double sum = 0;
  for (std::size_t i = loss.size() - n; i < loss.size(); ++i) {
    if (!loss[i].is_number() || !std::isfinite(loss[i].get<double>())) return std::nullopt;
    sum += loss[i].get<double>();
  }
  return sum / double(n);
}

// A change (positive = worse) beyond its allowance fails; the same amount the other way is an
// improvement.
Verdict judge(double worse_by, double allowed) {
  return worse_by > allowed ? Verdict::fail : worse_by < -allowed ? Verdict::improved : Verdict::pass;
}

std::optional<json> nan_onset_of(const Record& r) {
  if (r.data.contains("nan_onset") && r.data["nan_onset"].is_object()) return r.data["nan_onset"];
  return std::nullopt;
}

std::string onset_text(const json& o) {
  return fmt::format("step {} layer {} {} ({})", o.value("step", -1), o.value("layer", -1), o.value("tensor", std::string("?")),
                     o.value("pass", std::string("?")));
}

// The cuBLASLt algorithms a record names, by GEMM: a probe_gemm point's heuristic's first (what
// a framework gets), a training run's kept one per tuned shape (gemm_tuning).
std::map<std::string, std::string> algorithms_of(const Record& r) {
  std::map<std::string, std::string> out;
  if (r.data.contains("algorithms") && r.data["algorithms"].is_array() && !r.data["algorithms"].empty())
    if (auto a = algo_identity(r.data["algorithms"][0]); !a.empty()) out["the heuristic's first"] = a;
  for (auto& sh : tuned_shapes(r))
    if (auto a = algo_identity(sh.value("algo", json())); !a.empty())
      out[sh.value("gemm", std::string("?")) + " (" + sh.value("shape", std::string("?")) + ")"] = a;
  return out;
}

std::string gpu_name(const core::ResultFile& f) {
  if (f.env.contains("gpu") && f.env["gpu"].is_object()) return f.env["gpu"].value("name", std::string());
  return {};
}

}  // namespace

std::string to_string(Verdict v) {
  switch (v) {
    case Verdict::fail: return "FAIL";
    case Verdict::improved: return "improved";
    case Verdict::pass: return "pass";
    case Verdict::info: return "info";
  }
  return "?";
}

const GateThresholds& GatePolicy::for_key(const std::string& key, std::string* rule_name) const {
  for (auto& r : rules)
    if (std::regex_search(key, r.re)) {
      if (rule_name) *rule_name = r.pattern;
      return r.t;
    }
  if (rule_name) *rule_name = "defaults";
  return defaults;
}

json GatePolicy::to_json() const {
  auto tj = [](const GateThresholds& t) {
    return json{{"throughput_pct", t.throughput_pct},     {"noise_multiplier", t.noise_multiplier},
                {"clock_multiplier", t.clock_multiplier}, {"accuracy_growth", t.accuracy_growth},
                {"accuracy_floor", t.accuracy_floor},     {"memory_pct", t.memory_pct},
                {"loss_growth", t.loss_growth},           {"ignore", t.ignore}};
  };
  json rs = json::array();
  for (auto& r : rules) {
    json j = tj(r.t);
    j["match"] = r.pattern;
    rs.push_back(j);
  }
  return {{"defaults", tj(defaults)}, {"rules", rs}};
}

GatePolicy parse_policy(const json& doc) {
  GatePolicy p;
  if (!doc.is_object()) throw InputError("(top level): a gate policy must be a JSON object");
  for (auto it = doc.begin(); it != doc.end(); ++it)
    if (it.key() != "defaults" && it.key() != "rules" && it.key() != "description")
      throw InputError(it.key() + ": unknown key; a policy has description, defaults, rules");
  if (doc.contains("defaults")) p.defaults = parse_thresholds(doc["defaults"], p.defaults, "defaults");
  if (doc.contains("rules")) {
    if (!doc["rules"].is_array()) throw InputError("rules: must be a list");
    for (std::size_t i = 0; i < doc["rules"].size(); ++i) {
      const json& r = doc["rules"][i];
      const std::string w = fmt::format("rules[{}]", i);
      if (!r.is_object() || !r.contains("match") || !r["match"].is_string())
        throw InputError(w + ": needs \"match\": a regular expression searched in the point key");
      GatePolicy::Rule rule;
      rule.pattern = r["match"].get<std::string>();
      try {
        rule.re = std::regex(rule.pattern);
      } catch (const std::regex_error& e) {
        throw InputError(fmt::format("{}.match: not a valid regular expression: {}", w, e.what()));
      }
      rule.t = parse_thresholds(r, p.defaults, w);
      p.rules.push_back(std::move(rule));
    }
  }
  return p;
}

GatePolicy load_policy(const std::string& path) {
  try {
    return parse_policy(core::read_json_file(path));
  } catch (const InputError& e) {
    const std::string what = e.what();
    throw InputError(what.rfind(path, 0) == 0 ? what : path + ": " + what);
  }
}

void check_comparable(const core::ResultFile& b, const core::ResultFile& c, bool force) {
  if (b.records.empty()) throw InputError("baseline has no records");
  if (c.records.empty()) throw InputError("current has no records");
  if (force) return;
  if (b.schema_version != c.schema_version)
    throw InputError(
        fmt::format("schema versions differ (baseline {}, current {}); use --force to compare anyway", b.schema_version, c.schema_version));
  if (gpu_name(b) != gpu_name(c))
    throw InputError(
        fmt::format("different GPUs (baseline '{}', current '{}'): timings are not comparable; use --force to "
                    "compare anyway",
                    gpu_name(b).empty() ? "none" : gpu_name(b), gpu_name(c).empty() ? "none" : gpu_name(c)));
}

GateResult run_gate(const core::ResultFile& base, const core::ResultFile& cur, const GatePolicy& policy) {
  GateResult res;
  std::map<std::string, const Record*> now;
  for (auto& r : cur.records) now[r.key] = &r;
  std::map<std::string, bool> seen;
  auto add = [&](Judgement j) {
    (j.verdict == Verdict::fail       ? res.failures
     : j.verdict == Verdict::improved ? res.improvements
                                      : res.passes) += j.verdict == Verdict::info ? 0 : 1;
    res.judgements.push_back(std::move(j));
  };
  // A point is found by its key; failing that, by its parameters: the one current record
  // whose parameters include all of the baseline's with the same values (a sweep recorded
  // before a probe gained an axis still gates against one recorded after).
  auto find = [&](const Record& b) -> const Record* {
    if (auto it = now.find(b.key); it != now.end()) return it->second;
    const Record* found = nullptr;
    for (auto& c : cur.records) {
      bool all = b.params.is_object() && !b.params.empty();
      for (auto p = b.params.begin(); all && p != b.params.end(); ++p) all = c.params.contains(p.key()) && c.params[p.key()] == p.value();
      if (!all) continue;
      if (found) return nullptr;  // ambiguous
      found = &c;
    }
    return found;
  };
  for (auto& b : base.records) {
    std::string rule;
    const GateThresholds& t = policy.for_key(b.key, &rule);
    seen[b.key] = true;
    if (t.ignore) continue;
    const Record* match = find(b);
    if (!match) {
      add({b.key, "record", std::string(core::to_string(b.outcome)), "missing", "present", rule, 1e9, Verdict::fail});
      continue;
    }
    seen[match->key] = true;
    const Record& c = *match;
    // Availability.
    if (b.outcome != c.outcome) {
      const bool worse = b.outcome == Outcome::ok;
      const bool better = c.outcome == Outcome::ok;
      add({b.key, "outcome", std::string(core::to_string(b.outcome)), std::string(core::to_string(c.outcome)), "ok stays ok", rule,
           worse ? 1e6 : 0,
           worse    ? Verdict::fail
           : better ? Verdict::improved
                    : Verdict::info});
    }
    // Speed, memory and loss only where both ran.
    const bool both_ran = b.outcome == Outcome::ok && c.outcome == Outcome::ok;
    auto sb = speed_of(b), sc = speed_of(c);
    if (both_ran && sb && sc && sb->value > 0 && sc->value > 0) {
      const double worse_by = sb->lower_better ? sc->value / sb->value - 1 : sb->value / sc->value - 1;
      const double clock = sb->clock_mhz > 0 && sc->clock_mhz > 0 ? std::abs(sc->clock_mhz / sb->clock_mhz - 1) : 0.0;
      const double noise = t.noise_multiplier * (sb->noise + sc->noise) + t.clock_multiplier * clock;
      const double allowed = std::max(t.throughput_pct / 100.0, noise);
      const Verdict v = judge(worse_by, allowed);
      add({b.key, "speed", fmt::format("{:.4g} {}", sb->value, sb->unit), fmt::format("{:.4g} {}", sc->value, sc->unit),
           fmt::format("{:.1f}% (threshold {:.1f}%, noise {:.1f}%, clocks {:.1f}%)", 100 * allowed, t.throughput_pct,
                       100 * t.noise_multiplier * (sb->noise + sc->noise), 100 * clock),
           rule, worse_by, v});
    }
    // Accuracy.
    for (auto [key, check] : kErrors) {
      auto eb = accuracy_of(b, key), ec = accuracy_of(c, key);
      if (!eb || !ec) continue;
      const double limit = *eb * (1 + t.accuracy_growth) + t.accuracy_floor;
      const Verdict v = *ec > limit ? Verdict::fail : Verdict::pass;
      add({b.key, check, fmt::format("{:.3g}", *eb), fmt::format("{:.3g}", *ec), fmt::format("<= {:.3g}", limit), rule,
           *eb > 0 ? *ec / *eb - 1 : 0, v});
    }
    // Memory.
    auto mb = peak_memory_of(b), mc = peak_memory_of(c);
    if (both_ran && mb && mc && *mb > 0) {
      const double grown = *mc / *mb - 1, allowed = t.memory_pct / 100.0;
      add({b.key, "memory", fmt::format("{:.0f} MiB", *mb), fmt::format("{:.0f} MiB", *mc),
           fmt::format("<= {:.0f} MiB (+{:.3g}%)", *mb * (1 + allowed), t.memory_pct), rule, grown, judge(grown, allowed)});
    }
    // Convergence: where the run ends.
    auto lb = final_loss_of(b), lc = final_loss_of(c);
    if (both_ran && lb && lc) {
      const double rose = *lc - *lb;
      add({b.key, "loss", fmt::format("{:.4f}", *lb), fmt::format("{:.4f}", *lc),
           fmt::format("<= {:.4f} (mean of the last {} steps, +{:.3g})", *lb + t.loss_growth, kLossWindow, t.loss_growth), rule, rose,
           judge(rose, t.loss_growth)});
    }
    // Stability.
    auto nb = nan_onset_of(b), nc = nan_onset_of(c);
    if (nc && !nb)
      add({b.key, "nan_onset", "none", onset_text(*nc), "no NaN", rule, 1e5, Verdict::fail});
    else if (nb && nc && nc->value("step", 0) < nb->value("step", 0))
      add({b.key, "nan_onset", onset_text(*nb), onset_text(*nc), "not earlier", rule, 1e4, Verdict::fail});
    else if (nb && !nc)
      add({b.key, "nan_onset", onset_text(*nb), "none", "", rule, -1, Verdict::improved});
    // The algorithms cuBLASLt ran: not judged, but a changed one (another cuBLASLt, another
    // heuristic, another tuning choice) is often what a speed change comes from.
    const auto ab = algorithms_of(b), ac = algorithms_of(c);
    for (auto& [gemm, a] : ab)
      if (auto it = ac.find(gemm); it != ac.end() && it->second != a)
        add({b.key, "algorithm", a, it->second, fmt::format("{} of {}", kAlgoIdentityFields, gemm), rule, 0, Verdict::info});
    // Where the GELU and its gradient ran (gelu_cast gemm_epilogue): cuBLASLt's epilogues, or the
    // GELU kernels after cuBLASLt refused them; a change there moves the step's time.
    for (const char* pass : {"forward", "backward"}) {
      auto where = [&](const Record& r) {
        return r.data.contains("gelu_epilogue") && r.data["gelu_epilogue"].is_object() ? r.data["gelu_epilogue"].value(pass, std::string())
                                                                                       : std::string();
      };
      if (const std::string gb = where(b), gc = where(c); !gb.empty() && !gc.empty() && gb != gc)
        add({b.key, std::string("gelu_") + pass, gb, gc, fmt::format("where the GELU's {} ran (gelu_cast gemm_epilogue)", pass), rule, 0,
             Verdict::info});
    }
    // Where the residual stream's adds ran: the GEMMs' epilogue, or the residual kernel (per-row /
    // per-block scaling, or after cuBLASLt refused the epilogue): likewise.
    auto residual_where = [](const Record& r) -> std::string {
      if (!r.data.contains("residual_add")) return "";
      const json& a = r.data["residual_add"];
      if (a.is_string()) return a.get<std::string>();
      return a.is_object() ? a.value("ran", std::string()) + " (refused)" : std::string();
    };
    if (const std::string rb = residual_where(b), rc = residual_where(c); !rb.empty() && !rc.empty() && rb != rc)
      add({b.key, "residual_add", rb, rc, "where the residual stream's adds ran", rule, 0, Verdict::info});
  }
  for (auto& c : cur.records)
    if (!seen.count(c.key)) add({c.key, "record", "absent", std::string(core::to_string(c.outcome)), "", "", 0, Verdict::info});
  std::stable_sort(res.judgements.begin(), res.judgements.end(), [](const Judgement& a, const Judgement& b) {
    auto rank = [](Verdict v) { return v == Verdict::fail ? 0 : v == Verdict::improved ? 1 : v == Verdict::info ? 2 : 3; };
    if (rank(a.verdict) != rank(b.verdict)) return rank(a.verdict) < rank(b.verdict);
    return a.verdict == Verdict::improved ? a.change < b.change : a.change > b.change;
  });
  return res;
}

std::string render_gate(const GateResult& r, const GatePolicy& policy, std::size_t max_rows) {
  std::string out = fmt::format("gate: {} failed, {} improved, {} passed checks\n", r.failures, r.improvements, r.passes);
  out += fmt::format("policy: {}\n", policy.to_json().dump());
  out +=
      fmt::format("{:<8} {:<9} {:>22} {:>22} {:>9}  {:<56} {}\n", "verdict", "check", "baseline", "current", "change", "allowed", "point");
  std::size_t shown = 0;
  for (auto& j : r.judgements) {
    if (shown++ >= max_rows) {
      out += fmt::format("... {} more (use --max-rows)\n", r.judgements.size() - max_rows);
      break;
    }
    const std::string change = j.check == "speed" || j.check == "accuracy" || j.check == "memory" ? fmt::format("{:+.1f}%", 100 * j.change)
                               : j.check == "loss"                                                ? fmt::format("{:+.3f}", j.change)
                                                                                                  : "";
    out += fmt::format("{:<8} {:<9} {:>22} {:>22} {:>9}  {:<56} {}\n", to_string(j.verdict), j.check, j.baseline, j.current, change,
                       j.allowed, j.key);
  }
  return out;
}

}  // namespace fp8scope::report
