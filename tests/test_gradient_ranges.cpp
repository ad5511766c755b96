// The gradient ranges a training step zeroes (model::gradient_ranges_to_zero): every tensor the
// step sums into, none that a weight-gradient GEMM writes whole, merged and cut into pieces.
#include "fp8scope/model/gpt_config.hpp"
#include "fp8scope/model/gradient_ranges.hpp"

#include <gtest/gtest.h>

#include <vector>

using namespace fp8scope;

namespace {
model::GptConfig gpt2(bool tied) {
  model::GptConfig c;
  c.vocab = 100, c.max_seq = 16, c.d_model = 32, c.n_layer = 2, c.n_head = 2, c.tied = tied;
  return c;
}
model::GptConfig llama(bool tied) {
  model::GptConfig c = gpt2(tied);
  c.arch = model::Arch::llama, c.n_kv_head = 1, c.ffn = 48;
  return c;
}
// Per float of the layout: 1 where the ranges zero it (each float at most once).
std::vector<int> zeroed(const model::GptConfig& c, std::int64_t piece) {
  std::vector<int> z(std::size_t(model::param_count(c)), 0);
  for (const auto& r : model::gradient_ranges_to_zero(c, piece)) {
    EXPECT_GT(r.count, 0);
    EXPECT_LE(r.count, piece);
    for (std::int64_t i = r.offset; i < r.offset + r.count; ++i) ++z[std::size_t(i)];
  }
  return z;
}
}  // namespace

TEST(GradientRanges, ZeroEveryTensorTheStepSumsIntoAndNoneAGemmWritesWhole) {
  for (const auto& c : {gpt2(true), gpt2(false), llama(true), llama(false)}) {
    const std::vector<int> z = zeroed(c, 1 << 20);
    int whole = 0;
    for (const auto& t : model::param_layout(c)) {
      const bool gemm = model::gradient_written_whole(c, t.name);
      whole += gemm;
      for (std::int64_t i = t.offset; i < t.offset + t.size; ++i)
        ASSERT_EQ(z[std::size_t(i)], gemm ? 0 : 1) << t.name << (c.llama() ? " llama" : " gpt2") << (c.tied ? " tied" : " untied");
    }
    // Four block linears a layer, and the head's weight (wte where tied).
    EXPECT_EQ(whole, 4 * c.n_layer + 1) << (c.llama() ? "llama" : "gpt2") << (c.tied ? " tied" : " untied");
  }
}

TEST(GradientRanges, TheTiedHeadsGemmWritesWteFirstTheEmbeddingAddsAfter) {
  EXPECT_TRUE(model::gradient_written_whole(gpt2(true), "wte"));
  EXPECT_FALSE(model::gradient_written_whole(gpt2(false), "wte"));  // the embedding's scatter alone
  EXPECT_TRUE(model::gradient_written_whole(gpt2(false), "lm_head"));
  EXPECT_FALSE(model::gradient_written_whole(gpt2(true), "wpe"));
  EXPECT_FALSE(model::gradient_written_whole(gpt2(true), "h0.qkv_b"));
  EXPECT_FALSE(model::gradient_written_whole(gpt2(true), "h1.ln2_w"));
  EXPECT_TRUE(model::gradient_written_whole(gpt2(true), "h1.fcproj_w"));
  EXPECT_FALSE(model::gradient_written_whole(gpt2(true), "lnf_w"));
}

TEST(GradientRanges, AdjacentTensorsMergeAndLongRangesAreCut) {
  const model::GptConfig c = gpt2(true);
  // wte (the tied head's) | wpe h0.ln1_w h0.ln1_b | qkv_w | qkv_b | proj_w | proj_b ln2_w ln2_b |
  // fc_w | fc_b | fcproj_w | fcproj_b and the next layer's ln1 (the last layer's: lnf): four
  // ranges a layer and one more.
  const auto merged = model::gradient_ranges_to_zero(c, 1 << 20);
  EXPECT_EQ(merged.size(), std::size_t(4 * c.n_layer + 1));
  // Cut into pieces the same floats are zeroed, each once.
  EXPECT_EQ(zeroed(c, 7), zeroed(c, 1 << 20));
  const auto cut = model::gradient_ranges_to_zero(c, 7);
  EXPECT_GT(cut.size(), merged.size());
  EXPECT_THROW(model::gradient_ranges_to_zero(c, 0), std::invalid_argument);
}
