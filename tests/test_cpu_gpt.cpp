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
}  // namespace

class GradientCheck : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(GradientCheck, AnalyticMatchesCentralDifferences) {
  const auto [pad, tied] = GetParam();
  const model::GptConfig cfg = tiny(11, pad, tied);
  const int B = 2, T = 5;
  std::vector<int> in = {1, 4, 7, 10, 2, 3, 3, 0, 9, 5}, tg = {4, 7, 10, 2, 6, 3, 0, 9, 5, 8};
  auto P = noisy_params(cfg, 7);
  // Padded vocabulary rows stay as initialised (zero): they must get no gradient.
  cpu::CpuGpt gpt(cfg);
  gpt.forward(P, in.data(), tg.data(), B, T);
  std::vector<double> G;
  gpt.backward(P, G);
  const double h = 1e-5;
  double worst = 0;
  std::string worst_name;
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
      if (err > worst) worst = err, worst_name = t.name + "[" + std::to_string(i) + "]";
      if ((t.name == "wte" || t.name == "lm_head") && i >= std::int64_t(cfg.vocab) * cfg.d_model) EXPECT_EQ(G[k], 0.0);
    }
  EXPECT_LT(worst, 1e-5) << "worst at " << worst_name;
}

INSTANTIATE_TEST_SUITE_P(PaddedAndTied, GradientCheck,
                         ::testing::Values(std::make_tuple(1, true), std::make_tuple(16, true), std::make_tuple(16, false)));

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
