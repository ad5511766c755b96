// The GPU GPT against the CPU reference at a tiny config: loss, logits and every parameter
// gradient within BF16 tolerance, and ten AdamW steps that track the CPU loss curve.
#include "fp8scope/cpu/adamw.hpp"
#include "fp8scope/cpu/gpt_ref.hpp"
#include "fp8scope/gpu_model/gpt_gpu.hpp"
#include "fp8scope/model/data.hpp"
#include "gpu_test_util.hpp"
#include "model_test_util.hpp"

#include <cmath>

using namespace fp8scope;

namespace {
model::GptConfig tiny(int vocab) { return test::tiny_gpt(vocab); }
using test::rel_err;
using test::tensor_part;
}  // namespace

// bf16_logits: the head writes BF16 logits; they sit within BF16's rounding (2^-9 relative) of
// the reference's, well inside the 2 % the logits are allowed, and the loss computes in FP32.
class GpuVsCpu : public ::testing::TestWithParam<std::tuple<int, bool, bool>> {};

TEST_P(GpuVsCpu, LossLogitsAndEveryGradient) {
  FP8SCOPE_REQUIRE_GPU();
  auto [vocab, tied, bf16_logits] = GetParam();
  model::GptConfig cfg = tiny(vocab);
  cfg.tied = tied;
  const int B = 4, T = 32;
  const auto init = model::init_params(cfg, 5);
  model::MarkovTokens data(vocab, 9);
  std::vector<int> in, tg;
  data.next_batch(B, T, in, tg);

  gpu_model::GpuGpt gpu(cfg, B, T, nullptr, nullptr, {.bf16_logits = bf16_logits});
  gpu.set_params(init);
  const float gl = gpu.forward(in.data(), tg.data());
  gpu.backward();
  const auto gg = gpu.grads();
  const auto glog = gpu.logits();

  const auto ref = test::cpu_step(cfg, init, in, tg, B, T);
  const double cl = ref.loss;
  const auto& cg = ref.grads;

  EXPECT_NEAR(gl, cl, 5e-3);
  EXPECT_LT(rel_err(std::vector<double>(glog.begin(), glog.end()), ref.logits), 2e-2);
  for (const auto& t : model::param_layout(cfg)) {
    EXPECT_LT(rel_err(tensor_part(gg, t), tensor_part(cg, t)), 5e-2) << t.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Vocab, GpuVsCpu,
                         ::testing::Values(std::make_tuple(97, true, false), std::make_tuple(96, true, false),
                                           std::make_tuple(97, false, false), std::make_tuple(96, true, true),
                                           std::make_tuple(97, false, true)));

TEST(GpuGpt, TenStepsTrackTheCpuLossCurve) {
  FP8SCOPE_REQUIRE_GPU();
  model::GptConfig cfg = tiny(97);
  const int B = 4, T = 32;
  const auto init = model::init_params(cfg, 5);
  gpu_model::GpuGpt gpu(cfg, B, T, nullptr);
  gpu.set_params(init);
  cpu::CpuGpt ref(cfg);
  std::vector<double> P(init.begin(), init.end()), G;
  std::vector<bool> decay(P.size(), false);
  for (const auto& t : model::param_layout(cfg))
    for (std::int64_t i = 0; i < t.size; ++i) decay[std::size_t(t.offset + i)] = t.decay;
  cpu::AdamW opt(P.size(), {}, decay);
  model::MarkovTokens data(97, 3);
  std::vector<int> in, tg;
  for (int step = 0, steps = sanitized_or(10, 3); step < steps; ++step) {
    data.next_batch(B, T, in, tg);
    const float gl = gpu.forward(in.data(), tg.data());
    gpu.backward();
    const float gn = gpu.step(1e-3f, 1.0f, gpu_model::AdamWSettings{});
    const double cl = ref.forward(P, in.data(), tg.data(), B, T);
    ref.backward(P, G);
    const double cn = opt.step(P, G, 1e-3, 1.0);
    EXPECT_NEAR(gl, cl, 2e-2) << "step " << step;
    EXPECT_NEAR(gn, cn, 0.05 * cn) << "step " << step;
  }
}

TEST(GpuGpt, Gpt2SmallStepRunsAndStartsWhereTheInitPredicts) {
  FP8SCOPE_REQUIRE_GPU();
  model::GptConfig cfg;
  cfg.vocab = 50304;
  cfg.pad_vocab_to = 1;
  cfg.tied = false;                            // untied: no self-logit, so the untrained loss follows from the init alone
  const int B = sanitized_or(4, 1), T = 1024;  // under synccheck B = 4 ran past 500 s
  gpu_model::GpuGpt gpu(cfg, B, T, nullptr);
  gpu.set_params(model::init_params(cfg, 1));
  model::MarkovTokens data(cfg.vocab, 1);
  std::vector<int> in, tg;
  data.next_batch(B, T, in, tg);
  const float loss = gpu.forward(in.data(), tg.data());
  // LayerNorm gives unit-variance features, the head's weights are N(0, 0.02^2): the logits are
  // N(0, s^2) with s^2 = C 0.02^2 = 0.31, and E[logsumexp] = ln V + s^2 / 2. (Measured on an
  // H200: 10.966 against ln V = 10.826 and the expected 10.979.)
  const double s2 = cfg.d_model * 0.02 * 0.02;
  EXPECT_NEAR(loss, std::log(50304.0) + s2 / 2, 0.05);
  gpu.backward();
  EXPECT_TRUE(std::isfinite(gpu.step(6e-4f, 1.0f, {})));
}

// The fused (flash) attention against the CPU reference and against the materialised GPU
// attention, two query/key tiles (T = 128), causal: 2 heads of 64, 5 heads of 64 (d = 320, not
// a power of two), 2 heads of 128.
class GpuGptFlash : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(GpuGptFlash, MatchesTheReferenceAndTheMaterialisedAttention) {
  FP8SCOPE_REQUIRE_GPU();
  model::GptConfig cfg = tiny(96);
  cfg.d_model = GetParam().first, cfg.n_head = GetParam().second, cfg.max_seq = 128;
  const int B = 2, T = 128;
  const auto init = model::init_params(cfg, 7);
  model::MarkovTokens data(cfg.vocab, 5);
  std::vector<int> in, tg;
  data.next_batch(B, T, in, tg);
  gpu_model::GpuGpt flash(cfg, B, T, nullptr, nullptr, {.flash_attention = true}), plain(cfg, B, T, nullptr);
  flash.set_params(init);
  plain.set_params(init);
  const float fl = flash.forward(in.data(), tg.data()), pl = plain.forward(in.data(), tg.data());
  flash.backward();
  plain.backward();
  const auto fg = flash.grads(), pg = plain.grads();
  const auto ref = test::cpu_step(cfg, init, in, tg, B, T);
  const double cl = ref.loss;
  const auto& cg = ref.grads;
  EXPECT_NEAR(fl, cl, 5e-3);
  EXPECT_NEAR(fl, pl, 5e-3);
  for (const auto& t : model::param_layout(cfg)) {
    const auto a = tensor_part(fg, t), b = tensor_part(cg, t), c = tensor_part(pg, t);
    EXPECT_LT(rel_err(a, b), 5e-2) << t.name << " (flash vs CPU)";
    EXPECT_LT(rel_err(a, c), 5e-2) << t.name << " (flash vs materialised)";
  }
  // No atomics: a second run gives the same bits.
  gpu_model::GpuGpt again(cfg, B, T, nullptr, nullptr, {.flash_attention = true});
  again.set_params(init);
  EXPECT_EQ(again.forward(in.data(), tg.data()), fl);
  again.backward();
  EXPECT_EQ(again.grads(), fg);
  // Shapes it cannot run are refused, not miscomputed.
  EXPECT_THROW(gpu_model::GpuGpt(tiny(96), 4, 32, nullptr, nullptr, {.flash_attention = true}), std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(HeadShapes, GpuGptFlash, ::testing::Values(std::make_pair(128, 2), std::make_pair(320, 5), std::make_pair(256, 2)),
                         [](const auto& info) {
                           return "d" + std::to_string(info.param.first) + "_h" + std::to_string(info.param.second);
                         });

// The Llama block (RMSNorm, rotary q and k, SwiGLU, 4 query heads of 64 over 2 key/value heads,
// no biases, untied head) against the CPU reference in BF16, every gradient; fused attention
// only (two 64-row tiles).
TEST(GpuGptLlama, MatchesTheCpuReferenceInEveryGradient) {
  FP8SCOPE_REQUIRE_GPU();
  model::GptConfig cfg = tiny(97);
  cfg.arch = model::Arch::llama, cfg.d_model = 256, cfg.n_head = 4, cfg.n_kv_head = 2, cfg.ffn = 320, cfg.tied = false, cfg.max_seq = 128;
  const int B = 2, T = 128;
  const auto init = model::init_params(cfg, 7);
  model::MarkovTokens data(cfg.vocab, 5);
  std::vector<int> in, tg;
  data.next_batch(B, T, in, tg);
  gpu_model::GpuGpt gpu(cfg, B, T, nullptr, nullptr, {.flash_attention = true});
  gpu.set_params(init);
  const float gl = gpu.forward(in.data(), tg.data());
  gpu.backward();
  const auto gg = gpu.grads();
  const auto ref = test::cpu_step(cfg, init, in, tg, B, T);
  EXPECT_NEAR(gl, ref.loss, 5e-3);
  for (const auto& t : model::param_layout(cfg)) EXPECT_LT(rel_err(tensor_part(gg, t), tensor_part(ref.grads, t)), 5e-2) << t.name;
  // No atomics: a second model gives the same bits.
  gpu_model::GpuGpt again(cfg, B, T, nullptr, nullptr, {.flash_attention = true});
  again.set_params(init);
  EXPECT_EQ(again.forward(in.data(), tg.data()), gl);
  again.backward();
  EXPECT_EQ(again.grads(), gg);
  // Without the fused attention (no grouped-query path) it is refused, not miscomputed.
  EXPECT_THROW(gpu_model::GpuGpt(cfg, B, T, nullptr), std::invalid_argument);
}
