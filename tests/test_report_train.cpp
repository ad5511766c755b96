// The report of training runs: FP8 against its BF16 twin, data-parallel scaling, figures, how
// a PyTorch peer joins the run it was measured beside, and where the memory goes.
#include "fp8scope/core/record.hpp"
#include "fp8scope/model/fp8_plan.hpp"
#include "fp8scope/model/gpt_config.hpp"
#include "fp8scope/report/report.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>

using namespace fp8scope;
// The report of a data-parallel run: the scaling column against the 1-GPU run of the same
// point and a table of the ranks.
TEST(TrainReport, DataParallelScalingAndRanks) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", "dp"}};
  auto rec = [](int ranks, double tps) {
    core::json p = {{"backend", "gpu"}, {"d_model", 768}, {"n_layer", 12},  {"n_head", 12},       {"seq_len", 1024},
                    {"batch", 16},      {"vocab", 50304}, {"ranks", ranks}, {"precision", "fp8"}, {"reduce_amax", true}};
    core::Record r = core::make_record(fmt::format("ranks={}", ranks), p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", tps}, {"ms_per_step", 50.0}};
    if (ranks > 1)
      r.data["data_parallel"] = {
          {"ranks", ranks},
          {"per_rank",
           core::json::array(
               {{{"rank", 0}, {"device", 0}, {"loss_last", 2.1}, {"scales_differing_from_rank0", 0}, {"scales_compared", 40}},
                {{"rank", 1}, {"device", 1}, {"loss_last", 2.2}, {"scales_differing_from_rank0", 0}, {"scales_compared", 40}}})}};
    return r;
  };
  f.records = {rec(1, 100000.0), rec(2, 190000.0)};
  report::ReportOptions opt;
  opt.results.push_back({"dp.json", f});
  const std::string md = report::render_markdown(report::build_report(opt), report::Flavor::markdown);
  EXPECT_NE(md.find("95.0% of 2x"), std::string::npos) << md;
  EXPECT_NE(md.find("Data-parallel ranks"), std::string::npos);
  EXPECT_NE(md.find("0 of 40"), std::string::npos);
}

// "vs BF16" divides by the BF16 run with the same GPU count and attention kernels, not by the
// first BF16 run of the file.
TEST(TrainReport, Fp8AgainstTheBf16RunOfTheSameSetup) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", "twins"}};
  auto rec = [](const char* precision, const char* attention, int ranks, double tps) {
    core::json p = {{"backend", "gpu"}, {"d_model", 768}, {"n_layer", 12},  {"n_head", 12},           {"seq_len", 1024},
                    {"batch", 16},      {"vocab", 50304}, {"ranks", ranks}, {"precision", precision}, {"attention", attention}};
    core::Record r = core::make_record(fmt::format("{}-{}-{}", precision, attention, ranks), p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", tps}, {"ms_per_step", 50.0}};
    return r;
  };
  f.records = {rec("bf16", "materialized", 1, 100000.0), rec("bf16", "flash", 1, 125000.0), rec("bf16", "flash", 2, 240000.0),
               rec("fp8", "flash", 1, 150000.0), rec("fp8", "flash", 2, 264000.0)};
  f.records[1].data["time_split_ms"] = {{"matmul", 15.0}, {"gelu", 1.5}};
  f.records[3].data["time_split_ms"] = {{"matmul", 12.5}, {"gelu", 2.5}};
  f.records[3].data["metrics"]["ms_per_step"] = 48.0;
  report::ReportOptions opt;
  opt.results.push_back({"twins.json", f});
  const std::string md = report::render_markdown(report::build_report(opt), report::Flavor::markdown);
  EXPECT_NE(md.find("1.200x"), std::string::npos) << md;  // 150000 / 125000
  EXPECT_NE(md.find("1.100x"), std::string::npos) << md;  // 264000 / 240000
  EXPECT_EQ(md.find("1.500x"), std::string::npos) << md;  // not against the materialised run
  // Per layer type: FP8 minus the same BF16 twin.
  EXPECT_NE(md.find("FP8 minus its BF16 twin"), std::string::npos) << md;
  EXPECT_NE(md.find("| +1.00 | -2.50 | -2.00 |"), std::string::npos) << md;  // gelu, matmul, step
}

