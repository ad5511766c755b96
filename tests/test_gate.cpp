// The regression gate: one fixture per rule, noise handling, comparability, bad input.
#include "fp8scope/core/error.hpp"
#include "fp8scope/core/result_store.hpp"
#include "fp8scope/report/gate.hpp"

#include <gtest/gtest.h>

#include <fstream>

using namespace fp8scope;
using namespace fp8scope::report;
using core::json;

namespace {
const std::string kData = FP8SCOPE_TEST_DATA "/gate/";
core::ResultFile baseline() { return core::read_results(kData + "baseline.json"); }
core::Record& rec(core::ResultFile& f, const std::string& key) {
  for (auto& r : f.records)
    if (r.key == key) return r;
  throw std::runtime_error("no " + key);
}
std::vector<Judgement> failures(const GateResult& r) {
  std::vector<Judgement> out;
  for (auto& j : r.judgements)
    if (j.verdict == Verdict::fail) out.push_back(j);
  return out;
}
GatePolicy policy(double pct) {
  GatePolicy p;
  p.defaults.throughput_pct = pct;
  return p;
}
}  // namespace

TEST(Gate, IdenticalFilesPass) {
  GateResult r = run_gate(baseline(), baseline(), GatePolicy{});
  EXPECT_EQ(r.failures, 0u);
  EXPECT_EQ(r.improvements, 0u);
  EXPECT_GT(r.passes, 0u);
}

TEST(Gate, SmallChangeInsideNoisePasses) {
  auto cur = baseline();
  rec(cur, "gemm/a").data["timing"]["median"] = 1.03;     // 3% slower; both runs have 2.5% IQR
  GateResult r = run_gate(baseline(), cur, policy(2.0));  // threshold below the change: noise decides
  EXPECT_EQ(r.failures, 0u);
}

TEST(Gate, LargeDropOutsideNoiseFails) {
  GateResult r = run_gate(baseline(), core::read_results(kData + "slower.json"), GatePolicy{});
  auto f = failures(r);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].key, "gemm/b");
  EXPECT_EQ(f[0].check, "speed");
  EXPECT_NEAR(f[0].change, 0.15, 1e-9);
}

TEST(Gate, ClockDifferenceCountsAsNoise) {
  // Measured on an H200: the same build ran a power-throttled GEMM 5.6% slower at a 6.6% lower
  // SM clock. That is not a regression; the same slowdown at equal clocks is.
  auto base = baseline(), cur = baseline();
  rec(base, "gemm/b").data["timing"]["mean_sm_clock_mhz"] = 1860.0;
  rec(cur, "gemm/b").data["timing"]["median"] = 2.0 * 1.056;
  rec(cur, "gemm/b").data["timing"]["mean_sm_clock_mhz"] = 1738.0;
  EXPECT_EQ(run_gate(base, cur, GatePolicy{}).failures, 0u);
  rec(cur, "gemm/b").data["timing"]["mean_sm_clock_mhz"] = 1860.0;
  EXPECT_EQ(run_gate(base, cur, GatePolicy{}).failures, 1u);
  GatePolicy strict;
  strict.defaults.clock_multiplier = 0;
  rec(cur, "gemm/b").data["timing"]["mean_sm_clock_mhz"] = 1738.0;
  EXPECT_EQ(run_gate(base, cur, strict).failures, 1u);
}

TEST(Gate, ThroughputMetricsHigherIsBetter) {
  auto base = baseline(), cur = baseline();
  rec(base, "train/y").data["metrics"] = {{"tokens_per_s", 100000.0}};
  rec(cur, "train/y").data["metrics"] = {{"tokens_per_s", 80000.0}};
  auto f = failures(run_gate(base, cur, GatePolicy{}));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_NEAR(f[0].change, 0.25, 1e-9);
}

TEST(Gate, NewRunRejectedFails) {
  auto cur = baseline();
  rec(cur, "gemm/c").outcome = core::Outcome::run_rejected;
  auto f = failures(run_gate(baseline(), cur, GatePolicy{}));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].check, "outcome");
  EXPECT_EQ(f[0].current, "run_rejected");
}

