// FP8 emulated in the CPU reference: scales follow the recipe from the tapped amaxes, FP8
// training tracks the double-precision loss, and a planted overflow shows as saturation
// (satfinite) or as the NaN onset at the right layer and tensor (nosat).
#include "fp8scope/cpu/adamw.hpp"
#include "fp8scope/cpu/fp8_emulation.hpp"
#include "fp8scope/cpu/gpt_ref.hpp"
#include "fp8scope/model/data.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

using namespace fp8scope;

namespace {
model::GptConfig small() {
  model::GptConfig c;
  c.vocab = 97, c.pad_vocab_to = 1, c.max_seq = 16, c.d_model = 32, c.n_layer = 2, c.n_head = 4, c.tied = true;
  return c;
}
// Trains `steps` steps; with fp8 attached when given. Returns the losses.
std::vector<double> train(cpu::Fp8Emulation* fp8, int steps, std::vector<double>* final_params = nullptr) {
  const auto cfg = small();
  const auto init = model::init_params(cfg, 4);
  std::vector<double> P(init.begin(), init.end()), G;
  std::vector<bool> decay(P.size(), false);
  for (const auto& t : model::param_layout(cfg))
    for (std::int64_t i = 0; i < t.size; ++i) decay[std::size_t(t.offset + i)] = t.decay;
  cpu::AdamW opt(P.size(), {}, decay);
  cpu::CpuGpt gpt(cfg);
  gpt.attach_fp8(fp8);
  model::MarkovTokens data(cfg.vocab, 8);
  std::vector<int> in, tg;
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    data.next_batch(4, 16, in, tg);
    losses.push_back(gpt.forward(P, in.data(), tg.data(), 4, 16));
    gpt.backward(P, G);
    if (fp8) fp8->end_step();
    opt.step(P, G, 3e-3, 1.0);
  }
  if (final_params) *final_params = P;
  return losses;
}
model::Fp8ModelConfig hybrid(int history, fp8::AmaxAlgo algo, fp8::Overflow ov = fp8::Overflow::satfinite) {
  model::Fp8ModelConfig o;
  o.recipe = {fp8::Scaling::delayed, fp8::RecipeFormat::hybrid, 0, history, algo};
  o.overflow = ov;
  return o;
}
}  // namespace

TEST(CpuFp8, ScalesFollowTheRecipeFromTappedAmax) {
  // most_recent, margin 0: the scale a tensor uses at step s+1 is 448 / (its amax at step s).
  cpu::Fp8Emulation fp8(hybrid(1, fp8::AmaxAlgo::most_recent));
  train(&fp8, 5);
  std::map<int, cpu::Tap> by_step;
  for (const auto& t : fp8.taps())
    if (t.layer == 1 && t.tensor == "fc1.weight") by_step[t.step] = t;
  ASSERT_EQ(by_step.size(), 5u);
  EXPECT_EQ(by_step[0].scale, 1.0f);  // the initial scale
  for (int s = 1; s < 5; ++s) EXPECT_FLOAT_EQ(by_step[s].scale, 448.0f / float(by_step[s - 1].amax)) << "step " << s;
  // Gradients use E5M2 under HYBRID: 57344 / amax.
  std::map<int, cpu::Tap> grad;
  for (const auto& t : fp8.taps())
    if (t.layer == 0 && t.tensor == "qkv.grad") grad[t.step] = t;
  for (int s = 1; s < 5; ++s) EXPECT_FLOAT_EQ(grad[s].scale, 57344.0f / float(grad[s - 1].amax)) << "step " << s;
  EXPECT_FALSE(fp8.nan_onset().has_value());
}

TEST(CpuFp8, TrainingTracksTheHighPrecisionLoss) {
  const auto ref = train(nullptr, 30);
  cpu::Fp8Emulation fp8(hybrid(16, fp8::AmaxAlgo::max));
  const auto got = train(&fp8, 30);
  // Step 0 quantises with the initial scale of 1 (weights ~0.02 lose most of their bits in
  // E4M3's subnormals), as delayed scaling does; once the scales exist the curves agree to FP8
  // precision.
  for (int s = 5; s < 30; ++s) EXPECT_NEAR(got[std::size_t(s)], ref[std::size_t(s)], 0.03 * ref[std::size_t(s)]) << "step " << s;
  EXPECT_LT(got.back(), got.front() - 0.5);
}

TEST(CpuFp8, PlantedOverflowSaturatesWithSatfinite) {
  auto opt = hybrid(1, fp8::AmaxAlgo::max);
  opt.planted_scale[{0, "fc2.input"}] = 1e6f;
  cpu::Fp8Emulation fp8(opt);
  const auto losses = train(&fp8, 1);
  EXPECT_TRUE(std::isfinite(losses[0]));
  EXPECT_FALSE(fp8.nan_onset().has_value());
  long long sat = 0;
  for (const auto& t : fp8.taps())
    if (t.layer == 0 && t.tensor == "fc2.input") sat += t.saturated;
  EXPECT_GT(sat, 0);
}

TEST(CpuFp8, PlantedOverflowIsTheNanOnsetWithNosat) {
  auto opt = hybrid(1, fp8::AmaxAlgo::max, fp8::Overflow::nosat);
  opt.planted_scale[{1, "fc2.input"}] = 1e6f;
  cpu::Fp8Emulation fp8(opt);
  const auto losses = train(&fp8, 1);
  EXPECT_FALSE(std::isfinite(losses[0]));
  const auto onset = fp8.nan_onset();
  ASSERT_TRUE(onset.has_value());
  EXPECT_EQ(onset->step, 0);
  EXPECT_EQ(onset->layer, 1);
  EXPECT_EQ(onset->tensor, "fc2.input");
  EXPECT_EQ(onset->pass, "forward");
  EXPECT_GT(onset->saturated, 0);
}

TEST(CpuFp8, Fp8AttentionQuantisesQkvProbsAndTheirGradient) {
  auto opt = hybrid(1, fp8::AmaxAlgo::max);
  opt.variant = model::Fp8Variant::fp8_attention;
  cpu::Fp8Emulation fp8(opt);
  const auto losses = train(&fp8, 3);
  const auto ref = train(nullptr, 3);
  std::set<std::string> seen;
  for (const auto& t : fp8.taps())
    if (t.layer == 1 && t.scale != 0.0f) seen.insert(t.tensor);
  for (const char* name : {"q.input", "k.input", "v.input", "probs.input", "attention_out.grad"}) EXPECT_TRUE(seen.count(name)) << name;
  // Probabilities in E4M3 lose precision but the model still trains like the reference.
  EXPECT_NEAR(losses[2], ref[2], 0.05 * ref[2]);
  // Without the variant, no attention tensor is quantised.
  cpu::Fp8Emulation linears_only(hybrid(1, fp8::AmaxAlgo::max));
  train(&linears_only, 1);
  for (const auto& t : linears_only.taps()) EXPECT_FALSE(t.tensor == "q.input");
}