// The LM head's setup is part of the twin: an FP8 run in chunks of 4096 with BF16 logits is
// compared with the BF16 run of that head, not with the whole-batch one.
TEST(TrainReport, Fp8TwinHasTheSameLmHead) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", "heads"}};
  auto rec = [](const char* precision, int chunk, const char* logits, double tps) {
    core::json p = {{"backend", "gpu"}, {"d_model", 768}, {"n_layer", 12},          {"n_head", 12},         {"seq_len", 1024},
                    {"batch", 16},      {"vocab", 50304}, {"precision", precision}, {"attention", "flash"}, {"lm_head_chunk", chunk},
                    {"logits", logits}};
    core::Record r = core::make_record(fmt::format("{}-{}-{}", precision, chunk, logits), p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", tps}, {"ms_per_step", 50.0}};
    return r;
  };
  f.records = {rec("bf16", 0, "fp32", 100000.0), rec("bf16", 4096, "bf16", 110000.0), rec("fp8", 4096, "bf16", 143000.0)};
  report::ReportOptions opt;
  opt.results.push_back({"heads.json", f});
  const std::string md = report::render_markdown(report::build_report(opt), report::Flavor::markdown);
  EXPECT_NE(md.find("1.300x"), std::string::npos) << md;          // 143000 / 110000
  EXPECT_EQ(md.find("1.430x"), std::string::npos) << md;          // not against the whole-batch head
  EXPECT_NE(md.find("head 4096/bf16"), std::string::npos) << md;  // the figures' groups name the head
}

// How the step is launched is part of the twin: an FP8 step replayed from a CUDA graph is
// compared with the BF16 step replayed from one, and records made before the axis count as
// launched kernel by kernel.
TEST(TrainReport, Fp8TwinIsLaunchedTheSameWay) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", "graphs"}};
  auto rec = [](const char* precision, std::optional<bool> graph, double tps) {
    core::json p = {{"backend", "gpu"}, {"d_model", 768}, {"n_layer", 12},  {"n_head", 12},
                    {"seq_len", 1024},  {"batch", 16},    {"vocab", 50304}, {"precision", precision}};
    if (graph) p["cuda_graph"] = *graph;
    core::Record r = core::make_record(fmt::format("{}-{}", precision, graph ? int(*graph) : -1), p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", tps}, {"ms_per_step", 50.0}};
    return r;
  };
  f.records = {rec("bf16", std::nullopt, 100000.0), rec("bf16", true, 104000.0), rec("fp8", false, 120000.0), rec("fp8", true, 130000.0)};
  report::ReportOptions opt;
  opt.results.push_back({"graphs.json", f});
  const std::string md = report::render_markdown(report::build_report(opt), report::Flavor::markdown);
  EXPECT_NE(md.find("1.250x"), std::string::npos) << md;  // 130000 / 104000
  EXPECT_NE(md.find("1.200x"), std::string::npos) << md;  // 120000 / 100000 (no axis: uncaptured)
  EXPECT_EQ(md.find("1.300x"), std::string::npos) << md;  // not the graph against the uncaptured step
}