TEST(Gate, EarlierOrNewNanOnsetFails) {
  auto cur = baseline();
  rec(cur, "train/x").data["nan_onset"]["step"] = 200;
  rec(cur, "train/y").data["nan_onset"] = {{"step", 900}, {"layer", 2}, {"tensor", "fc1_out"}, {"pass", "forward"}};
  auto f = failures(run_gate(baseline(), cur, GatePolicy{}));
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].check, "nan_onset");
  EXPECT_EQ(f[1].check, "nan_onset");
  // A later onset, or none, is no failure.
  auto later = baseline();
  rec(later, "train/x").data["nan_onset"]["step"] = 600;
  EXPECT_EQ(run_gate(baseline(), later, GatePolicy{}).failures, 0u);
}

TEST(Gate, AccuracyGrowthFails) {
  auto cur = baseline();
  rec(cur, "gemm/a").data["accuracy"]["rel_error"] = 0.01;  // 5x the baseline's 0.002
  auto f = failures(run_gate(baseline(), cur, GatePolicy{}));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].check, "accuracy");
}

// A scale-mode point's error against the FP32 product is gated on its own: a library whose
// block-scaled GEMM loses accuracy fails even when its error against its own inputs holds.
TEST(Gate, ErrorAgainstTheFp32ProductGrowthFails) {
  auto base = baseline(), cur = baseline();
  rec(base, "gemm/a").data["accuracy"]["quant_rel_error"] = 0.036;
  rec(base, "gemm/a").data["accuracy"]["row_error_p90"] = 0.062;
  rec(cur, "gemm/a").data["accuracy"]["quant_rel_error"] = 0.037;  // within growth
  rec(cur, "gemm/a").data["accuracy"]["row_error_p90"] = 0.13;     // the rows per-tensor scaling loses
  auto f = failures(run_gate(base, cur, GatePolicy{}));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].check, "rows p90");
  EXPECT_EQ(f[0].key, "gemm/a");
}

// A training run's peak allocation is the same bytes on every run of one build: growth beyond
// memory_pct fails, a saving beyond it is an improvement, and a rule can widen the allowance.
TEST(Gate, PeakMemoryGrowthFails) {
  auto base = baseline();
  rec(base, "train/y").data["metrics"] = {{"peak_alloc_mib", 8265.0}, {"peak_device_mib", 8805.0}};
  auto with_peak = [&](double mib, double device_mib) {
    auto cur = baseline();
    rec(cur, "train/y").data["metrics"] = {{"peak_alloc_mib", mib}, {"peak_device_mib", device_mib}};
    return cur;
  };
  auto f = failures(run_gate(base, with_peak(8400.0, 8805.0), GatePolicy{}));  // +1.6 %
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].check, "memory");
  EXPECT_EQ(f[0].baseline, "8265 MiB");
  EXPECT_EQ(f[0].current, "8400 MiB");
  EXPECT_NEAR(f[0].change, 8400.0 / 8265.0 - 1, 1e-12);
  // The context's share (cudaMemGetInfo) moves with the driver: not judged.
  EXPECT_EQ(run_gate(base, with_peak(8300.0, 9900.0), GatePolicy{}).failures, 0u);  // +0.4 %
  const GateResult saved = run_gate(base, with_peak(6965.0, 7509.0), GatePolicy{});
  EXPECT_EQ(saved.failures, 0u);
  EXPECT_EQ(saved.improvements, 1u);
  EXPECT_EQ(saved.judgements.front().check, "memory");
  GatePolicy wide = parse_policy(json::parse(R"({"rules":[{"match":"^train/","memory_pct":2}]})"));
  EXPECT_EQ(run_gate(base, with_peak(8400.0, 8805.0), wide).failures, 0u);
  // A run that failed is judged by its outcome, not by what it allocated.
  auto oom = with_peak(9000.0, 9000.0);
  rec(oom, "train/y").outcome = core::Outcome::oom;
  f = failures(run_gate(base, oom, GatePolicy{}));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].check, "outcome");
}

