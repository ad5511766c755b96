// Every computed verdict against record sets built for it: what the records show, what they
// contradict, and what they cannot decide (which must be said, with the runs that would
// decide, never turned into "confirmed").
#include "fp8scope/gemm/vocab_summary.hpp"
#include "fp8scope/report/report.hpp"
#include "fp8scope/report/sections.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <map>

using namespace fp8scope;
using core::Outcome;
using gemm::judge_divisibility_claim;
using gemm::summarize_vocab;

namespace {

core::Record vrec(long long v, const std::string& role, Outcome o, const std::string& format = "e4m3") {
  return core::make_record(std::to_string(v) + role + format, {{"vocab", v}, {"role", role}, {"format", format}}, o,
                           o == Outcome::ok ? "" : "refused");
}
// A vocab sweep where a V runs every role exactly when works(V).
template <class Works>
std::vector<core::Record> vocab_records(const std::vector<long long>& vs, Works works) {
  std::vector<core::Record> recs;
  for (long long v : vs)
    for (std::string role : {"fprop", "dgrad", "wgrad"})
      recs.push_back(vrec(v, role, role == "dgrad" && !works(v) ? Outcome::heuristic_unsupported : Outcome::ok));
  return recs;
}
std::set<long long> ok_of(const std::vector<long long>& vs, long long p) {
  std::set<long long> ok;
  for (long long v : vs)
    if (v % p == 0) ok.insert(v);
  return ok;
}
const core::json kH200 = {{"gpu", {{"name", "NVIDIA H200"}, {"cublaslt_version", 130100}}}};

}  // namespace

// The project's own sweep 50257..50320 has V % 32 == 16 (50272, 50304 - 16 ...): it separates 16
// from 32, and 16 is the condition.
TEST(VocabVerdict, SixteenSeparatedFromThirtyTwo) {
  std::vector<long long> vs;
  for (long long v = 50257; v <= 50320; ++v) vs.push_back(v);
  const core::json s = summarize_vocab(vocab_records(vs, [](long long v) { return v % 16 == 0; }), kH200)["e4m3"];
  EXPECT_EQ(s["consistent_divisors"], core::json::array({16}));
  EXPECT_EQ(s["divisible_by_32"]["verdict"], "refuted");
  EXPECT_EQ(s["divisible_by_32"]["because"], "V=50288 is not a multiple of 32 and runs every role");
  EXPECT_EQ(s["failing_roles"], core::json::array({"dgrad"}));
  EXPECT_EQ(s["tested"], 64);
  EXPECT_EQ(s["all_roles_ok"].size(), 4u);  // 50272, 50288, 50304, 50320
  const std::string text = s["verdict"];
  EXPECT_NE(text.find("NVIDIA H200 (cuBLASLt 130100)"), std::string::npos);
  EXPECT_NE(text.find("Availability is exactly V % 16 == 0 over the tested V."), std::string::npos) << text;
}

// Real tokenizers' sizes: Llama-2 32000 / 32001, Llama-3 128256, cl100k 100277. The even ones
// are multiples of 256, the others odd: the records fit every divisor from 2 to 256 and
// must say so, not "required and sufficient", and never confirm "32".
TEST(VocabVerdict, TokenizerSizesCannotDecide) {
  const std::vector<long long> vs = {32000, 32001, 128256, 100277};
  const core::json s = summarize_vocab(vocab_records(vs, [](long long v) { return v % 16 == 0; }), kH200)["e4m3"];
  EXPECT_EQ(s["consistent_divisors"], core::json::array({2, 4, 8, 16, 32, 64, 128, 256}));
  EXPECT_EQ(s["divisible_by_32"]["verdict"], "undecided");
  const std::string because = s["divisible_by_32"]["because"];
  EXPECT_NE(because.find("p = 2, 4, 8, 16, 32, 64, 128 or 256"), std::string::npos) << because;
  EXPECT_NE(because.find("V % 32 == 16"), std::string::npos) << because;
  EXPECT_NE(s["verdict"].get<std::string>().find("cannot tell them apart"), std::string::npos);
  // The padding advice takes the largest divisor the records allow: 32256 for 32001, not run.
  EXPECT_EQ(s["padding"][0]["vocab"], 32001);
  EXPECT_EQ(s["padding"][0]["pad_to"], 32256);
  EXPECT_NE(s["verdict"].get<std::string>().find("Padding: 32001 -> 32256 (untested)"), std::string::npos);
}