// The cuBLASLt algorithm choice is part of the twin (an FP8 step with tuned GEMMs against the
// BF16 step with tuned GEMMs), and the tuning tables say what the trials found: per run the
// shapes' summed GEMM time with either choice, and each shape another candidate won.
TEST(TrainReport, GemmTuningTablesAndTwins) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", "gemm_algos"}};
  auto rec = [](const char* precision, int algos, double tps) {
    core::json p = {{"backend", "gpu"}, {"d_model", 768}, {"n_layer", 12},          {"n_head", 12},       {"seq_len", 1024},
                    {"batch", 16},      {"vocab", 50304}, {"precision", precision}, {"gemm_algos", algos}};
    core::Record r = core::make_record(fmt::format("{}-{}", precision, algos), p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", tps}, {"ms_per_step", 50.0}};
    if (algos > 1)
      r.data["gemm_tuning"] = {
          {"algos", algos},
          {"untuned_accumulating", 48},
          {"shapes",
           {{{"gemm", "qkv fprop"},
             {"shape", "TN m=2304 n=16384 k=768"},
             {"plans", 12},
             {"candidates", 8},
             {"chosen", 6},
             {"ms_first", 0.060},
             {"ms_chosen", 0.050},
             {"algo", {{"id", 66}, {"tile", 24}, {"stages", 36}, {"splitk", 1}, {"cluster", -1}, {"swizzle", 0}, {"custom", 7}}}},
            {{"gemm", "proj dgrad"},
             {"shape", "TN m=768 n=16384 k=768"},
             {"plans", 12},
             {"candidates", 8},
             {"chosen", 0},
             {"ms_first", 0.020},
             {"ms_chosen", 0.020}}}}};
    return r;
  };
  f.records = {rec("bf16", 1, 100000.0), rec("bf16", 8, 110000.0), rec("fp8", 1, 120000.0), rec("fp8", 8, 143000.0)};
  report::ReportOptions opt;
  opt.results.push_back({"gemm_algos.json", f});
  const std::string md = report::render_markdown(report::build_report(opt), report::Flavor::markdown);
  EXPECT_NE(md.find("1.300x"), std::string::npos) << md;  // 143000 / 110000: tuned against tuned
  EXPECT_NE(md.find("1.200x"), std::string::npos) << md;  // 120000 / 100000
  EXPECT_EQ(md.find("1.430x"), std::string::npos) << md;  // not tuned FP8 against the untuned BF16
  EXPECT_NE(md.find("cuBLASLt algorithms timed per GEMM shape"), std::string::npos) << md;
  // Each shape once: 0.060 + 0.020 = 0.080 ms with the first, 0.050 + 0.020 = 0.070 kept: 1.143x.
  EXPECT_NE(md.find("| 0.080 | 0.070 | 1.143x |"), std::string::npos) << md;
  EXPECT_NE(md.find("| qkv fprop | TN m=2304 n=16384 k=768 | 12 | #6 of 8 | 66:24:36:1:-1:0:7 | 0.0600 | 0.0500 | 1.200x |"),
            std::string::npos)
      << md;
  EXPECT_EQ(md.find("| proj dgrad |"), std::string::npos) << md;  // the heuristic's first won: no detail row
  // The summary names each setup's choice where the file varies it.
  EXPECT_NE(md.find("materialized gemm_algos 8): FP8"), std::string::npos) << md;
  EXPECT_NE(md.find("materialized gemm_algos 1): FP8"), std::string::npos) << md;
}

