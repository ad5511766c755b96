// The CPU reference GPT: finite-difference gradient check, hand-checkable losses and steps,
// padded vocabulary, and that training on the synthetic data lowers the loss.
#include "fp8scope/cpu/adamw.hpp"
#include "fp8scope/cpu/gpt_ref.hpp"
#include "fp8scope/cpu/trainer.hpp"
#include "fp8scope/model/data.hpp"
#include "fp8scope/model/gpt_config.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

using namespace fp8scope;

namespace {
model::GptConfig tiny(int vocab, int pad, bool tied) {
  model::GptConfig c;
  c.vocab = vocab;
  c.pad_vocab_to = pad;
  c.max_seq = 8;
  c.d_model = 8;
  c.n_layer = 2;
  c.n_head = 2;
  c.tied = tied;
  return c;
}
std::vector<double> noisy_params(const model::GptConfig& c, std::uint64_t seed) {
  // GPT-2 init plus noise, so that LayerNorm weights, biases and every path are non-trivial.
  auto f = model::init_params(c, seed);
  std::vector<double> p(f.begin(), f.end());
  std::mt19937_64 rng(seed + 1);
  std::normal_distribution<double> n(0.0, 0.3);
  for (auto& x : p) x += n(rng);
  return p;
}
// The worst relative difference between the analytic gradient and central differences over
// every parameter of cfg (where: which), on a fixed batch of B=2 x T=5 tokens; padded
// vocabulary rows must get no gradient at all.
double worst_gradient_error(const model::GptConfig& cfg, std::string& where) {
  const int B = 2, T = 5;
  std::vector<int> in = {1, 4, 7, 10, 2, 3, 3, 0, 9, 5}, tg = {4, 7, 10, 2, 6, 3, 0, 9, 5, 8};
  auto P = noisy_params(cfg, 7);
  cpu::CpuGpt gpt(cfg);
  gpt.forward(P, in.data(), tg.data(), B, T);
  std::vector<double> G;
  gpt.backward(P, G);
  const double h = 1e-5;
  double worst = 0;
  for (const auto& t : model::param_layout(cfg))
    for (std::int64_t i = 0; i < t.size; ++i) {
      const std::size_t k = std::size_t(t.offset + i);
      const double saved = P[k];
      P[k] = saved + h;
      const double up = gpt.forward(P, in.data(), tg.data(), B, T);
      P[k] = saved - h;
      const double down = gpt.forward(P, in.data(), tg.data(), B, T);
      P[k] = saved;
      const double numeric = (up - down) / (2 * h);
      // The floor covers gradients that are zero in exact arithmetic (e.g. the key bias: a shift
      // of every key leaves the softmax unchanged), where central differences show only rounding.
      const double err = std::abs(numeric - G[k]) / (1e-4 + std::abs(numeric) + std::abs(G[k]));
      if (err > worst) worst = err, where = t.name + "[" + std::to_string(i) + "]";
      if ((t.name == "wte" || t.name == "lm_head") && i >= std::int64_t(cfg.vocab) * cfg.d_model) EXPECT_EQ(G[k], 0.0) << t.name;
    }
  return worst;
}
}  // namespace

class GradientCheck : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(GradientCheck, AnalyticMatchesCentralDifferences) {
  const auto [pad, tied] = GetParam();
  std::string where;
  EXPECT_LT(worst_gradient_error(tiny(11, pad, tied), where), 1e-5) << "worst at " << where;
}

INSTANTIATE_TEST_SUITE_P(PaddedAndTied, GradientCheck,
                         ::testing::Values(std::make_tuple(1, true), std::make_tuple(16, true), std::make_tuple(16, false)));

// The Llama block (RMSNorm, rotary q and k, SwiGLU, grouped-query attention, no biases) against
// central differences: 4 query heads of 4 channels over 2 key/value heads (grouped), and over 4
// (plain multi-head), an untied and a tied head, a small SwiGLU width.
namespace {
model::GptConfig tiny_llama(int kv_heads, bool tied) {
  model::GptConfig c = tiny(11, 1, tied);
  c.arch = model::Arch::llama;
  c.d_model = 16, c.n_head = 4, c.n_kv_head = kv_heads, c.ffn = 12, c.rope_theta = 100.0;
  return c;
}
}  // namespace

