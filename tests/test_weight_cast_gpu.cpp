// The FP8 block weights written by AdamW (weight_cast optimizer): the kernel's codes and cast
// statistics against the cast the forward pass would make from the new masters (bit for bit,
// with saturating, underflowing and non-multiple-of-4 tensors), and training with AdamW casting
// against training with forward casting, bit for bit in losses, parameters and every tap: by
// separate calls, replayed as CUDA graphs, and across set_params (forward casts again).
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/fp8/cast.cuh"
#include "fp8scope/fp8/format.hpp"
#include "fp8scope/gpu_model/gpt_gpu.hpp"
#include "fp8scope/gpu_model/kernels.cuh"
#include "fp8scope/model/data.hpp"
#include "gpu_test_util.hpp"
#include "model_test_util.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace fp8scope;

namespace {

bool same_stats(const fp8::CastStats& a, const fp8::CastStats& b) {
  return bits(a.amax) == bits(b.amax) && a.nonfinite == b.nonfinite && a.saturated == b.saturated && a.underflow == b.underflow &&
         a.nonfinite_out == b.nonfinite_out;
}

}  // namespace

// Three tensors in one launch: A (codes, slot 0; 5000 elements: two full chunks and a partial
// one), B (a BF16 copy), C (codes, slot 1; 1001 elements: the scalar loop). Slot 0's scale sends
// a tail of the values past E4M3's 448 (saturated) and the smallest under half its smallest
// subnormal (underflow); slot 1's, E5M2 under nosat, sends the largest to inf.
TEST(AdamwFp8Codes, AreTheForwardCastOfTheNewMasters) {
  FP8SCOPE_REQUIRE_GPU();
  for (const auto& [format, overflow] :
       {std::pair{fp8::Format::e4m3, fp8::Overflow::satfinite}, std::pair{fp8::Format::e5m2, fp8::Overflow::nosat}}) {
    const std::int64_t na = 5000, nb = 3000, nc = 1001, n = na + nb + nc;
    std::mt19937_64 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> p(static_cast<std::size_t>(n)), g(p.size()), m(p.size()), v(p.size());
    for (std::size_t i = 0; i < p.size(); ++i) {
      p[i] = 0.02f * nd(rng), g[i] = 1e-3f * nd(rng), m[i] = 1e-4f * nd(rng), v[i] = 1e-7f * std::fabs(nd(rng));
      // Some tiny weights that AdamW leaves tiny (no gradient, no momentum: only the decay):
      // under half either format's smallest subnormal once scaled, so they underflow.
      if (i % 301 == 7) p[i] = 2e-14f * nd(rng), g[i] = 0.0f, m[i] = 0.0f;
    }
    auto dp = upload(p), dg = upload(g), dm = upload(m), dv = upload(v);
    // Codes of A at 0 and of C at 5008 (a multiple of 4: C's chunk still takes the scalar loop,
    // its size being odd); B's BF16 copy at 0 of its own buffer.
    const std::int64_t codes_a = 0, codes_c = 5008;
    const std::vector<gpu_model::AdamwChunk> chunks =
        gpu_model::adamw_chunks({{0, na, true, codes_a, 0}, {na, nb, false, 0, -1}, {na + nb, nc, true, codes_c, 1}});
    auto dchunks = upload(chunks);
    const float fmax = fp8::info(format).max;
    // Scales 4 floats apart, as fp8::ScalerBank keeps them: A's amax is about 0.09, so 0.05
    // maps to the format's largest value and the tail above saturates (or, nosat, overflows).
    const std::vector<float> scales = {fmax / 0.05f, 0, 0, 0, fmax / 0.06f, 0, 0, 0};
    auto dscales = upload(scales);
    core::DeviceBuffer codes(std::size_t(codes_c + nc)), copy(std::size_t(nb) * 2), stats(2 * sizeof(fp8::CastStats));
    FP8S_CUDA(cudaMemset(stats.get(), 0, stats.size()));
    const gpu_model::AdamwStep step{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f - 0.9f * 0.9f, 1.0f - 0.95f * 0.95f, 0.0f};
    const float grad_sq = 1.0f;
    auto dstep = upload(std::vector<gpu_model::AdamwStep>{step}), dsq = upload(std::vector<float>{grad_sq});
    const gpu_model::AdamwFp8Codes out{codes.as<std::uint8_t>(), dscales.as<float>(), 4, stats.as<fp8::CastStats>(), format, overflow};
    gpu_model::adamw_update_chunks(dp.as<float>(), copy.as<__nv_bfloat16>(), dg.as<float>(), dm.as<float>(), dv.as<float>(),
                                   dchunks.as<gpu_model::AdamwChunk>(), int(chunks.size()), dstep.as<gpu_model::AdamwStep>(),
                                   dsq.as<float>(), out, nullptr);
    // The forward pass's cast of the new masters with the same scales.
    core::DeviceBuffer want(codes.size()), want_stats(2 * sizeof(fp8::CastStats));
    FP8S_CUDA(cudaMemset(want_stats.get(), 0, want_stats.size()));
    fp8::quantize(want.as<std::uint8_t>() + codes_a, dp.as<float>(), na, dscales.as<float>(), format, overflow,
                  want_stats.as<fp8::CastStats>(), nullptr);
    fp8::quantize(want.as<std::uint8_t>() + codes_c, dp.as<float>() + na + nb, nc, dscales.as<float>() + 4, format, overflow,
                  want_stats.as<fp8::CastStats>() + 1, nullptr);
    FP8S_CUDA(cudaDeviceSynchronize());
    const auto got = download<std::uint8_t>(codes, codes.size()), exp = download<std::uint8_t>(want, want.size());
    const auto newp = download<float>(dp, std::size_t(n));
    for (std::int64_t i = 0; i < na; ++i) {
      ASSERT_EQ(got[std::size_t(codes_a + i)], exp[std::size_t(codes_a + i)]) << "A " << i;
      ASSERT_EQ(got[std::size_t(codes_a + i)], fp8::encode(newp[std::size_t(i)] * scales[0], format, overflow)) << "A " << i;
    }
    for (std::int64_t i = 0; i < nc; ++i) ASSERT_EQ(got[std::size_t(codes_c + i)], exp[std::size_t(codes_c + i)]) << "C " << i;
    const auto gs = download<fp8::CastStats>(stats, 2), ws = download<fp8::CastStats>(want_stats, 2);
    for (int k = 0; k < 2; ++k) {
      EXPECT_TRUE(same_stats(gs[std::size_t(k)], ws[std::size_t(k)]))
          << "slot " << k << ": amax " << gs[std::size_t(k)].amax << " vs " << ws[std::size_t(k)].amax << ", saturated "
          << gs[std::size_t(k)].saturated << " vs " << ws[std::size_t(k)].saturated << ", underflow " << gs[std::size_t(k)].underflow
          << " vs " << ws[std::size_t(k)].underflow << ", nonfinite_out " << gs[std::size_t(k)].nonfinite_out << " vs "
          << ws[std::size_t(k)].nonfinite_out;
    }
    EXPECT_GT(gs[0].saturated + gs[0].nonfinite_out, 0u) << "the test means A's tail to saturate";
    EXPECT_GT(gs[0].underflow, 0u) << "the test means A's tiny weights to underflow";
    // B: its BF16 copy, as before.
    const auto hb = download<__nv_bfloat16>(copy, std::size_t(nb));
    for (std::int64_t i = 0; i < nb; ++i)
      ASSERT_EQ(bits(__bfloat162float(hb[std::size_t(i)])), bits(__bfloat162float(__float2bfloat16(newp[std::size_t(na + i)])))) << i;
  }
}