// gelu_cast gemm_epilogue: the report says where each run's GELU and its gradient ran, and
// what cuBLASLt said where one fell back to the GELU kernels; an FP8 run is paired with
// the BF16 run of the same gelu_cast; each run with the epilogues stands beside its twin with
// the GELU kernels.
TEST(TrainReport, GeluEpilogueTableSaysWhereTheGeluRan) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", "gelu"}};
  auto rec = [](const char* precision, const char* cast, double tps, const core::json& where, double gelu_ms = 2.0) {
    core::json p = {{"backend", "gpu"}, {"d_model", 768}, {"n_layer", 12},          {"n_head", 12},     {"seq_len", 1024},
                    {"batch", 16},      {"vocab", 50304}, {"precision", precision}, {"gelu_cast", cast}};
    core::Record r = core::make_record(fmt::format("{}-{}", precision, cast), p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", tps}, {"ms_per_step", 5e6 / tps}};
    r.data["time_split_ms"] = {{"gelu", gelu_ms}, {"matmul", 20.0}};
    if (!where.is_null()) r.data["gelu_epilogue"] = where;
    return r;
  };
  f.records = {
      rec("bf16", "kernel", 100000.0, nullptr),
      rec("bf16", "gemm_epilogue", 110000.0, {{"forward", "GELU_AUX_BIAS"}, {"backward", "DGELU_BGRAD"}}, 0.0),
      rec("fp8", "kernel", 120000.0, nullptr),
      rec("fp8", "gemm_epilogue", 143000.0,
          {{"forward", "GELU_AUX_BIAS"}, {"backward", "GELU kernel"}, {"backward_refused", "fc2 dgrad GEMM: no cuBLASLt algorithm"}})};
  report::ReportOptions opt;
  opt.results.push_back({"gelu.json", f});
  const std::string md = report::render_markdown(report::build_report(opt), report::Flavor::markdown);
  EXPECT_NE(md.find("The GELU in cuBLASLt's epilogues"), std::string::npos) << md;
  EXPECT_NE(
      md.find("gelu_cast=gemm_epilogue precision=fp8 | GELU_AUX_BIAS | GELU kernel | backward: fc2 dgrad GEMM: no cuBLASLt algorithm |"),
      std::string::npos)
      << md;
  EXPECT_NE(md.find("gelu_cast=gemm_epilogue precision=bf16 | GELU_AUX_BIAS | DGELU_BGRAD | - |"), std::string::npos) << md;
  EXPECT_NE(md.find("1.300x"), std::string::npos) << md;  // 143000 / 110000: epilogues against epilogues
  EXPECT_NE(md.find("1.200x"), std::string::npos) << md;  // 120000 / 100000
  EXPECT_EQ(md.find("1.430x"), std::string::npos) << md;  // not FP8 with the epilogues against BF16 without
  // Each run with the epilogues against its twin with the GELU kernels: 50.00 -> 45.45 ms.
  EXPECT_NE(md.find("precision=bf16 | 50.00 -> 45.45 | 1.100x | 2.00 -> 0.00 | 20.00 -> 20.00 |"), std::string::npos) << md;
  EXPECT_NE(md.find("precision=fp8 | 41.67 -> 34.97 | 1.192x |"), std::string::npos) << md;
  // An FP8 run whose epilogues cuBLASLt refused both ran the GELU kernels: its twin is the BF16
  // run with the GELU kernels, not the one with the epilogues.
  f.records.push_back(
      rec("fp8", "gemm_epilogue", 126000.0,
          {{"forward", "GELU kernel"}, {"backward", "GELU kernel"}, {"forward_refused", "no"}, {"backward_refused", "no"}}));
  f.records.back().key = "fp8-refused";
  report::ReportOptions again;
  again.results.push_back({"gelu.json", f});
  const std::string md2 = report::render_markdown(report::build_report(again), report::Flavor::markdown);
  EXPECT_NE(md2.find("1.260x"), std::string::npos) << md2;  // 126000 / 100000
  EXPECT_EQ(md2.find("1.145x"), std::string::npos) << md2;  // not against the BF16 epilogues' 110000
}

// Where FP8 pays off has a row per setup; two setups of one model say how they differ.
TEST(TrainReport, WhereFp8PaysOffNamesWhatSetsTwoRowsOfOneModelApart) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", "setups"}};
  auto rec = [](int d, const char* precision, int algos, double tps) {
    core::json p = {{"backend", "gpu"}, {"d_model", d},   {"n_layer", 12},          {"n_head", d / 64},   {"seq_len", 1024},
                    {"batch", 16},      {"vocab", 50304}, {"precision", precision}, {"gemm_algos", algos}};
    core::Record r = core::make_record(fmt::format("{}-{}-{}", d, precision, algos), p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", tps}, {"ms_per_step", 50.0}, {"params", 1e8}};
    return r;
  };
  for (int d : {768, 1024})
    for (int algos : {1, 8}) f.records.push_back(rec(d, "bf16", algos, 100000.0)), f.records.push_back(rec(d, "fp8", algos, 120000.0));
  report::ReportOptions opt;
  opt.results.push_back({"setups.json", f});
  const std::string md = report::render_markdown(report::build_report(opt), report::Flavor::markdown);
  EXPECT_NE(md.find("Where FP8 pays off"), std::string::npos) << md;
  EXPECT_NE(md.find("| d=768 L=12 H=12 gemm_algos 1 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| d=1024 L=12 H=16 gemm_algos 8 |"), std::string::npos) << md;
}

