#pragma once
// `fp8scope gate`: compares a current result file with a baseline, point by point (matched
// by key), and fails on regressions: slower beyond max(threshold, noise of both runs), where
// noise is the spread inside each run plus the difference of the runs' SM clocks (a repeat of
// the same build on an H200 differed by 5.6% on a power-throttled GEMM whose clock fell 6.6%), an
// outcome that got worse than ok, accuracy error grown beyond its allowance, a NaN onset
// that appeared or came earlier, a training run whose peak device allocation grew or whose
// final loss rose beyond its allowance, or a point that disappeared. Improvements never fail.
#include "fp8scope/core/result_store.hpp"

#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace fp8scope::report {

using core::json;

struct GateThresholds {
  double throughput_pct = 5.0;    // slower by more than this (and more than the noise) fails
  double noise_multiplier = 1.0;  // noise = multiplier * (rel IQR of baseline + rel IQR of current)
  double clock_multiplier = 1.0;  // + multiplier * relative difference of the runs' mean SM clocks
  double accuracy_growth = 0.5;   // rel_error may grow by this fraction ...
  double accuracy_floor = 1e-4;   // ... plus this absolute amount
  // A training run's peak allocation (metrics.peak_alloc_mib) is the same bytes on every run
  // of one build (repeat runs on an H100 agree to the byte), so any growth is the code's; this
  // allows a little for scratch that moves with a deliberate change.
  double memory_pct = 1.0;
  // The mean of a training run's last 10 logged losses may rise by this much (absolute): two
  // builds whose attention kernels differ in their roundings, on an H100, ended 50-step GPT-2
  // runs (124M to 1.56B) up to 0.093 apart (train_sizes.json at eff5445 and 4fe1763).
  double loss_growth = 0.15;
  bool ignore = false;  // not judged at all
};

struct GatePolicy {
  GateThresholds defaults;
  struct Rule {
    std::string pattern;
    std::regex re;
    GateThresholds t;
  };
  std::vector<Rule> rules;  // the first rule whose pattern is found in the key applies
  const GateThresholds& for_key(const std::string& key, std::string* rule_name = nullptr) const;
  json to_json() const;
};

// Throws InputError naming the field on a malformed policy.
GatePolicy parse_policy(const json& doc);
GatePolicy load_policy(const std::string& path);

enum class Verdict { fail, improved, pass, info };

struct Judgement {
  std::string key, check, baseline, current, allowed, rule;
  double change = 0;  // relative, positive = worse (for sorting)
  Verdict verdict = Verdict::pass;
};

struct GateResult {
  std::vector<Judgement> judgements;  // worst first
  std::size_t failures = 0, improvements = 0, passes = 0;
};

// InputError when the files cannot be compared (schema or GPU differ) unless force.
void check_comparable(const core::ResultFile& baseline, const core::ResultFile& current, bool force);
GateResult run_gate(const core::ResultFile& baseline, const core::ResultFile& current, const GatePolicy& policy);
std::string render_gate(const GateResult& r, const GatePolicy& policy, std::size_t max_rows);
std::string to_string(Verdict v);

}  // namespace fp8scope::report
