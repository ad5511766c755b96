// FP8 emulated in the CPU reference: scales follow the recipe from the tapped amaxes, FP8
// training tracks the double-precision loss, and a planted overflow shows as saturation
// (satfinite) or as the NaN onset at the right layer and tensor (nosat).
#include "fp8scope/cpu/adamw.hpp"
#include "fp8scope/cpu/fp8_emulation.hpp"
#include "fp8scope/cpu/gpt_ref.hpp"
#include "fp8scope/fp8/block_scale.hpp"
#include "fp8scope/model/data.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
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

// --- Rowwise and block scaling ---------------------------------------------------------------

namespace {
model::Fp8ModelConfig scaled_by(fp8::Scaling s, fp8::RecipeFormat f = fp8::RecipeFormat::e4m3) {
  model::Fp8ModelConfig o;
  o.recipe = {s, f, 0, 1, fp8::AmaxAlgo::max};
  return o;
}
// Underflow fraction of the tensors whose name ends with `suffix`, over every step.
double underflow(const std::vector<cpu::Tap>& taps, const std::string& suffix) {
  long long u = 0, n = 0;
  for (const auto& t : taps)
    if (t.tensor.size() >= suffix.size() && t.tensor.compare(t.tensor.size() - suffix.size(), suffix.size(), suffix) == 0)
      u += t.underflow, n += t.elements;
  return n ? double(u) / double(n) : 0.0;
}
}  // namespace

TEST(CpuFp8, BlockScalingQuantisesEachOperandAsTheGemmProbeDoes) {
  // A 200 x 300 operand with magnitudes varying by row: along its columns (forward) and along
  // its rows (wgrad), 1x128 blocks for activations and 128x128 for weights, each exactly
  // fp8::quantize_blocks of the operand laid out with the reduction dimension inner.
  const int R = 200, C = 300;
  std::vector<double> x(std::size_t(R * C));
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) x[std::size_t(r * C + c)] = std::ldexp(std::sin(0.37 * r + 1.3 * c), (r % 13) - 6 + (c / 128));
  cpu::Fp8Emulation fp8(scaled_by(fp8::Scaling::block));
  for (bool k_cols : {true, false})
    for (const char* role : {"input", "weight"}) {
      const double* q = fp8.quantize_operand(0, std::string(role) + (k_cols ? "" : "_t"), role, x.data(), R, C, k_cols);
      const std::int64_t outer = k_cols ? R : C, inner = k_cols ? C : R;
      std::vector<float> logical(std::size_t(outer * inner));
      for (std::int64_t o = 0; o < outer; ++o)
        for (std::int64_t k = 0; k < inner; ++k)
          logical[std::size_t(o * inner + k)] = float(x[std::size_t(k_cols ? o * C + k : k * C + o)]);
      const auto ref = fp8::quantize_blocks(
          logical, outer, inner, std::string(role) == "weight" ? fp8::ScaleMode::blk128 : fp8::ScaleMode::vec128, fp8::Format::e4m3);
      for (std::int64_t o = 0; o < outer; ++o)
        for (std::int64_t k = 0; k < inner; ++k) {
          const double want = double(fp8::decode(ref.codes[std::size_t(o * inner + k)], fp8::Format::e4m3)) *
                              double(ref.dequant[std::size_t(ref.geo.block_of(o, k))]);
          ASSERT_EQ(q[k_cols ? o * C + k : k * C + o], want)
              << role << (k_cols ? " along columns" : " along rows") << " at " << o << "," << k;
        }
    }
}

TEST(CpuFp8, RowwiseAndBlockScalingTrainAndLoseLessToUnderflowThanDelayedScaling) {
  const auto ref = train(nullptr, 30);
  cpu::Fp8Emulation delayed(scaled_by(fp8::Scaling::delayed));
  train(&delayed, 30);
  for (fp8::Scaling s : {fp8::Scaling::rowwise, fp8::Scaling::block}) {
    cpu::Fp8Emulation fp8(scaled_by(s));
    const auto got = train(&fp8, 30);
    // No delay: the first step is already well scaled, so the curve tracks the reference
    // from the start.
    for (int i = 0; i < 30; ++i)
      EXPECT_NEAR(got[std::size_t(i)], ref[std::size_t(i)], 0.03 * ref[std::size_t(i)]) << to_string(s) << " step " << i;
    EXPECT_FALSE(fp8.nan_onset().has_value());
    // Each GEMM has its own copies: dgrad's and wgrad's gradient, wgrad's input (and under
    // rowwise the weight along its columns).
    std::set<std::string> names;
    for (const auto& t : fp8.taps()) names.insert(t.tensor);
    for (const char* n : {"fc1.input", "fc1.input_t", "fc1.weight", "fc1.grad", "fc1.grad_t"}) EXPECT_TRUE(names.count(n)) << n;
    EXPECT_EQ(names.count("fc1.weight_t"), s == fp8::Scaling::rowwise ? 1u : 0u);
    // Each copy's tap carries its blocks' amax spread.
    for (const auto& t : fp8.taps())
      if (t.scale != 0.0f) {
        ASSERT_GT(t.blocks, 0) << t.tensor;
        EXPECT_LE(t.block_amax_min, t.block_amax_median) << t.tensor;
        EXPECT_LE(t.block_amax_median, t.amax) << t.tensor;
      }
    // E4M3 gradients: delayed per-tensor scaling flushes a large part of them to zero.
    EXPECT_LT(underflow(fp8.taps(), ".grad"), underflow(delayed.taps(), ".grad") / 5) << to_string(s);
  }
}