// Where a training run ends: the mean of its last 10 logged losses may rise by loss_growth.
TEST(Gate, FinalLossRiseFails) {
  auto losses = [](double last10) {
    json l = json::array();
    for (int i = 0; i < 20; ++i) l.push_back(i < 10 ? 10.0 - i : last10);
    return l;
  };
  auto base = baseline(), cur = baseline();
  rec(base, "train/y").data["train"] = {{"loss", losses(3.9)}};
  rec(cur, "train/y").data["train"] = {{"loss", losses(4.1)}};  // +0.2
  auto f = failures(run_gate(base, cur, GatePolicy{}));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].check, "loss");
  EXPECT_EQ(f[0].baseline, "3.9000");
  EXPECT_EQ(f[0].current, "4.1000");
  EXPECT_NE(render_gate(run_gate(base, cur, GatePolicy{}), GatePolicy{}, 10).find("+0.200"), std::string::npos);
  rec(cur, "train/y").data["train"]["loss"] = losses(4.0);  // +0.1: inside the allowance
  EXPECT_EQ(run_gate(base, cur, GatePolicy{}).failures, 0u);
  // Only the last 10 count: a different start with the same end passes.
  json early = losses(3.9);
  early[0] = 11.5;
  rec(cur, "train/y").data["train"]["loss"] = early;
  EXPECT_EQ(run_gate(base, cur, GatePolicy{}).failures, 0u);
  // A non-finite loss in the window is the NaN onset's to judge, not the loss's.
  json nan = losses(3.9);
  nan[19] = nullptr;
  rec(cur, "train/y").data["train"]["loss"] = nan;
  for (auto& j : run_gate(base, cur, GatePolicy{}).judgements) EXPECT_NE(j.check, "loss");
  // A lower end beyond the allowance is an improvement.
  rec(cur, "train/y").data["train"]["loss"] = losses(3.6);
  EXPECT_EQ(run_gate(base, cur, GatePolicy{}).improvements, 1u);
  GatePolicy strict = parse_policy(json::parse(R"({"defaults":{"loss_growth":0.05}})"));
  rec(cur, "train/y").data["train"]["loss"] = losses(4.0);
  EXPECT_EQ(run_gate(base, cur, strict).failures, 1u);
}

TEST(Gate, MissingRecordFails) {
  auto cur = baseline();
  cur.records.erase(cur.records.begin() + 2);
  auto f = failures(run_gate(baseline(), cur, GatePolicy{}));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].current, "missing");
}

TEST(Gate, PointsRecordedBeforeANewAxisMatchByParameters) {
  // The probe gained an axis: every current key differs, every point is still found.
  auto cur = baseline();
  for (auto& r : cur.records) {
    r.params["new_axis"] = "default";
    r.key += ",new_axis=default";
  }
  const auto res = run_gate(baseline(), cur, GatePolicy{});
  EXPECT_TRUE(failures(res).empty());
  for (auto& j : res.judgements) EXPECT_NE(j.current, "missing") << j.key;
  // Two current records that both carry the baseline's parameters: ambiguous, so missing.
  auto two = cur;
  auto extra = two.records.front();
  extra.params["new_axis"] = "other";
  extra.key += "x";
  two.records.push_back(extra);
  auto f = failures(run_gate(baseline(), two, GatePolicy{}));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].current, "missing");
}

TEST(Gate, ImprovementsNeverFail) {
  auto cur = baseline();
  rec(cur, "gemm/b").data["timing"]["median"] = 1.5;
  rec(cur, "train/x").data.erase("nan_onset");
  rec(cur, "gemm/a").data["accuracy"]["rel_error"] = 0.0001;
  auto base = baseline();
  rec(base, "gemm/c").outcome = core::Outcome::run_rejected;  // and c now runs
  GateResult r = run_gate(base, cur, GatePolicy{});
  EXPECT_EQ(r.failures, 0u);
  EXPECT_EQ(r.improvements, 3u);
  EXPECT_EQ(r.judgements.front().verdict, Verdict::improved);
}

