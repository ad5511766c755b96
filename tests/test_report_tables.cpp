// Report tables built from records as the probes write them: a GEMM sweep's scale modes (the
// divisibility each dimension needs per mode pair, speed against per-tensor scaling on the same
// shapes, accuracy against the FP32 product on the same data), a recipe sweep's underflow by
// tensor class, and a training run's limit table (each phase beside its bound).
#include "fp8scope/report/report.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

using namespace fp8scope;
using core::Outcome;

namespace {
core::Record point(const std::string& am, const std::string& bm, long long m, long long n, long long k, const std::string& inputs, bool ok,
                   double ms, double quant_err, double under) {
  const core::json p = {{"m", m},        {"n", n},        {"k", k},          {"a", "e4m3"},
                        {"b", "e4m3"},   {"d", "bf16"},   {"layout", "TN"},  {"fast_accum", false},
                        {"a_scale", am}, {"b_scale", bm}, {"inputs", inputs}};
  core::Record r =
      core::make_record(fmt::format("{}{}{}{}{}{}", am, bm, m, n, k, inputs), p, ok ? Outcome::ok : Outcome::heuristic_unsupported,
                        ok ? "" : "cublasLtMatmulAlgoGetHeuristic: CUBLAS_STATUS_NOT_SUPPORTED");
  if (ok) {
    r.data["metrics"] = {{"ms", ms}, {"tflops", 2.0 * m * n * k / (ms * 1e-3) / 1e12}};
    r.data["timing"] = {{"median", ms}, {"q1", ms * 0.99}, {"q3", ms * 1.01}, {"rel_iqr", 0.02}};
    r.data["accuracy"] = {{"rel_error", 1e-3},          {"quant_rel_error", quant_err}, {"a_underflow", under},
                          {"b_underflow", under},       {"row_error_p50", quant_err},   {"row_error_p90", under > 0 ? 1.0 : quant_err},
                          {"col_error_p50", quant_err}, {"col_error_p90", quant_err}};
  }
  return r;
}

report::ReportInput scaling_input() {
  core::ResultFile f;
  f.meta = {{"probe", "gemm"}, {"sweep", "gemm_scaling"}};
  f.env = {{"gpu", {{"name", "NVIDIA H200"}, {"cublaslt_version", 130100}}}};
  // Per-tensor runs everywhere; 1x128 x 1x128 runs when k % 128 == 0 at 0.8x the speed; 128x128
  // on both is refused everywhere. m and n are stepped by 16 and 64 only: the rule for k is
  // decided (4112 and 4160 fail, 4224 runs), none is needed for m and n.
  for (auto [m, n, k] : {std::tuple{4096LL, 4096LL, 4096LL},
                         {4112LL, 4096LL, 4096LL},
                         {4160LL, 4096LL, 4096LL},
                         {4096LL, 4112LL, 4096LL},
                         {4096LL, 4096LL, 4112LL},
                         {4096LL, 4096LL, 4160LL},
                         {4096LL, 4096LL, 4224LL}})
    for (const char* inputs : {"normal", "outliers"}) {
      const bool outl = std::string(inputs) == "outliers";
      f.records.push_back(point("tensor", "tensor", m, n, k, inputs, true, 1.0, outl ? 0.3 : 0.03, outl ? 0.2 : 0.0));
      f.records.push_back(point("vec128", "vec128", m, n, k, inputs, k % 128 == 0, 1.25, outl ? 0.03 : 0.03, 0.0));
      f.records.push_back(point("blk128", "blk128", m, n, k, inputs, false, 0, 0, 0));
    }
  return {"gemm_scaling.json", f};
}

const core::json& table(const core::json& rep, const std::string& title_start) {
  for (auto& s : rep["sections"])
    if (s.contains("tables"))
      for (auto& t : s["tables"])
        if (t["title"].get<std::string>().rfind(title_start, 0) == 0) return t;
  static const core::json none;
  ADD_FAILURE() << "no table '" << title_start << "'";
  return none;
}
}  // namespace