class LlamaGradientCheck : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(LlamaGradientCheck, AnalyticMatchesCentralDifferences) {
  const auto [kv, tied] = GetParam();
  const model::GptConfig cfg = tiny_llama(kv, tied);
  ASSERT_EQ(model::validate(cfg, 5, 2), "");
  // The layout has what a Llama block has and nothing else.
  std::set<std::string> names;
  for (const auto& t : model::param_layout(cfg)) names.insert(t.name);
  EXPECT_FALSE(names.count("wpe") || names.count("h0.qkv_b") || names.count("h0.ln1_b") || names.count("lnf_b"));
  EXPECT_EQ(names.count("lm_head"), tied ? 0u : 1u);
  std::string where;
  EXPECT_LT(worst_gradient_error(cfg, where), 1e-5) << "worst at " << where;
}

INSTANTIATE_TEST_SUITE_P(Heads, LlamaGradientCheck,
                         ::testing::Values(std::make_tuple(2, false), std::make_tuple(4, false), std::make_tuple(1, true)));

// Without position information one causal attention layer is blind to the order of the
// context: the last token of [5, 7, 9] and of [7, 5, 9] sees the same set of keys and values
// (with two layers the earlier positions' own contexts would already differ). Llama has no
// position table, so only the rotation of q and k can tell the two apart, and it must.
TEST(CpuLlama, RotaryMakesTheOrderOfTheContextMatter) {
  auto last_logits = [](const model::GptConfig& cfg, std::vector<int> in) {
    auto P = noisy_params(cfg, 3);
    cpu::CpuGpt gpt(cfg);
    std::vector<int> tg = {1, 2, 3};
    gpt.forward(P, in.data(), tg.data(), 1, 3);
    const int Vp = cfg.padded_vocab();
    return std::vector<double>(gpt.logits().begin() + 2 * Vp, gpt.logits().begin() + 3 * Vp);
  };
  auto distance = [](const std::vector<double>& a, const std::vector<double>& b) {
    double d = 0;
    for (std::size_t i = 0; i < a.size(); ++i) d += std::abs(a[i] - b[i]);
    return d;
  };
  model::GptConfig cfg = tiny_llama(2, false);
  cfg.n_layer = 1;
  EXPECT_GT(distance(last_logits(cfg, {5, 7, 9}), last_logits(cfg, {7, 5, 9})), 1e-3);
  EXPECT_EQ(distance(last_logits(cfg, {5, 7, 9}), last_logits(cfg, {5, 7, 9})), 0.0);  // and it is deterministic
}

TEST(CpuLlama, TrainerLowersTheLossOnSyntheticData) {
  cpu::TrainConfig tc;
  tc.model = tiny_llama(2, false);
  tc.model.vocab = 32, tc.model.max_seq = 16;
  tc.batch = 4, tc.seq_len = 16, tc.steps = 30, tc.lr = {3e-3, 3e-4, 5, 30};
  model::MarkovTokens data(tc.model.vocab, 3);
  const auto log = cpu::train_cpu(tc, data);
  ASSERT_EQ(log.size(), 30u);
  EXPECT_NEAR(log.front().loss, std::log(32.0), 0.5);
  EXPECT_LT(log.back().loss, log.front().loss - 0.5);
}

TEST(CpuGpt, ZeroWeightsGiveExactlyLnV) {
  // Every matrix zero: logits are 0, so the loss is ln(V) exactly, whatever the padding.
  for (int pad : {1, 64}) {
    auto cfg = tiny(97, pad, true);
    std::vector<double> P(std::size_t(model::param_count(cfg)), 0.0);
    for (const auto& t : model::param_layout(cfg))
      if (t.init == model::ParamTensor::Init::ones)
        for (std::int64_t i = 0; i < t.size; ++i) P[std::size_t(t.offset + i)] = 1.0;
    std::vector<int> in = {1, 2, 3, 4}, tg = {5, 6, 7, 96};
    EXPECT_NEAR(cpu::CpuGpt(cfg).forward(P, in.data(), tg.data(), 1, 4), std::log(97.0), 1e-12);
  }
}