namespace {
struct TrainRun {
  std::vector<std::uint32_t> loss;
  std::vector<float> params;
  std::vector<fp8::Tap> taps;
  std::string weight_cast;
  int replays = 0;
};

// `steps` steps of the tiny GPT-2 (flash attention, fused delayed FP8), taps every other step;
// by train_step on a stream of the run's own (graphs as o says), or by forward / backward / step
// on the default stream. reset_at: set_params with the current masters before that step (the
// next forward casts the weights itself).
TrainRun train(const model::Fp8ModelConfig& f, model::GpuRunOptions o, bool by_parts, int steps, int reset_at = -1) {
  model::GptConfig cfg = test::tiny_gpt(96);
  cfg.d_model = 256, cfg.max_seq = 64;
  const int B = 4, T = 64;
  o.flash_attention = true;
  cudaStream_t stream = nullptr;
  if (!by_parts) FP8S_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  TrainRun r;
  {
    gpu_model::GpuGpt gpu(cfg, B, T, stream, &f, o);
    gpu.set_params(model::init_params(cfg, 11));
    gpu.set_tap_interval(2);
    model::MarkovTokens data(cfg.vocab, 4);
    std::vector<int> in, tg;
    for (int s = 0; s < steps; ++s) {
      if (s == reset_at) gpu.set_params(gpu.params());
      data.next_batch(B, T, in, tg);
      if (by_parts) {
        r.loss.push_back(bits(gpu.forward(in.data(), tg.data())));
        gpu.backward();
        gpu.step(3e-3f, 1.0f, {});
      } else {
        r.loss.push_back(bits(gpu.train_step(in.data(), tg.data(), 3e-3f, 1.0f, {}).loss));
      }
    }
    r.params = gpu.params();
    r.taps = gpu.fp8()->taps();
    r.weight_cast = gpu.weight_cast();
    r.replays = gpu.graph_replays();
  }
  if (stream) cudaStreamDestroy(stream);
  return r;
}

void expect_same(const TrainRun& a, const TrainRun& b, const std::string& what) {
  EXPECT_EQ(a.loss, b.loss) << what;
  EXPECT_TRUE(a.params == b.params) << what << ": the parameters differ";
  ASSERT_EQ(a.taps.size(), b.taps.size()) << what;
  for (std::size_t i = 0; i < a.taps.size(); ++i) {
    const fp8::Tap &x = a.taps[i], &y = b.taps[i];
    EXPECT_TRUE(x.step == y.step && x.layer == y.layer && x.tensor == y.tensor && x.amax == y.amax && x.scale == y.scale &&
                x.saturated == y.saturated && x.underflow == y.underflow && x.nonfinite == y.nonfinite && x.elements == y.elements)
        << what << ", tap " << i << ": " << x.tensor << " layer " << x.layer << " step " << x.step << ": amax " << x.amax << " vs "
        << y.amax << ", underflow " << x.underflow << " vs " << y.underflow;
  }
}
}  // namespace