TEST(ReportScaling, DivisibilitySpeedAndAccuracyPerModePair) {
  report::ReportOptions opt;
  opt.results.push_back(scaling_input());
  const core::json rep = report::build_report(opt);
  const auto& avail = table(rep, "Scale modes (A x B)");
  ASSERT_EQ(avail["rows"].size(), 3u);
  const auto& vec = avail["rows"][1];
  EXPECT_EQ(vec[0], "vec128 x vec128 noFA");
  EXPECT_EQ(vec[1], "10 of 14");
  EXPECT_EQ(vec[2], "any tested");
  EXPECT_EQ(vec[3], "any tested");
  EXPECT_EQ(vec[4], "multiple of 128");  // 4112 and 4160 refused, 4224 and 4096 ran
  EXPECT_EQ(vec[5].get<std::string>().substr(0, 5), "0.80x");
  const auto& blk = avail["rows"][2];
  EXPECT_EQ(blk[1], "0 of 14");
  EXPECT_EQ(blk[4], "none ran");
  EXPECT_NE(blk[8].get<std::string>().find("NOT_SUPPORTED"), std::string::npos);

  const auto& acc = table(rep, "Scale modes: accuracy");
  // normal: tensor, vec128; outliers: tensor, vec128 (blk128 never ran).
  ASSERT_EQ(acc["rows"].size(), 4u);
  EXPECT_EQ(acc["rows"][3][0], "outliers");
  EXPECT_EQ(acc["rows"][3][1], "vec128 x vec128 noFA");
  EXPECT_EQ(acc["rows"][3][3], "0.10x");    // a tenth of per-tensor scaling's error on the same data
  EXPECT_EQ(acc["rows"][2][6], "20.0%");    // per-tensor scaling flushed a fifth of the inputs
  EXPECT_EQ(acc["rows"][2][4], "0.3 / 1");  // whole rows lost

  // Refusals are one row per configuration and reason (14 points each here), and the speed
  // ratios are drawn after the table that lists them.
  const auto& fails = table(rep, "Points that did not run");
  ASSERT_EQ(fails["rows"].size(), 2u);  // blk128 x blk128 everywhere, vec128 x vec128 at k % 128 != 0
  EXPECT_EQ(fails["rows"][0][3], "14");
  EXPECT_EQ(fails["rows"][1][3], "4");
  for (auto& s : rep["sections"])
    if (s["title"] == "GEMM sweep 'gemm_scaling'") {
      ASSERT_EQ(s["figures"].size(), 1u);
      EXPECT_EQ(s["figures"][0]["groups"], core::json::array({"vec128 x vec128 noFA"}));
    }

  // The generic availability matrix (a column per configuration) gives way to the table above,
  // and the summary names each pair's speed.
  const std::string md = report::render_markdown(rep, report::Flavor::markdown);
  EXPECT_EQ(md.find("Availability (cell:"), std::string::npos);
  EXPECT_NE(md.find("vec128 x vec128 noFA 0.80x"), std::string::npos);
  EXPECT_NE(md.find("blk128 x blk128 noFA refused"), std::string::npos);
}