// Power-of-two scales (TransformerEngine's Float8BlockScaling default): the model trains as
// with FP32 scales, every copy's scale is a power of two, and gradients still lose far less to
// underflow than under delayed per-tensor E4M3 (a power of two gives up less than one binade).
TEST(CpuFp8, PowerOfTwoBlockScalesTrainAndEveryScaleIsAPowerOfTwo) {
  const auto ref = train(nullptr, 30);
  cpu::Fp8Emulation delayed(scaled_by(fp8::Scaling::delayed));
  train(&delayed, 30);
  for (fp8::Scaling s : {fp8::Scaling::rowwise, fp8::Scaling::block}) {
    auto cfg = scaled_by(s);
    cfg.recipe.pow2_block_scales = true;
    cpu::Fp8Emulation fp8(cfg);
    const auto got = train(&fp8, 30);
    for (int i = 0; i < 30; ++i)
      EXPECT_NEAR(got[std::size_t(i)], ref[std::size_t(i)], 0.03 * ref[std::size_t(i)]) << to_string(s) << " step " << i;
    int scales = 0;
    for (const auto& t : fp8.taps())
      if (t.scale != 0.0f) {
        int e = 0;
        ASSERT_EQ(std::frexp(t.scale, &e), 0.5f) << t.tensor << " step " << t.step << ": " << t.scale;
        ++scales;
      }
    EXPECT_GT(scales, 30 * 10);
    EXPECT_LT(underflow(fp8.taps(), ".grad"), underflow(delayed.taps(), ".grad") / 5) << to_string(s);
  }
}

namespace {
// The emulation's taps after one forward and backward step of cfg (4 sequences of 16 tokens).
std::vector<fp8::Tap> one_step_taps(const model::GptConfig& cfg, const model::Fp8ModelConfig& f) {
  cpu::Fp8Emulation fp8(f);
  cpu::CpuGpt gpt(cfg);
  gpt.attach_fp8(&fp8);
  const auto init = model::init_params(cfg, 4);
  std::vector<double> P(init.begin(), init.end()), G;
  model::MarkovTokens data(cfg.vocab, 8);
  std::vector<int> in, tg;
  data.next_batch(4, 16, in, tg);
  gpt.forward(P, in.data(), tg.data(), 4, 16);
  gpt.backward(P, G);
  return fp8.taps();
}
}  // namespace

// The GPU model taps per-row / per-block scaling through a static plan (model::TapPlan); the
// emulation taps as it quantises. After one step both must name the same quantised tensors,
// each with the same element and block counts, so the GPU's taps read like the CPU's (the gpu
// test compares the two models' taps; this checks the plan without a GPU). Also for the Llama
// block, whose linears have other widths (q with fewer k/v heads, gate and up in fc1, a
// hidden width that is not 4 d_model).
TEST(CpuFp8, TheTapPlanOfPerBlockScalingIsWhatTheEmulationQuantises) {
  for (const bool llama : {false, true})
    for (fp8::Scaling s : {fp8::Scaling::rowwise, fp8::Scaling::block}) {
      SCOPED_TRACE(llama ? "llama" : "gpt2");
      auto cfg = small();
      cfg.d_model = 256;  // two 1x128 blocks per row
      if (llama) cfg.arch = model::Arch::llama, cfg.n_kv_head = 2, cfg.ffn = 320, cfg.tied = false;
      std::map<std::pair<int, std::string>, std::pair<long long, long long>> emulated, planned;
      for (const auto& t : one_step_taps(cfg, scaled_by(s)))
        if (t.scale != 0.0f) emulated[{t.layer, t.tensor}] = {t.elements, t.blocks};
      const model::TapPlan plan(cfg, 4, 16, scaled_by(s));
      for (const auto& slot : plan.slots())
        if (slot.format) planned[{slot.layer, slot.tensor}] = {slot.elements, slot.geometry.blocks()};
      EXPECT_EQ(planned, emulated) << to_string(s);
    }
}

// The plan's taps of high-precision tensors (no cast: qkv, fc1_out, the MLP's activation ...)
// are the emulation's too, with the same element counts, under per-tensor scaling in both
// architectures.
TEST(CpuFp8, TheTapPlanObservesWhatTheEmulationObserves) {
  for (const bool llama : {false, true}) {
    SCOPED_TRACE(llama ? "llama" : "gpt2");
    auto cfg = small();
    if (llama) cfg.arch = model::Arch::llama, cfg.n_kv_head = 2, cfg.ffn = 96, cfg.tied = false;
    std::map<std::pair<int, std::string>, long long> emulated, planned;
    for (const auto& t : one_step_taps(cfg, scaled_by(fp8::Scaling::delayed))) emulated[{t.layer, t.tensor}] = t.elements;
    const model::TapPlan plan(cfg, 4, 16, scaled_by(fp8::Scaling::delayed));
    for (const auto& slot : plan.slots()) planned[{slot.layer, slot.tensor}] = slot.elements;
    for (const auto& [key, n] : planned) {
      if (!emulated.count(key)) continue;  // the GPU taps a few tensors the emulation does not (scores, probs)
      if (key.second == "loss") continue;  // the GPU taps the N per-token losses, the emulation their mean
      EXPECT_EQ(n, emulated[key]) << key.first << " " << key.second;
    }
    for (const auto& [key, n] : emulated) EXPECT_TRUE(planned.count(key)) << "the plan lacks " << key.first << " " << key.second;
  }
}