// The weights' codes and their taps (amax, scale, saturated, underflow) come out of AdamW as out
// of forward's cast, so the runs are the same bits; the weight taps are there on every step.
TEST(WeightCastByOptimizer, TrainsBitForBitAsTheForwardCast) {
  FP8SCOPE_REQUIRE_GPU();
  model::Fp8ModelConfig f;
  f.variant = model::Fp8Variant::fused, f.recipe.scaling = fp8::Scaling::delayed, f.recipe.amax_history_len = 4;
  const int steps = sanitized_or(6, 3);
  model::GpuRunOptions opt, fwd;
  fwd.weights_cast_by_optimizer = false;
  const TrainRun a = train(f, opt, true, steps), b = train(f, fwd, true, steps);
  EXPECT_EQ(a.weight_cast, "optimizer");
  EXPECT_EQ(b.weight_cast, "forward");
  expect_same(a, b, "forward / backward / step");
  int weight_taps = 0;
  for (const auto& t : a.taps) weight_taps += t.tensor == "fc1.weight" && t.layer == 0;
  EXPECT_EQ(weight_taps, steps);
  // Replayed graphs (captured with the codes AdamW wrote), and a set_params mid-run.
  const TrainRun ga = train(f, opt, false, steps), gb = train(f, fwd, false, steps);
  EXPECT_GT(ga.replays, 0);
  expect_same(ga, gb, "train_step with graphs");
  const TrainRun ra = train(f, opt, false, steps, steps / 2), rb = train(f, fwd, false, steps, steps / 2);
  expect_same(ra, rb, "set_params mid-run");
  expect_same(ra, ga, "set_params with the same masters");
}

// Current scaling measures each weight before its cast, so forward casts (AdamW cannot know the
// scale); per-row / per-block scaling casts where each GEMM reads the weight.
TEST(WeightCastByOptimizer, OnlyUnderDelayedPerTensorScaling) {
  FP8SCOPE_REQUIRE_GPU();
  model::Fp8ModelConfig f;
  f.variant = model::Fp8Variant::fused, f.recipe.scaling = fp8::Scaling::current;
  EXPECT_EQ(train(f, {}, true, 1).weight_cast, "forward");
  f.variant = model::Fp8Variant::custom, f.recipe.scaling = fp8::Scaling::rowwise;
  EXPECT_EQ(train(f, {}, true, 1).weight_cast, "");
}