// How the weight gradients are written is part of the twin: an FP8 run with wgrad write stands
// against the BF16 run with wgrad write, a record made before the axis (no wgrad) against one
// with wgrad add.
TEST(TrainReport, WgradIsPartOfTheTwin) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", "wgrad"}};
  auto rec = [](const char* precision, const char* wgrad, double tps) {
    core::json p = {{"backend", "gpu"}, {"d_model", 768}, {"n_layer", 12},  {"n_head", 12},
                    {"seq_len", 1024},  {"batch", 16},    {"vocab", 50304}, {"precision", precision}};
    if (*wgrad) p["wgrad"] = wgrad;
    core::Record r = core::make_record(fmt::format("{}-{}", precision, wgrad), p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", tps}, {"ms_per_step", 50.0}};
    return r;
  };
  f.records = {rec("bf16", "write", 110000.0), rec("bf16", "add", 100000.0), rec("fp8", "write", 143000.0), rec("fp8", "", 120000.0)};
  report::ReportOptions opt;
  opt.results.push_back({"wgrad.json", f});
  const std::string md = report::render_markdown(report::build_report(opt), report::Flavor::markdown);
  EXPECT_NE(md.find("1.300x"), std::string::npos) << md;  // 143000 / 110000: write against write
  EXPECT_NE(md.find("1.200x"), std::string::npos) << md;  // 120000 / 100000: no axis (add) against add
  EXPECT_EQ(md.find("1.430x"), std::string::npos) << md;  // not write against add
}

// The fused attention's kernels are part of the twin: an FP8 step on the TMA kernels is
// compared with the BF16 step on them, and records made before the axis count as automatic.
TEST(TrainReport, Fp8TwinRunsTheSameAttentionKernels) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", "kernels"}};
  auto rec = [](const char* precision, std::optional<const char*> kernel, double tps) {
    core::json p = {{"backend", "gpu"}, {"d_model", 1280}, {"n_layer", 36},        {"n_head", 20},          {"seq_len", 1024},
                    {"batch", 16},      {"vocab", 50304},  {"attention", "flash"}, {"precision", precision}};
    if (kernel) p["flash_kernel"] = *kernel;
    core::Record r = core::make_record(fmt::format("{}-{}", precision, kernel ? *kernel : "none"), p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", tps}, {"ms_per_step", 50.0}};
    return r;
  };
  f.records = {rec("bf16", "wgmma", 100000.0),    rec("bf16", "wgmma_tma", 104000.0), rec("fp8", "wgmma", 120000.0),
               rec("fp8", "wgmma_tma", 130000.0), rec("bf16", std::nullopt, 90000.0), rec("fp8", "automatic", 117000.0)};
  report::ReportOptions opt;
  opt.results.push_back({"kernels.json", f});
  const std::string md = report::render_markdown(report::build_report(opt), report::Flavor::markdown);
  EXPECT_NE(md.find("1.250x"), std::string::npos) << md;  // 130000 / 104000
  EXPECT_NE(md.find("1.200x"), std::string::npos) << md;  // 120000 / 100000
  EXPECT_NE(md.find("1.300x"), std::string::npos) << md;  // 117000 / 90000 (no axis: automatic)
  EXPECT_EQ(md.find("1.250x its BF16 twin (50.00 ms)"), md.rfind("1.250x its BF16 twin (50.00 ms)")) << md;
}