// A sweep that ran the padded size names it as the padding that works.
TEST(VocabVerdict, PaddingNamesTheMultipleThatRan) {
  const std::vector<long long> vs = {32000, 32001, 32008, 32016};
  const core::json s = summarize_vocab(vocab_records(vs, [](long long v) { return v % 16 == 0; }), kH200)["e4m3"];
  ASSERT_EQ(s["padding"].size(), 2u);
  EXPECT_EQ(s["padding"][0]["pad_to"], 32016);
  EXPECT_EQ(s["padding"][0]["evidence"], "the next multiple of 16; ran every role");
  EXPECT_NE(s["verdict"].get<std::string>().find("Padding: 32001 -> 32016, 32008 -> 32016."), std::string::npos) << s["verdict"];
}

// Only with a V divisible by 16 but not 32 failing (and one divisible by 32 but not 64
// working) is "divisible by 32" the condition the records show.
TEST(VocabVerdict, ThirtyTwoConfirmedOnlyWhenSeparated) {
  const std::vector<long long> vs = {50257, 50264, 50272, 50288, 50304, 50336};
  EXPECT_EQ(judge_divisibility_claim(vs, ok_of(vs, 32), 32).verdict, "confirmed");  // 50288 = 16 mod 32 fails, 50272 = 32 mod 64 works
  const std::vector<long long> no16 = {50257, 50264, 50304, 50336};                 // no V = 16 mod 32
  const auto c = judge_divisibility_claim(no16, ok_of(no16, 32), 32);
  EXPECT_EQ(c.verdict, "undecided");
  EXPECT_EQ(c.because, "the records fit V % p == 0 for p = 16 or 32: this sweep has no V with V % 32 == 16");
}

TEST(VocabVerdict, RefutedBothWays) {
  const std::vector<long long> vs = {50264, 50272, 50304};
  // Not required: a V that is not a multiple of 32 works.
  EXPECT_EQ(judge_divisibility_claim(vs, ok_of(vs, 8), 32).verdict, "refuted");
  // Not sufficient: a multiple of 32 fails (here only multiples of 64 work).
  const auto c = judge_divisibility_claim(vs, ok_of(vs, 64), 32);
  EXPECT_EQ(c.verdict, "refuted");
  EXPECT_EQ(c.because, "V=50272 is a multiple of 32 and a role fails");
}

TEST(VocabVerdict, OneSidedSweepsAndNothingMeasured) {
  const std::vector<long long> all32 = {32000, 50304};
  EXPECT_EQ(judge_divisibility_claim(all32, {32000, 50304}, 32).verdict, "undecided");  // no V off the multiples of 32
  EXPECT_EQ(judge_divisibility_claim({}, {}, 32).verdict, "not tested");
  std::vector<core::Record> skipped{vrec(50304, "dgrad", Outcome::skipped)};
  const core::json s = summarize_vocab(skipped, {{"gpu", nullptr}})["e4m3"];
  EXPECT_NE(s["verdict"].get<std::string>().find("not measured"), std::string::npos);
  EXPECT_EQ(s["divisible_by_32"]["verdict"], "not tested");
  // Only 50304 works of four: 64 and 128 both fit (no V = 64 mod 128 was tested).
  const std::vector<long long> four = {50257, 50272, 50288, 50304};
  const auto a = gemm::analyse_divisors(four, {50304});
  EXPECT_EQ(a.consistent, (std::vector<long long>{64, 128}));
  EXPECT_EQ(a.missing, (std::vector<std::string>{"V % 128 == 64"}));
  // No power of two fits when an odd V works and a multiple of 32 fails; the multiples of 64
  // tested (50304) all work.
  const auto b = gemm::analyse_divisors(four, {50257, 50304});
  EXPECT_TRUE(b.consistent.empty());
  EXPECT_EQ(b.smallest_sufficient.value_or(0), 64);
  const auto recs = vocab_records(four, [](long long v) { return v == 50257 || v == 50304; });
  EXPECT_NE(summarize_vocab(recs, kH200)["e4m3"]["verdict"].get<std::string>().find("No power-of-two divisor of V matches"),
            std::string::npos);
}

// --- The recipe claims ---------------------------------------------------------------------