// A recipe sweep's underflow by tensor class, and the worst tensor under block scaling against
// delayed per-tensor E4M3.
TEST(ReportScaling, RecipeUnderflowByTensorClass) {
  core::ResultFile f;
  f.meta = {{"probe", "recipe"}, {"sweep", "r"}};
  auto run = [](const std::string& scaling, const core::json& taps) {
    core::Record r = core::make_record(scaling, {{"backend", "cpu"}, {"format", "e4m3"}, {"scaling", scaling}, {"seed", 1}}, Outcome::ok);
    r.data["taps"] = taps;
    return r;
  };
  f.records.push_back(run("delayed", {{"0.fc1.input", {{"underflow_rate", 0.01}}}, {"1.qkv.grad", {{"underflow_rate", 0.20}}}}));
  f.records.push_back(run("block", {{"0.fc1.input", {{"underflow_rate", 0.001}}},
                                    {"1.qkv.grad", {{"underflow_rate", 0.005}}},
                                    {"1.qkv.grad_t", {{"underflow_rate", 0.08}}}}));
  report::ReportOptions opt;
  opt.results.push_back({"r.json", f});
  const core::json rep = report::build_report(opt);
  const auto& t = table(rep, "Underflow by tensor class");
  ASSERT_EQ(t["columns"], core::json::array({"recipe", "seed", "grad", "grad_t", "input", "worst tensor"}));
  EXPECT_EQ(t["rows"][0][2], "20.0%");
  EXPECT_EQ(t["rows"][0][3], "-");
  EXPECT_EQ(t["rows"][1][5], "1.qkv.grad_t 8.0%");
  const std::string md = report::render_markdown(rep, report::Flavor::markdown);
  EXPECT_NE(md.find("Worst tensor's underflow: 8.0% under block scaling (1.qkv.grad_t) against 20.0% under delayed per-tensor E4M3 "
                    "(0.4x of it)."),
            std::string::npos);

  // Power-of-two block scales are a recipe of their own: named in the run's label and weighed
  // against delayed E4M3 apart from the FP32 scales.
  core::Record pow2 = run("block", {{"1.qkv.grad_t", {{"underflow_rate", 0.1}}}});
  pow2.params["block_scales"] = "pow2";
  f.records.push_back(pow2);
  opt.results[0].file = f;
  const core::json rep2 = report::build_report(opt);
  EXPECT_NE(std::string(table(rep2, "Underflow by tensor class")["rows"][2][0]).find(" block pow2 "), std::string::npos);
  const std::string md2 = report::render_markdown(rep2, report::Flavor::markdown);
  EXPECT_NE(md2.find("8.0% under block scaling (1.qkv.grad_t)"), std::string::npos);
  EXPECT_NE(md2.find("10.0% under block pow2 scaling (1.qkv.grad_t) against 20.0% under delayed per-tensor E4M3 (0.5x of it)."),
            std::string::npos);
}

namespace {
// A bench_kernels file holding only the 1 GiB copy (the limit table's bandwidth), at `gbs`.
core::ResultFile copy_benchmark(double gbs) {
  core::ResultFile bench;
  bench.meta = {{"probe", "benchmark"}};
  core::Record b = core::make_record("copy", core::json::object(), Outcome::ok);
  b.data["benchmark"] = {{"name", "copy/d2d_1GiB/manual_time_median"}, {"aggregate_name", "median"}, {"GB/s", gbs}};
  bench.records.push_back(b);
  return bench;
}
// A GPU training record of GPT-2 124M (B=16, T=1024, fused attention) with these parameters
// added and this time split.
core::Record gpt2_124m_run(const std::string& key, const core::json& extra, const core::json& split) {
  core::json p = {{"vocab", 50304}, {"d_model", 768},  {"n_layer", 12},       {"n_head", 12},
                  {"batch", 16},    {"seq_len", 1024}, {"attention", "flash"}};
  p.update(extra);
  core::Record r = core::make_record(key, p, Outcome::ok);
  r.data["time_split_ms"] = split;
  return r;
}
}  // namespace