// With step-time quartiles on both sides, "vs BF16" also gives the range they allow.
TEST(TrainReport, Fp8RatioCarriesTheQuartileRange) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", "spread"}};
  auto rec = [](const char* precision, double tps, double q1, double q3) {
    core::json p = {{"backend", "gpu"}, {"d_model", 768}, {"n_layer", 12},          {"n_head", 12},        {"seq_len", 1024},
                    {"batch", 16},      {"vocab", 50304}, {"precision", precision}, {"attention", "flash"}};
    core::Record r = core::make_record(precision, p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", tps}, {"ms_per_step", 16384e3 / tps}};
    r.data["timing"] = {{"q1", q1}, {"q3", q3}, {"rel_iqr", (q3 - q1) / (16384e3 / tps)}};
    return r;
  };
  f.records = {rec("bf16", 442109.0, 36.66, 37.50), rec("fp8", 525734.0, 30.88, 31.46)};
  report::ReportOptions opt;
  opt.results.push_back({"spread.json", f});
  const std::string md = report::render_markdown(report::build_report(opt), report::Flavor::markdown);
  EXPECT_NE(md.find("1.189x (1.165-1.214)"), std::string::npos) << md;  // 36.66 / 31.46, 37.50 / 30.88
}

// Two results of one sweep (a rerun, another build) in one report: each keeps its own loss
// figure instead of both drawing to the sweep's file name.
TEST(TrainReport, TwoResultsOfOneSweepDrawTwoFigures) {
  auto result = [](double loss) {
    core::ResultFile f;
    f.meta = {{"probe", "train"}, {"sweep", "again"}};
    core::json p = {{"backend", "gpu"}, {"d_model", 768}, {"n_layer", 12},       {"n_head", 12},        {"seq_len", 1024},
                    {"batch", 16},      {"vocab", 50304}, {"precision", "bf16"}, {"attention", "flash"}};
    core::Record r = core::make_record("bf16", p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", 100000.0}, {"ms_per_step", 50.0}};
    r.data["train"] = {{"loss", core::json::array({loss, loss / 2})}};
    f.records = {r};
    return f;
  };
  report::ReportOptions opt;
  opt.results.push_back({"a.json", result(10.0)});
  opt.results.push_back({"b.json", result(11.0)});
  const core::json rep = report::build_report(opt);
  std::vector<std::string> files;
  for (const auto& s : rep["sections"])
    for (const auto& f : s["figures"]) files.push_back(f["file"].get<std::string>());
  EXPECT_EQ(files, (std::vector<std::string>{"again_tokens_per_s", "again_loss", "again_tokens_per_s_2", "again_loss_2"}));
  // A result whose sweep name is a path (written elsewhere, or by hand) draws inside the
  // figures folder all the same.
  opt.results.clear();
  opt.results.push_back({"c.json", result(9.0)});
  opt.results[0].file.meta["sweep"] = "../../escape/x";
  files.clear();
  const core::json rep2 = report::build_report(opt);
  for (const auto& s : rep2["sections"])
    for (const auto& f : s["figures"]) files.push_back(f["file"].get<std::string>());
  EXPECT_EQ(files, (std::vector<std::string>{"f.._.._escape_x_tokens_per_s", "f.._.._escape_x_loss"}));
}

// A peer joins the result it was measured beside (meta.peer_of), not a rerun of the same sweep
// from another build; with the named file absent (renamed on commit) it joins its sweep.
// A one-record GPU training result of sweep `sweep` (started at `started`, when given), and
// whether a report section shows a PyTorch peer's columns.
namespace {
core::ResultFile train_result(const char* sweep, const char* started = nullptr) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", sweep}};
  if (started) f.meta["started_utc"] = started;
  core::json p = {{"backend", "gpu"}, {"precision", "bf16"}, {"attention", "flash"}};
  core::Record r = core::make_record("bf16", p, core::Outcome::ok);
  r.data["metrics"] = {{"tokens_per_s", 100000.0}, {"ms_per_step", 50.0}};
  f.records = {r};
  return f;
}
bool has_peer_columns(const core::json& section) {
  for (const auto& t : section["tables"])
    for (const auto& c : t["columns"])
      if (c.get<std::string>().rfind("peer tokens/s", 0) == 0) return true;
  return false;
}
}  // namespace

