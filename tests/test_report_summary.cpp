// The report opens with a one-screen summary gathered from the sections (seed verdicts,
// availability, ratios), and each figure follows the table whose numbers it draws.
#include "fp8scope/report/report.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

using namespace fp8scope;
using core::Outcome;

namespace {
report::ReportInput vocab_input() {
  core::ResultFile f;
  f.meta = {{"probe", "vocab"}, {"sweep", "v"}};
  f.env = {{"gpu", {{"name", "NVIDIA H200"}, {"cublaslt_version", 130100}}}};
  for (long long v : {50264LL, 50272LL, 50288LL, 50304LL})
    for (std::string fmt : {"e4m3", "bf16"}) {
      const bool ok = fmt == "bf16" || v % 16 == 0;
      core::Record r = core::make_record(fmt::format("{}{}", v, fmt), {{"vocab", v}, {"role", "dgrad"}, {"format", fmt}},
                                         ok ? Outcome::ok : Outcome::heuristic_unsupported, ok ? "" : "K must be divisible by 16");
      if (ok) r.data["metrics"] = {{"tflops", fmt == "bf16" ? 700.0 : 1200.0}};
      f.records.push_back(r);
    }
  return {"v.json", f};
}
}  // namespace

TEST(ReportSummary, OpensTheReportWithEachSectionsHeadline) {
  report::ReportOptions opt;
  opt.results.push_back(vocab_input());
  const core::json rep = report::build_report(opt);
  ASSERT_EQ(rep["sections"][0]["title"], "Summary");
  const auto& bullets = rep["sections"][0]["bullets"];
  ASSERT_GE(bullets.size(), 2u);
  // The seed claim first (its section comes before the sweeps'), then the vocab line.
  EXPECT_NE(bullets[0].get<std::string>().find("Seed claim \"FP8 needs a vocab divisible by 32"), std::string::npos) << bullets;
  EXPECT_NE(bullets[0].get<std::string>().find("**refuted**"), std::string::npos) << bullets;  // 50288 = 16 mod 32 works
  EXPECT_NE(bullets[1].get<std::string>().find("runs every role for 3 of 4 V, exactly when V % 16 == 0"), std::string::npos) << bullets;
  const std::string md = report::render_markdown(rep, report::Flavor::markdown);
  EXPECT_LT(md.find("## Summary"), md.find("## Environment"));
  EXPECT_NE(md.find("- Seed claim"), std::string::npos);
}

TEST(ReportSummary, AFigureFollowsTheTableItDraws) {
  report::ReportOptions opt;
  opt.results.push_back(vocab_input());
  core::json rep = report::build_report(opt);
  core::json* vocab = nullptr;
  for (auto& s : rep["sections"])
    if (s["title"].get<std::string>().rfind("Vocab sweep", 0) == 0) vocab = &s;
  ASSERT_NE(vocab, nullptr);
  ASSERT_EQ((*vocab)["figures"].size(), 1u);
  auto& fig = (*vocab)["figures"][0];
  EXPECT_EQ(fig["kind"], "grid");
  EXPECT_EQ(fig["after_table"], 0);
  EXPECT_EQ(fig["rows"][0], "50264 (mod 16 = 8)");
  EXPECT_EQ(fig["cells"][0][1]["category"], "refused by the heuristic");  // columns: bf16 dgrad, e4m3 dgrad
  EXPECT_EQ(fig["cells"][1][1]["text"], "1200");
  fig["drawn"] = true;  // as if matplotlib had drawn it
  fig["link"] = "fig/v_availability.svg";
  const std::string md = report::render_markdown(rep, report::Flavor::markdown);
  const auto table = md.find("**Availability per vocab size"), image = md.find("![LM-head GEMMs per vocab size"),
             next_table = md.find("**Why the failing points fail");
  ASSERT_NE(image, std::string::npos) << md;
  EXPECT_LT(table, image);
  EXPECT_LT(image, next_table);
}

// A recipe sweep over a vocabulary and its padding: the verdict names, per real V, the smallest
// padded width that trained under every recipe, and says so when none did.
TEST(ReportSummary, RecipeSweepOverVocabNamesThePaddingThatRuns) {
  core::ResultFile f;
  f.meta = {{"probe", "recipe"}, {"sweep", "rl"}};
  f.env = {{"gpu", {{"name", "NVIDIA H200"}}}};
  const std::string refusal = "lm_head dgrad GEMM: K must be divisible by 16";
  for (std::string scaling : {"delayed", "block"})
    for (auto [v, pad] : {std::pair{32000LL, 1LL}, {32001LL, 1LL}, {32001LL, 16LL}, {32001LL, 128LL}, {50001LL, 1LL}}) {
      // 32016 runs per tensor but not in blocks (not a multiple of 128); 50001 never runs.
      const long long width = (v + pad - 1) / pad * pad;
      const bool ran = width % 16 == 0 && (scaling != "block" || width % 128 == 0);
      core::Record r = core::make_record(fmt::format("{}{}{}", scaling, v, pad),
                                         {{"vocab", v}, {"pad_vocab_to", pad}, {"scaling", scaling}, {"format", "hybrid"}},
                                         ran ? Outcome::ok : Outcome::heuristic_unsupported, ran ? "" : refusal);
      f.records.push_back(r);
    }
  report::ReportOptions opt;
  opt.results.push_back({"rl.json", f});
  const core::json rep = report::build_report(opt);
  std::vector<std::string> lines;
  for (auto& b : rep["sections"][0]["bullets"]) lines.push_back(b.get<std::string>());
  auto line_of = [&](const std::string& start) {
    for (auto& l : lines)
      if (l.rfind(start, 0) == 0) return l;
    return std::string();
  };
  EXPECT_NE(line_of("Vocab 32000 in FP8:").find("unpadded it ran in 2 of 2 runs; it needs no padding."), std::string::npos);
  const std::string v32001 = line_of("Vocab 32001 in FP8:");
  EXPECT_NE(v32001.find("unpadded it ran in 0 of 2 runs (cuBLASLt refused every run: " + refusal + ")"), std::string::npos) << v32001;
  EXPECT_NE(v32001.find("padded to 32016 (pad_vocab_to=16) it ran in 1 of 2 runs (cuBLASLt refused scaling=block"), std::string::npos)
      << v32001;
  EXPECT_NE(v32001.find("the smallest width of this sweep that ran under every recipe is 32128 (pad_vocab_to=128)."), std::string::npos)
      << v32001;
  EXPECT_NE(line_of("Vocab 50001 in FP8:").find("no width of this sweep ran under every recipe."), std::string::npos);
  // And the table beside it: one row per (V, padded width).
  const std::string md = report::render_markdown(rep, report::Flavor::markdown);
  EXPECT_NE(md.find("| 32001 | 32128 | 2 | 0 | 0 |"), std::string::npos) << md;
}
