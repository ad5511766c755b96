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