TEST(TrainReport, PeerJoinsTheRunItWasMeasuredBeside) {
  core::ResultFile peer = train_result("s");
  peer.meta["peer_of"] = "s.json";
  report::ReportOptions opt;
  opt.results = {{"results/s.json", train_result("s")}, {"results/s_rerun.json", train_result("s")}};
  opt.peers = {{"results/s_torch_peer.json", peer}};
  core::json rep = report::build_report(opt);
  EXPECT_TRUE(has_peer_columns(rep["sections"][1]));
  EXPECT_FALSE(has_peer_columns(rep["sections"][2]));
  opt.results = {{"results/s_renamed.json", train_result("s")}};
  rep = report::build_report(opt);
  EXPECT_TRUE(has_peer_columns(rep["sections"][1]));
}

// A peer that names the start of its run (meta.peer_of_started_utc) joins that run under any
// file name, and not another run whose file carries the name it was measured under.
TEST(TrainReport, PeerNamingItsRunsStartFollowsARename) {
  core::ResultFile peer = train_result("s");
  peer.meta["peer_of"] = "s.json";
  peer.meta["peer_of_started_utc"] = "2026-01-02T00:00:00Z";
  report::ReportOptions opt;
  // An older run committed as s.json; the peer's run renamed s_abc1234.json.
  opt.results = {{"results/s.json", train_result("s", "2026-01-01T00:00:00Z")},
                 {"results/s_abc1234.json", train_result("s", "2026-01-02T00:00:00Z")}};
  opt.peers = {{"results/s_abc1234_torch_peer.json", peer}};
  core::json rep = report::build_report(opt);
  EXPECT_FALSE(has_peer_columns(rep["sections"][1]));
  EXPECT_TRUE(has_peer_columns(rep["sections"][2]));
}

