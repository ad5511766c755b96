// Host-side GEMM logic: specs, tolerances, verdict mapping, LM-head layouts, vocab verdicts.
#include "fp8scope/gemm/spec.hpp"
#include "fp8scope/gemm/verdict.hpp"
#include "fp8scope/gemm/vocab_roles.hpp"
#include "fp8scope/gemm/vocab_summary.hpp"

#include <gtest/gtest.h>

using namespace fp8scope;
using namespace fp8scope::gemm;
using core::Outcome;

TEST(GemmSpec, LayoutsAndLeadingDimensions) {
  GemmSpec s;
  s.m = 100, s.n = 200, s.k = 300;
  ASSERT_TRUE(parse_layout("TN", s.trans_a, s.trans_b));
  EXPECT_EQ(s.lda_eff(), 300);  // A stored k x m
  EXPECT_EQ(s.ldb_eff(), 300);  // B stored k x n
  EXPECT_EQ(s.ldd_eff(), 100);
  ASSERT_TRUE(parse_layout("NT", s.trans_a, s.trans_b));
  EXPECT_EQ(s.lda_eff(), 100);
  EXPECT_EQ(s.ldb_eff(), 200);
  EXPECT_EQ(s.layout(), "NT");
  EXPECT_FALSE(parse_layout("TX", s.trans_a, s.trans_b));
  EXPECT_FALSE(parse_layout("TNN", s.trans_a, s.trans_b));
  EXPECT_DOUBLE_EQ(s.flops(), 2.0 * 100 * 200 * 300);
}

TEST(GemmSpec, StructuralErrors) {
  GemmSpec s;
  s.m = 64, s.n = 64, s.k = 64;
  EXPECT_EQ(structural_error(s), "");
  s.lda = 32;
  EXPECT_EQ(structural_error(s), "lda=32 is below A's 64 rows");
  s.lda = 0;
  s.k = 0;
  EXPECT_EQ(structural_error(s), "m, n, k and batch must be positive");
}

TEST(GemmSpec, ToleranceFollowsTheOutputFormat) {
  GemmSpec s;
  s.d = DType::bf16;
  EXPECT_NEAR(tolerance(s), 4.0 / 256 / std::sqrt(3.0), 1e-12);
  s.d = DType::fp32;
  EXPECT_EQ(tolerance(s), 1e-3);
  s.d = DType::e4m3;
  EXPECT_GT(tolerance(s), 0.1);
  s.d = DType::e5m2;
  EXPECT_GT(tolerance(s), 0.25);
  // A planted error of 2x (relative error 1) is always caught.
  for (DType t : {DType::e4m3, DType::e5m2, DType::bf16, DType::fp16, DType::fp32}) {
    s.d = t;
    EXPECT_LT(tolerance(s), 0.5) << to_string(t);
  }
}

TEST(GemmVerdict, HeuristicAndRunStatuses) {
  EXPECT_EQ(heuristic_verdict(kStatusNotSupported, 0), Outcome::heuristic_unsupported);
  EXPECT_EQ(heuristic_verdict(kStatusInvalidValue, 0), Outcome::heuristic_unsupported);
  EXPECT_EQ(heuristic_verdict(kStatusSuccess, 0), Outcome::no_algorithm);
  EXPECT_FALSE(heuristic_verdict(kStatusSuccess, 3).has_value());
  EXPECT_EQ(run_verdict(kStatusNotSupported), Outcome::run_rejected);
  EXPECT_FALSE(run_verdict(kStatusSuccess).has_value());
  EXPECT_EQ(accuracy_verdict(1e-3, 1e-2, 0), Outcome::ok);
  EXPECT_EQ(accuracy_verdict(0.5, 1e-2, 0), Outcome::incorrect);
  EXPECT_EQ(accuracy_verdict(NAN, 1e-2, 0), Outcome::incorrect);
  EXPECT_EQ(accuracy_verdict(1e-3, 1e-2, 5), Outcome::nonfinite);
  EXPECT_EQ(status_name(15), "CUBLAS_STATUS_NOT_SUPPORTED");
  EXPECT_EQ(status_name(99), "cuBLAS status 99");
}

TEST(VocabRoles, TnLayoutsOfTheLmHead) {
  GemmSpec f = lm_head_spec(HeadRole::fprop, 50264, 768, 16384, "e4m3");
  EXPECT_EQ(f.layout(), "TN");
  EXPECT_EQ(f.m, 50264);
  EXPECT_EQ(f.k, 768);
  EXPECT_EQ(f.ldd_eff(), 50264);
  EXPECT_TRUE(f.fast_accum);
  GemmSpec d = lm_head_spec(HeadRole::dgrad, 50264, 768, 16384, "hybrid");
  EXPECT_EQ(d.k, 50264);
  EXPECT_EQ(d.lda_eff(), 50264);
  EXPECT_EQ(d.ldb_eff(), 50264);
  EXPECT_EQ(d.a, DType::e4m3);
  EXPECT_EQ(d.b, DType::e5m2);
  EXPECT_FALSE(d.fast_accum);
  GemmSpec w = lm_head_spec(HeadRole::wgrad, 50264, 768, 16384, "bf16");
  EXPECT_EQ(w.n, 50264);
  EXPECT_EQ(w.lda_eff(), 16384);
  EXPECT_EQ(w.a, DType::bf16);
  EXPECT_EQ(vocab_dimensions(HeadRole::dgrad, d, 50264), "k=V, lda=V (50264 B of e4m3), ldb=V (50264 B of e5m2)");
}