TEST(CpuGpt, UntrainedLossIsNearLnV) {
  model::GptConfig cfg = tiny(97, 1, true);
  cfg.d_model = 64, cfg.n_head = 4, cfg.max_seq = 32;
  auto f = model::init_params(cfg, 3);
  std::vector<double> P(f.begin(), f.end());
  model::MarkovTokens data(97, 5);
  std::vector<int> in, tg;
  data.next_batch(4, 32, in, tg);
  const double loss = cpu::CpuGpt(cfg).forward(P, in.data(), tg.data(), 4, 32);
  EXPECT_NEAR(loss, std::log(97.0), 0.1);
}

TEST(CpuGpt, PaddedLogitsTakeNoPart) {
  // The same real weights with and without padding, and garbage in the padded rows.
  auto plain = tiny(11, 1, false), padded = tiny(11, 16, false);
  auto P1 = noisy_params(plain, 9);
  std::vector<double> P2(std::size_t(model::param_count(padded)), 0.0);
  auto l1 = model::param_layout(plain), l2 = model::param_layout(padded);
  std::mt19937_64 rng(4);
  std::normal_distribution<double> n(0.0, 5.0);
  for (std::size_t t = 0; t < l1.size(); ++t) {
    for (std::int64_t i = 0; i < l2[t].size; ++i) P2[std::size_t(l2[t].offset + i)] = n(rng);
    for (std::int64_t i = 0; i < l1[t].size; ++i) P2[std::size_t(l2[t].offset + i)] = P1[std::size_t(l1[t].offset + i)];
  }
  std::vector<int> in = {1, 4, 7, 10, 2}, tg = {4, 7, 10, 2, 6};
  EXPECT_NEAR(cpu::CpuGpt(plain).forward(P1, in.data(), tg.data(), 1, 5), cpu::CpuGpt(padded).forward(P2, in.data(), tg.data(), 1, 5),
              1e-12);
}

TEST(AdamW, HandComputedFirstStep) {
  // First step: m/(1-b1) = g and sqrt(v/(1-b2)) = |g|, so the update is lr * (sign(g) + wd p).
  cpu::AdamW opt(3, cpu::AdamWConfig{0.9, 0.95, 1e-8, 0.1}, {true, false, true});
  std::vector<double> p = {1.0, -2.0, 0.5}, g = {0.1, -0.2, 0.0};
  EXPECT_NEAR(opt.step(p, g, 0.01, 0.0), std::sqrt(0.05), 1e-15);
  EXPECT_NEAR(p[0], 1.0 - 0.01 * (0.1 / (0.1 + 1e-8) + 0.1), 1e-12);
  EXPECT_NEAR(p[1], -2.0 - 0.01 * (-0.2 / (0.2 + 1e-8)), 1e-12);
  EXPECT_NEAR(p[2], 0.5 - 0.01 * (0.0 + 0.05), 1e-12);
}

TEST(AdamW, GlobalNormClipping) {
  cpu::AdamW opt(2, {}, {false, false});
  std::vector<double> p = {0, 0}, g = {3, 4};
  EXPECT_DOUBLE_EQ(opt.step(p, g, 0.0, 1.0), 5.0);
  EXPECT_DOUBLE_EQ(g[0], 0.6);
  EXPECT_DOUBLE_EQ(g[1], 0.8);
}

TEST(CpuTrainer, LossFallsOnSyntheticData) {
  cpu::TrainConfig cfg;
  cfg.model = tiny(64, 1, true);
  cfg.model.d_model = 32, cfg.model.n_head = 4, cfg.model.max_seq = 16;
  cfg.batch = 8, cfg.seq_len = 16, cfg.steps = 80;
  cfg.lr = {3e-3, 3e-4, 5, 80};
  model::MarkovTokens data(64, 11);
  auto log = cpu::train_cpu(cfg, data);
  ASSERT_EQ(log.size(), 80u);
  EXPECT_NEAR(log[0].loss, std::log(64.0), 0.1);
  double last = 0;
  for (int i = 75; i < 80; ++i) last += log[std::size_t(i)].loss / 5;
  EXPECT_LT(last, log[0].loss - 1.0) << "loss " << log[0].loss << " -> " << last << " (entropy floor " << data.entropy_rate() << ")";
  EXPECT_GT(last, data.entropy_rate() - 0.1);
  // Deterministic: the same seeds give the same curve to the bit.
  model::MarkovTokens again(64, 11);
  auto log2 = cpu::train_cpu(cfg, again);
  for (std::size_t i = 0; i < log.size(); ++i) EXPECT_EQ(log[i].loss, log2[i].loss);
}