TEST(Gate, WorstFirst) {
  auto cur = core::read_results(kData + "slower.json");
  rec(cur, "gemm/c").outcome = core::Outcome::oom;
  GateResult r = run_gate(baseline(), cur, GatePolicy{});
  ASSERT_GE(r.judgements.size(), 2u);
  EXPECT_EQ(r.judgements[0].check, "outcome");
  EXPECT_EQ(r.judgements[1].check, "speed");
}

TEST(Gate, PolicyRulesByKeyPattern) {
  GatePolicy p = parse_policy(json::parse(R"({"defaults":{"throughput_pct":5},
      "rules":[{"match":"^gemm/b$","throughput_pct":20},{"match":"train/","ignore":true}]})"));
  EXPECT_EQ(run_gate(baseline(), core::read_results(kData + "slower.json"), p).failures, 0u);  // 15% < 20%
  std::string rule;
  EXPECT_EQ(p.for_key("gemm/a", &rule).throughput_pct, 5);
  EXPECT_EQ(rule, "defaults");
  EXPECT_TRUE(p.for_key("train/x").ignore);
  auto err = [](const char* text) {
    try {
      parse_policy(json::parse(text));
    } catch (const core::InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(err(R"({"defaults":{"throughput":5}})"),
            "defaults.throughput: unknown key; allowed: throughput_pct, noise_multiplier, clock_multiplier, accuracy_growth, "
            "accuracy_floor, memory_pct, loss_growth, ignore");
  EXPECT_EQ(err(R"({"rules":[{"throughput_pct":5}]})"), "rules[0]: needs \"match\": a regular expression searched in the point key");
  EXPECT_EQ(err(R"({"rules":[{"match":"(","throughput_pct":5}]})").rfind("rules[0].match: not a valid regular expression: ", 0), 0u);
  EXPECT_EQ(err(R"({"defaults":{"throughput_pct":-1}})"), "defaults.throughput_pct: must be a number >= 0");
}

TEST(Gate, DifferentGpuIsRefusedUnlessForced) {
  auto other = core::read_results(kData + "other_gpu.json");
  EXPECT_THROW(check_comparable(baseline(), other, false), core::InputError);
  EXPECT_NO_THROW(check_comparable(baseline(), other, true));
  auto v2 = baseline();
  v2.schema_version = 2;
  EXPECT_THROW(check_comparable(baseline(), v2, false), core::InputError);
  core::ResultFile empty = baseline();
  empty.records.clear();
  EXPECT_THROW(check_comparable(baseline(), empty, true), core::InputError);
}

// Google Benchmark results gate in their own time unit (bench_kernels reports microseconds).
TEST(Gate, BenchmarkTimesKeepTheirUnit) {
  const std::string dir = ::testing::TempDir();
  auto write = [&](const std::string& name, double us) {
    const std::string path = dir + "/" + name;
    std::ofstream(path) << R"({"context":{},"benchmarks":[{"name":"k/manual_time","run_name":"k/manual_time","real_time":)" << us
                        << R"(,"time_unit":"us"}]})";
    return core::read_results(path);
  };
  const GateResult r = run_gate(write("base_us.json", 100.0), write("cur_us.json", 120.0), GatePolicy{});
  ASSERT_EQ(failures(r).size(), 1u);
  const std::string text = render_gate(r, GatePolicy{}, 10);
  EXPECT_NE(text.find("100 us"), std::string::npos) << text;
  EXPECT_NE(text.find("120 us"), std::string::npos) << text;
  EXPECT_EQ(text.find(" ms "), std::string::npos) << text;
}

// Which cuBLASLt algorithm ran is not judged, but a changed one is said beside the checks: a
// probe_gemm point's heuristic's first (another cuBLASLt may pick another) and a training run's
// kept algorithm per tuned shape (gemm_algos).
TEST(Gate, ChangedCublasLtAlgorithmIsInfo) {
  auto algo = [](int tile, int splitk) {
    return json{{"id", 66}, {"tile", tile}, {"stages", 36}, {"splitk", splitk}, {"cluster", -1}, {"swizzle", 0}, {"custom", 7}};
  };
  auto base = baseline(), cur = baseline();
  rec(base, "gemm/a").data["algorithms"] = json::array({algo(209, 1), algo(24, 1)});
  rec(cur, "gemm/a").data["algorithms"] = json::array({algo(24, 1), algo(209, 1)});
  rec(base, "gemm/b").data["algorithms"] = json::array({algo(20, 2)});
  rec(cur, "gemm/b").data["algorithms"] = json::array({algo(20, 2)});  // unchanged: no row
  auto tuning = [&](int tile) {
    return json{{"algos", 8},
                {"shapes", json::array({{{"gemm", "qkv fprop"}, {"shape", "TN m=2304 n=16384 k=768"}, {"algo", algo(tile, 1)}}})}};
  };
  rec(base, "train/y").data["gemm_tuning"] = tuning(20);
  rec(cur, "train/y").data["gemm_tuning"] = tuning(21);
  const GateResult r = run_gate(base, cur, GatePolicy{});
  EXPECT_EQ(r.failures, 0u);
  std::vector<Judgement> rows;
  for (auto& j : r.judgements)
    if (j.check == "algorithm") rows.push_back(j);
  ASSERT_EQ(rows.size(), 2u);
  for (auto& j : rows) EXPECT_EQ(j.verdict, Verdict::info);
  const std::string text = render_gate(r, GatePolicy{}, 100);
  EXPECT_NE(text.find("66:209:36:1:-1:0:7"), std::string::npos) << text;
  EXPECT_NE(text.find("id:tile:stages:splitk:cluster:swizzle:custom of the heuristic's first"), std::string::npos) << text;
  EXPECT_NE(text.find("of qkv fprop (TN m=2304 n=16384 k=768)"), std::string::npos) << text;
}

namespace {
// Exactly one judgement of `check`, an info row from `baseline` to `current`.
void expect_one_info_row(const GateResult& r, const std::string& check, const std::string& baseline, const std::string& current) {
  int rows = 0;
  for (auto& j : r.judgements)
    if (j.check == check) {
      ++rows;
      EXPECT_EQ(j.verdict, Verdict::info) << check;
      EXPECT_EQ(j.baseline, baseline) << check;
      EXPECT_EQ(j.current, current) << check;
    }
  EXPECT_EQ(rows, 1) << check;
}
}  // namespace

// Where the residual stream's adds ran (the GEMMs' epilogue, or the kernel after cuBLASLt
// refused it) is said when it changes, not judged; records without the field say nothing.
TEST(Gate, ChangedResidualAddIsInfo) {
  auto base = baseline(), cur = baseline();
  rec(base, "train/y").data["residual_add"] = "gemm_epilogue";
  rec(cur, "train/y").data["residual_add"] = {{"ran", "kernel"}, {"refused", "no algorithm"}};
  rec(cur, "train/x").data["residual_add"] = "gemm_epilogue";  // (its baseline predates the field)
  const GateResult r = run_gate(base, cur, GatePolicy{});
  EXPECT_EQ(r.failures, 0u);
  expect_one_info_row(r, "residual_add", "gemm_epilogue", "kernel (refused)");
}

// gelu_cast gemm_epilogue: where the GELU's gradient ran (cuBLASLt's DGELU_BGRAD, or the GELU
// kernels after a refusal) is said when it changes, not judged; the forward unchanged, no row.
TEST(Gate, ChangedGeluBackwardIsInfo) {
  auto base = baseline(), cur = baseline();
  rec(base, "train/y").data["gelu_epilogue"] = {{"forward", "GELU_AUX_BIAS"}, {"backward", "DGELU_BGRAD"}};
  rec(cur, "train/y").data["gelu_epilogue"] = {
      {"forward", "GELU_AUX_BIAS"}, {"backward", "GELU kernel"}, {"backward_refused", "no algorithm"}};
  const GateResult r = run_gate(base, cur, GatePolicy{});
  EXPECT_EQ(r.failures, 0u);
  expect_one_info_row(r, "gelu_backward", "DGELU_BGRAD", "GELU kernel");
}