// The limit table of a training run: each phase beside its bound from the rates the report's
// GEMM and benchmark files measured.
TEST(ReportLimits, EachPhaseBesideItsBound) {
  core::ResultFile gemm;
  gemm.meta = {{"probe", "gemm"}, {"sweep", "g"}};
  // qkv.fprop of GPT-2 124M at 1000 TFLOP/s; every other GEMM falls back to the fastest rate.
  core::Record g = core::make_record("g", {{"m", 2304}, {"n", 16384}, {"k", 768}, {"a", "e4m3"}, {"layout", "TN"}}, Outcome::ok);
  g.data["metrics"] = {{"tflops", 900.0}, {"best_tflops", 1000.0}, {"ms", 0.1}};
  g.data["timing"] = {{"median", 0.1}, {"q1", 0.1}, {"q3", 0.1}, {"rel_iqr", 0.0}};
  g.data["accuracy"] = {{"rel_error", 1e-3}};
  gemm.records.push_back(g);
  const core::ResultFile bench = copy_benchmark(4000.0);
  core::ResultFile train;
  train.meta = {{"probe", "train"}, {"sweep", "t"}};
  train.records.push_back(gpt2_124m_run("run", {{"precision", "fp8"}, {"fp8_linears", "qkv,proj,fc1,fc2"}},
                                        {{"matmul", 20.0}, {"layernorm", 1.6}, {"fp8_recipe", 0.04}}));
  report::ReportOptions opt;
  opt.results = {{"g.json", gemm}, {"b.json", bench}, {"t.json", train}};
  const core::json rep = report::build_report(opt);
  const auto& t = table(rep, "Limits:");
  ASSERT_EQ(t["rows"].size(), 4u);     // the three phases (in name order) and the step
  EXPECT_EQ(t["rows"][0][1], "0.04");  // fp8_recipe: no model for the recipe update, measured only
  // 12 layers x 12 GEMMs at 1000 TFLOP/s (the measured shape and the fastest rate alike):
  // 6 N P FLOPs = 6 x 16384 x 84.9M = 8.35 TFLOP -> 8.35 ms; marked * (shapes not measured);
  // plus the FP8 casts (custom variant: every input, every gradient -- fc1's with the GELU
  // backward's read -- and every weight, 4 bytes an element) at 4000 GB/s.
  const double N = 16384, C = 768, F = 3072;
  const double cast_bytes = 12 * ((N * C + N * 3 * C + C * 3 * C) * 4 + (N * C + N * C + C * C) * 4 + (N * C * 4 + N * F * 6 + C * F * 4) +
                                  (N * F + N * C + F * C) * 4);
  const double mm_bound = 6.0 * N * 12 * (768.0 * 2304 + 768 * 768 + 2 * 768 * 3072) / 1e15 * 1e3 + cast_bytes / 4e12 * 1e3;
  EXPECT_EQ(t["rows"][2][0], "matmul");
  EXPECT_EQ(t["rows"][2][1], fmt::format("20.00 / {:.2f}* ({:.1f}x)", mm_bound, 20.0 / mm_bound));
  // 24 layer LayerNorms x N x C x 2 bytes x 6 accesses (forward 2, backward 4 with the
  // residual gradient) and the final one with 5, at 4000 GB/s.
  const double ln_ms = (24 * 6 + 5) * 16384.0 * 768 * 2 / 4e12 * 1e3;
  EXPECT_EQ(t["rows"][1][0], "layernorm");
  EXPECT_EQ(t["rows"][1][1], fmt::format("1.60 / {:.2f} ({:.1f}x)", ln_ms, 1.6 / ln_ms));
}

// A training run that timed cuBLASLt's candidates (gemm_algos) measured its own GEMMs: without
// a probe_gemm file the limit table takes their rates (the same bound as a probe_gemm result of
// that shape and rate would give).
TEST(ReportLimits, TrainingRunsTrialsGiveTheGemmRates) {
  const core::ResultFile bench = copy_benchmark(4000.0);
  core::ResultFile train;
  train.meta = {{"probe", "train"}, {"sweep", "t"}};
  core::Record r = gpt2_124m_run("run", {{"precision", "fp8"}, {"fp8_linears", "qkv,proj,fc1,fc2"}, {"gemm_algos", 8}}, {{"matmul", 20.0}});
  const double ms = 2.0 * 2304 * 16384 * 768 / 1e15 * 1e3;  // qkv's fprop at 1000 TFLOP/s
  r.data["gemm_tuning"] = {{"algos", 8},
                           {"untuned_accumulating", 48},
                           {"shapes",
                            {{{"gemm", "qkv fprop"},
                              {"shape", "TN m=2304 n=16384 k=768 lda=768 ldb=768 ldd=2304 batch=1 e4m3xe4m3->bf16"},
                              {"plans", 12},
                              {"candidates", 8},
                              {"chosen", 3},
                              {"ms_first", 2 * ms},
                              {"ms_chosen", ms}}}}};
  train.records.push_back(r);
  report::ReportOptions opt;
  opt.results = {{"b.json", bench}, {"t.json", train}};
  const core::json rep = report::build_report(opt);
  const auto& t = table(rep, "Limits:");
  const std::string title = t["title"];
  EXPECT_NE(title.find("t.json (its runs' cuBLASLt trials)"), std::string::npos) << title;
  const double N = 16384, C = 768, F = 3072;
  const double cast_bytes = 12 * ((N * C + N * 3 * C + C * 3 * C) * 4 + (N * C + N * C + C * C) * 4 + (N * C * 4 + N * F * 6 + C * F * 4) +
                                  (N * F + N * C + F * C) * 4);
  const double mm_bound = 6.0 * N * 12 * (768.0 * 2304 + 768 * 768 + 2 * 768 * 3072) / 1e15 * 1e3 + cast_bytes / 4e12 * 1e3;
  ASSERT_EQ(t["rows"].size(), 2u);
  EXPECT_EQ(t["rows"][0][1], fmt::format("20.00 / {:.2f}* ({:.1f}x)", mm_bound, 20.0 / mm_bound));
}