namespace {
core::Record rrec(const std::string& format, int margin, const std::string& saturation, const std::string& variant, bool nan,
                  int seed = 1) {
  core::json p = {{"format", format},   {"margin", margin}, {"scaling", "delayed"}, {"saturation", saturation},
                  {"variant", variant}, {"seed", seed},     {"backend", "gpu"}};
  core::Record r = core::make_record(fmt::format("{}-{}-{}-{}-{}", format, margin, saturation, variant, seed), p,
                                     nan ? Outcome::nonfinite : Outcome::ok);
  if (nan) r.data["nan_onset"] = {{"step", 3}, {"layer", 0}, {"tensor", "qkv.grad"}, {"pass", "backward"}};
  return r;
}
// claim (its first words) -> verdict, from a report over these recipe records.
std::map<std::string, std::string> verdicts(const std::vector<core::Record>& recs, const std::vector<core::Record>& vocab = {}) {
  std::vector<report::ReportInput> inputs;
  core::ResultFile f;
  f.meta = {{"probe", "recipe"}, {"sweep", "r"}};
  f.env = kH200;
  f.records = recs;
  inputs.push_back({"r.json", f});
  if (!vocab.empty()) {
    core::ResultFile v;
    v.meta = {{"probe", "vocab"}, {"sweep", "v"}};
    v.env = kH200;
    v.records = vocab;
    inputs.push_back({"v.json", v});
  }
  std::map<std::string, std::string> out;
  const core::json sec = report::seed_claims_section(inputs);
  if (sec.is_null()) return out;
  for (const auto& row : sec["tables"][0]["rows"]) out[row[0].get<std::string>().substr(0, 20)] = row[1];
  return out;
}
const std::string kMargin = "DelayedScaling(margi", kHybrid = "DelayedScaling(HYBRI", kAttention = "TransformerLayer-sty",
                  kVocab = "FP8 needs a vocab di";
}  // namespace

TEST(RecipeVerdicts, MarginClaimEveryWay) {
  auto margins = [](bool n0, bool n1, bool n2) {
    return std::vector<core::Record>{rrec("e4m3", 0, "satfinite", "custom", n0), rrec("e4m3", 1, "satfinite", "custom", n1),
                                     rrec("e4m3", 2, "satfinite", "custom", n2)};
  };
  EXPECT_EQ(verdicts(margins(false, true, false))[kMargin], "confirmed");
  EXPECT_EQ(verdicts(margins(false, false, false))[kMargin], "not reproduced");
  EXPECT_EQ(verdicts(margins(true, true, false))[kMargin], "refuted");
  // Without margin=2 runs the claim's comparison cannot be made: undecided, not confirmed.
  EXPECT_EQ(verdicts({rrec("e4m3", 0, "satfinite", "custom", false), rrec("e4m3", 1, "satfinite", "custom", true)})[kMargin], "undecided");
  EXPECT_EQ(verdicts({rrec("hybrid", 0, "satfinite", "custom", false)})[kMargin], "not tested");
  // nosat runs are the counterfactual: they NaN, the satfinite runs decide.
  auto with_nosat = margins(false, false, false);
  for (int m : {0, 1, 2}) with_nosat.push_back(rrec("e4m3", m, "nosat", "custom", true));
  EXPECT_EQ(verdicts(with_nosat)[kMargin], "not reproduced");
}

TEST(RecipeVerdicts, HybridAndAttentionClaims) {
  EXPECT_EQ(verdicts({rrec("hybrid", 0, "satfinite", "custom", false)})[kHybrid], "confirmed");
  EXPECT_EQ(verdicts({rrec("hybrid", 0, "satfinite", "custom", true)})[kHybrid], "refuted");
  EXPECT_EQ(verdicts({rrec("e4m3", 0, "satfinite", "custom", false)})[kHybrid], "not tested");
  EXPECT_EQ(verdicts({rrec("e4m3", 0, "satfinite", "fp8_attention", true), rrec("e4m3", 0, "satfinite", "custom", false)})[kAttention],
            "confirmed");
  EXPECT_EQ(verdicts({rrec("e4m3", 0, "satfinite", "fp8_attention", false), rrec("e4m3", 0, "satfinite", "custom", false)})[kAttention],
            "not reproduced");
  EXPECT_EQ(verdicts({rrec("e4m3", 0, "satfinite", "fp8_attention", true), rrec("e4m3", 0, "satfinite", "custom", true)})[kAttention],
            "refuted");
  // FP8 attention NaNs but there is no custom run to compare with.
  EXPECT_EQ(verdicts({rrec("e4m3", 0, "satfinite", "fp8_attention", true)})[kAttention], "undecided");
  EXPECT_EQ(verdicts({rrec("e4m3", 0, "satfinite", "custom", true)})[kAttention], "not tested");
}

TEST(RecipeVerdicts, VocabClaimInTheTableFollowsTheAnalysis) {
  const std::vector<long long> llama = {32000, 32001, 128256, 100277};
  auto recs = vocab_records(llama, [](long long v) { return v % 16 == 0; });
  EXPECT_EQ(verdicts({rrec("hybrid", 0, "satfinite", "custom", false)}, recs)[kVocab], "undecided");
  std::vector<long long> gpt2;
  for (long long v = 50257; v <= 50320; ++v) gpt2.push_back(v);
  EXPECT_EQ(
      verdicts({rrec("hybrid", 0, "satfinite", "custom", false)}, vocab_records(gpt2, [](long long v) { return v % 16 == 0; }))[kVocab],
      "refuted");
}