// Where a GPU run's memory goes: the pre-run estimate by part (the model's own functions), what
// FP8 adds, and the estimate against the measured peak; CPU runs and runs without a peak have
// no row.
TEST(TrainReport, MemoryByPartBesideTheMeasuredPeak) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", "mem"}};
  auto rec = [](const std::string& backend, const std::string& precision, double peak) {
    // The FP8 fields as probe_train records them (every point names them, BF16 ones too).
    core::json p = {{"backend", backend},
                    {"d_model", 768},
                    {"n_layer", 12},
                    {"n_head", 12},
                    {"seq_len", 1024},
                    {"batch", 16},
                    {"vocab", 50304},
                    {"attention", "flash"},
                    {"precision", precision},
                    {"format", "hybrid"},
                    {"margin", 0},
                    {"amax_history_len", 1024},
                    {"amax_compute_algo", "max"},
                    {"scaling", "delayed"},
                    {"saturation", "satfinite"},
                    {"variant", "fused"},
                    {"fp8_linears", "qkv,proj,fc1,fc2"},
                    {"fast_accum", "fprop"},
                    {"tap_interval", 10}};
    core::Record r = core::make_record(backend + precision, p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", 500000.0}, {"ms_per_step", 30.0}};
    if (peak > 0) r.data["metrics"]["peak_alloc_mib"] = peak;
    return r;
  };
  f.records = {rec("gpu", "bf16", 11801.0), rec("gpu", "fp8", 11498.0), rec("cpu", "bf16", 0.0)};
  report::ReportOptions opt;
  opt.results.push_back({"mem.json", f});
  const core::json rep = report::build_report(opt);
  const core::json* t = nullptr;
  for (auto& s : rep["sections"])
    for (auto& tb : s["tables"])
      if (tb["title"].get<std::string>().rfind("Device memory by part", 0) == 0) t = &tb;
  ASSERT_NE(t, nullptr);
  ASSERT_EQ((*t)["rows"].size(), 2u);  // the two GPU runs
  model::GptConfig c;
  c.vocab = 50304, c.d_model = 768, c.n_layer = 12, c.n_head = 12;
  const model::TrainingBytes b = model::gpu_training_bytes_by_part(c, 16, 1024, true);
  const double MiB = 1 << 20;
  EXPECT_DOUBLE_EQ(b.total(), model::gpu_training_bytes(c, 16, 1024, true));
  EXPECT_NEAR(b.logits, 16384.0 * 50304 * 6, 1.0);  // FP32 logits and their BF16 gradient
  const core::json& bf16 = (*t)["rows"][0];
  EXPECT_EQ(bf16[1], fmt::format("{:.0f}", b.parameters / MiB));
  EXPECT_EQ(bf16[3], fmt::format("{:.0f}", b.logits / MiB));
  EXPECT_EQ(bf16[5], "-");
  EXPECT_EQ(bf16[6], fmt::format("{:.0f}", b.total() / MiB));
  EXPECT_EQ(bf16[7], "11801");
  EXPECT_EQ(bf16[8], fmt::format("{:.2f}", b.total() / MiB / 11801.0));
  const core::json& fp8 = (*t)["rows"][1];
  model::Fp8ModelConfig fc;
  fc.variant = model::Fp8Variant::fused, fc.linears = {"qkv", "proj", "fc1", "fc2"};
  // A record without gelu_input (made before the axis) kept the GELU input in BF16 and its FP8
  // weights per layer.
  fc.gelu_input_e4m3 = false;
  const double delta = model::gpu_fp8_bytes_by_part(c, 16, 1024, fc, 0, model::WeightCopies::kept_per_layer).total();
  EXPECT_EQ(fp8[5], fmt::format("{:+.0f}", delta / MiB));
  EXPECT_EQ(fp8[6], fmt::format("{:.0f}", (b.total() + delta) / MiB));
  EXPECT_EQ(fp8[7], "11498");
  // The FP8 column by part, for the FP8 run only.
  const core::json* parts = nullptr;
  for (auto& s : rep["sections"])
    for (auto& tb : s["tables"])
      if (tb["title"].get<std::string>().rfind("What FP8 adds and saves", 0) == 0) parts = &tb;
  ASSERT_NE(parts, nullptr);
  ASSERT_EQ((*parts)["rows"].size(), 1u);
  const core::json& row = (*parts)["rows"][0];
  const model::Fp8Bytes d = model::gpu_fp8_bytes_by_part(c, 16, 1024, fc, 0, model::WeightCopies::kept_per_layer);
  EXPECT_EQ(d.bf16_weights, 0.0);
  // Against the model now: the FP8 weight and its transpose kept (2 bytes a parameter of the 12
  // layers' 12 C^2, where the model now keeps the FP8 weight only: 1), and the BF16 copy not
  // dropped (2); the model now holds a layer's FP8 weights' transposes (12 C^2) in f8_w_, which
  // with a BF16 head held the widest weight (4 C^2).
  EXPECT_DOUBLE_EQ(delta - model::gpu_fp8_bytes_delta(c, 16, 1024, fc), 3 * 12.0 * 12 * 768 * 768 - 8.0 * 768 * 768);
  EXPECT_EQ(row[1], fmt::format("{:+.0f}", d.kept / MiB));
  EXPECT_EQ(row[3], fmt::format("{:+.0f}", d.bf16_inputs / MiB));
  EXPECT_EQ(row[4], "0");  // a record from before gelu_input: BF16
  EXPECT_EQ(row[8], fmt::format("{:+.0f}", delta / MiB));
  EXPECT_EQ(row[9], fmt::format("{:.2f}", (b.total() + delta) / b.total()));
}