// Without a probe_gemm result among the files (a folder of training runs and benchmarks), the
// GEMM-bound phases have no bound and the title says why; the byte-bound ones still get theirs.
TEST(ReportLimits, WithoutGemmRatesTheTitleSaysSoAndGemmPhasesHaveNoBound) {
  const core::ResultFile bench = copy_benchmark(3000.0);
  core::ResultFile train;
  train.meta = {{"probe", "train"}, {"sweep", "t"}};
  train.records.push_back(gpt2_124m_run("run", core::json::object(), {{"matmul", 30.0}, {"attention", 7.0}, {"residual", 0.5}}));
  report::ReportOptions opt;
  opt.results = {{"b.json", bench}, {"t.json", train}};
  const core::json rep = report::build_report(opt);
  const auto& t = table(rep, "Limits:");
  const std::string title = t["title"];
  EXPECT_NE(title.find("GEMMs and the fused attention: none (no probe_gemm result or training run's cuBLASLt trials among these files)"),
            std::string::npos)
      << title;
  EXPECT_EQ(title.find("0 TFLOP/s"), std::string::npos) << title;
  EXPECT_NE(title.find("3000 GB/s, b.json"), std::string::npos) << title;
  ASSERT_EQ(t["rows"].size(), 4u);  // attention, matmul, residual (as the split lists them), the step
  EXPECT_EQ(t["rows"][0][1], "7.00 / -");
  EXPECT_EQ(t["rows"][1][1], "30.00 / -");
  const double res_ms = 12 * 2 * 16384.0 * 768 * 2 * 3 / 3e12 * 1e3;
  EXPECT_EQ(t["rows"][2][1], fmt::format("0.50 / {:.2f} ({:.1f}x)", res_ms, 0.5 / res_ms));
  EXPECT_EQ(t["rows"][3][1], "37.50 / -") << "no step bound from some phases' bounds";
}

// The loss phase's bound follows the run's logits type: BF16 logits are read in half the bytes
// (a BF16 head: its BF16 gradient written, 2 bytes a logit either way).
TEST(ReportLimits, LossBoundFollowsTheLogitsType) {
  const core::ResultFile bench = copy_benchmark(4000.0);
  core::ResultFile train;
  train.meta = {{"probe", "train"}, {"sweep", "t"}};
  for (const char* logits : {"fp32", "bf16"})
    train.records.push_back(gpt2_124m_run(logits, {{"lm_head_chunk", 4096}, {"logits", logits}}, {{"loss", 1.5}}));
  report::ReportOptions opt;
  opt.results = {{"b.json", bench}, {"t.json", train}};
  const core::json rep = report::build_report(opt);
  const auto& t = table(rep, "Limits:");
  const double N = 16384, V = 50304;
  const double fp32_ms = N * V * (4 + 2) / 4e12 * 1e3, bf16_ms = N * V * (2 + 2) / 4e12 * 1e3;
  EXPECT_EQ(t["rows"][0][0], "loss");
  EXPECT_EQ(t["rows"][0][1], fmt::format("1.50 / {:.2f} ({:.1f}x)", fp32_ms, 1.5 / fp32_ms));
  EXPECT_EQ(t["rows"][0][2], fmt::format("1.50 / {:.2f} ({:.1f}x)", bf16_ms, 1.5 / bf16_ms));
}
