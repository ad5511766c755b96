// The host-only model spec: config validation, parameter layout and init, LR schedule, data,
// the FP8 tap plan and the FP8 fields of a sweep point.
#include "fp8scope/core/error.hpp"
#include "fp8scope/model/data.hpp"
#include "fp8scope/model/fp8_fields.hpp"
#include "fp8scope/model/fp8_plan.hpp"
#include "fp8scope/model/gpt_config.hpp"
#include "fp8scope/model/rope.hpp"
#include "fp8scope/model/schedule.hpp"
#include "fp8scope/model/step_cost.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

using namespace fp8scope;

TEST(GptConfig, Gpt2SmallHas124MParameters) {
  model::GptConfig c;  // defaults: GPT-2 small
  c.vocab = 50257;
  c.pad_vocab_to = 128;  // 50304, as llm.c
  EXPECT_EQ(c.padded_vocab(), 50304);
  EXPECT_EQ(model::param_count(c), 124475904);  // llm.c's count for the padded model
}

TEST(GptConfig, ValidationMessages) {
  model::GptConfig c;
  EXPECT_EQ(model::validate(c, 1024, 16), "");
  c.n_head = 7;
  EXPECT_EQ(model::validate(c, 1024, 16), "n_head=7 does not divide d_model=768");
  c.n_head = 12;
  EXPECT_EQ(model::validate(c, 2048, 16), "seq_len=2048 is larger than the position table (max_seq=1024)");
  c.vocab = 1;
  EXPECT_EQ(model::validate(c, 16, 1), "vocab=1 must be at least 2");
}

TEST(GptConfig, InitFollowsGpt2) {
  model::GptConfig c;
  c.vocab = 1000, c.pad_vocab_to = 64, c.d_model = 64, c.n_head = 4, c.n_layer = 8, c.max_seq = 64;
  auto p = model::init_params(c, 1);
  EXPECT_EQ(p, model::init_params(c, 1));
  EXPECT_NE(p, model::init_params(c, 2));
  for (const auto& t : model::param_layout(c)) {
    double ss = 0;
    std::int64_t n = t.size;
    if (t.name == "wte") n = std::int64_t(c.vocab) * c.d_model;
    for (std::int64_t i = 0; i < n; ++i) ss += double(p[std::size_t(t.offset + i)]) * p[std::size_t(t.offset + i)];
    const double std = std::sqrt(ss / double(n));
    switch (t.init) {
      case model::ParamTensor::Init::normal: EXPECT_NEAR(std, 0.02, 0.002) << t.name; break;
      case model::ParamTensor::Init::residual_normal: EXPECT_NEAR(std, 0.02 / 4.0, 0.0005) << t.name; break;
      case model::ParamTensor::Init::zeros: EXPECT_EQ(std, 0.0) << t.name; break;
      case model::ParamTensor::Init::ones: EXPECT_EQ(std, 1.0) << t.name; break;
    }
    if (t.name == "wte")
      for (std::int64_t i = n; i < t.size; ++i) EXPECT_EQ(p[std::size_t(t.offset + i)], 0.0f);  // padded rows
  }
}

// The Llama block's layout: no position table, no biases, q/k/v of the grouped heads fused, gate
// and up fused, RMSNorm weights only; the parameter count follows by hand.
TEST(GptConfig, LlamaLayoutAndChecks) {
  model::GptConfig c;
  c.arch = model::Arch::llama;
  c.vocab = 32000, c.d_model = 2048, c.n_layer = 16, c.n_head = 32, c.n_kv_head = 8, c.ffn = 5632, c.tied = false, c.max_seq = 2048;
  EXPECT_EQ(c.head_dim(), 64);
  EXPECT_EQ(c.qkv_width(), 2048 + 2 * 8 * 64);
  const std::int64_t C = 2048, F = 5632, V = 32000, QW = 3072;
  const std::int64_t per_layer = C + QW * C + C * C + C + 2 * F * C + C * F;
  EXPECT_EQ(model::param_count(c), V * C + 16 * per_layer + C + V * C);  // about 1.1B, the 1B Llama shape
  EXPECT_EQ(model::validate(c, 2048, 1), "");
  model::GptConfig d = c;
  d.ffn = 0;
  EXPECT_EQ(d.ffn_width(), 5504);  // 8 d / 3 = 5461, up to a multiple of 64
  d.n_kv_head = 3;
  EXPECT_EQ(model::validate(d, 16, 1), "n_kv_head=3 does not divide n_head=32");
  d.n_kv_head = 8, d.d_model = 32 * 3;  // head size 3
  EXPECT_EQ(model::validate(d, 16, 1), "head size 3 is odd: rotary positions rotate pairs of channels");
  model::GptConfig g;  // GPT-2
  g.n_kv_head = 4;
  EXPECT_NE(model::validate(g, 16, 1).find("grouped-query attention is for arch llama"), std::string::npos);
  g.n_kv_head = 0, g.ffn = 1000;
  EXPECT_NE(model::validate(g, 16, 1).find("GPT-2's MLP is 4 d_model"), std::string::npos);
  EXPECT_EQ(model::parse_arch("llama"), model::Arch::llama);
  EXPECT_FALSE(model::parse_arch("mistral").has_value());
}

TEST(LrSchedule, WarmupThenCosine) {
  model::LrSchedule s{1.0, 0.1, 10, 110};
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_NEAR(s.at(60), 0.55, 1e-12);  // half way: cos(pi/2) = 0
  EXPECT_DOUBLE_EQ(s.at(110), 0.1);
  EXPECT_DOUBLE_EQ(s.at(500), 0.1);
}

TEST(Data, MarkovIsDeterministicAndShifted) {
  model::MarkovTokens a(100, 3), b(100, 3);
  std::vector<int> ia, ta, ib, tb;
  a.next_batch(4, 16, ia, ta);
  b.next_batch(4, 16, ib, tb);
  EXPECT_EQ(ia, ib);
  for (int bb = 0; bb < 4; ++bb)
    for (int t = 0; t + 1 < 16; ++t) EXPECT_EQ(ta[std::size_t(bb * 16 + t)], ia[std::size_t(bb * 16 + t + 1)]);
  for (int x : ia) EXPECT_LT(x, 100);
  EXPECT_GT(a.entropy_rate(), 1.0);
  EXPECT_LT(a.entropy_rate(), std::log(8.0));
}

TEST(Data, TokenFilesWithAndWithoutHeader) {
  const std::string dir = ::testing::TempDir();
  // llm.c header: 256 int32, magic 20240520, version 1 (uint16), token count.
  {
    std::ofstream f(dir + "/tok.bin", std::ios::binary);
    std::int32_t header[256] = {20240520, 1, 6};
    f.write(reinterpret_cast<char*>(header), sizeof header);
    std::uint16_t toks[6] = {5, 6, 7, 8, 9, 10};
    f.write(reinterpret_cast<char*>(toks), sizeof toks);
  }
  model::TokenFile tf(dir + "/tok.bin", 50257);
  EXPECT_EQ(tf.size(), 6u);
  std::vector<int> in, tg;
  tf.next_batch(1, 4, in, tg);
  EXPECT_EQ(in, (std::vector<int>{5, 6, 7, 8}));
  EXPECT_EQ(tg, (std::vector<int>{6, 7, 8, 9}));
  {
    std::ofstream f(dir + "/flat32.bin", std::ios::binary);
    std::uint32_t toks[3] = {1, 70000, 2};
    f.write(reinterpret_cast<char*>(toks), sizeof toks);
  }
  EXPECT_EQ(model::TokenFile(dir + "/flat32.bin", 100000, "u32").size(), 3u);
  EXPECT_THROW(model::TokenFile(dir + "/flat32.bin", 50000, "u32"), core::InputError);  // 70000 >= vocab
  EXPECT_THROW(model::TokenFile(dir + "/missing.bin", 10), core::InputError);
}

// What check_token_file says before a sweep starts, one line per class of bad file.
TEST(Data, TokenFileProblemsAreNamedBeforeTheSweep) {
  const std::string dir = ::testing::TempDir() + "/tokcheck";
  std::filesystem::create_directories(dir);
  auto file = [&](const std::string& name, const void* data, std::size_t n) {
    std::ofstream(dir + "/" + name, std::ios::binary).write(static_cast<const char*>(data), std::streamsize(n));
    return dir + "/" + name;
  };
  std::vector<std::uint16_t> ok(100);
  for (std::size_t i = 0; i < ok.size(); ++i) ok[i] = std::uint16_t(i % 50);
  const std::string good = file("good.bin", ok.data(), ok.size() * 2);
  EXPECT_EQ(model::check_token_file(good, 50, "auto", 65), "");
  EXPECT_EQ(model::check_token_file(good, 50, "auto", 101), good + ": 100 tokens, fewer than one batch needs (101 = batch x seq_len + 1)");
  EXPECT_EQ(model::check_token_file(good, 40, "auto", 2), good + ": token 40 at position 40 is not below vocab 40");
  EXPECT_EQ(model::check_token_file(dir + "/none.bin", 50, "auto", 2), dir + "/none.bin: token file does not exist");
  EXPECT_EQ(model::check_token_file(dir, 50, "auto", 2), dir + ": is a directory, not a token file");
  const std::string odd = file("odd.bin", ok.data(), 7);
  EXPECT_EQ(model::check_token_file(odd, 50, "auto", 2), odd + ": size is not a whole number of 2-byte tokens");
  std::int32_t header[256] = {20240520, 7, 3};
  const std::string badver = file("badver.bin", header, sizeof header);
  EXPECT_EQ(model::check_token_file(badver, 50, "auto", 2), badver + ": llm.c header version 7 is not 1 (uint16) or 2 (uint32)");
  header[1] = 1, header[2] = 1000;
  const std::string shorter = file("short.bin", header, sizeof header);
  EXPECT_EQ(model::check_token_file(shorter, 50, "auto", 2), shorter + ": header says 1000 tokens but the file is shorter");
  if (::geteuid() != 0) {  // root reads any file
    const std::string locked = file("locked.bin", ok.data(), ok.size() * 2);
    std::filesystem::permissions(locked, std::filesystem::perms::none);
    EXPECT_EQ(model::check_token_file(locked, 50, "auto", 2), locked + ": cannot read token file (Permission denied)");
  }
}

// Per-row / per-block scaling's device memory: nothing for per-tensor recipes; for block
// scaling at least the taps' four buffers of the largest cast's block amaxes (the head's
// gradient: 16384 tokens x 393 blocks of 128), and row-wise far less (a scale per row).
// Measured on an H200 (train_scaling_gpt2_124m.json): block's peak 183 MiB above per-tensor
// current scaling's, row-wise's 3 MiB; the estimate says 181 and 2.
TEST(Fp8Memory, PerBlockScalingAddsItsScalesAndTapBuffers) {
  model::GptConfig c;
  c.vocab = 50304, c.d_model = 768, c.n_layer = 12, c.n_head = 12, c.max_seq = 1024;
  model::Fp8ModelConfig f;
  EXPECT_EQ(model::per_block_bytes(c, 16, 1024, f), 0.0);
  f.recipe.scaling = fp8::Scaling::block;
  const double block = model::per_block_bytes(c, 16, 1024, f);
  EXPECT_GE(block, 4.0 * 4.0 * 16384 * 393);
  EXPECT_NEAR(block / (1 << 20), 183.0, 10.0);
  f.recipe.scaling = fp8::Scaling::rowwise;
  const double rowwise = model::per_block_bytes(c, 16, 1024, f);
  EXPECT_GT(rowwise, 0.0);
  EXPECT_NEAR(rowwise / (1 << 20), 3.0, 2.0);
  // Per-row / per-block scaling also keeps each block weight's FP8 transpose (12 C^2 bytes a
  // layer) and its BF16 copy (24 C^2); current scaling casts the weight from the FP32 master
  // where each GEMM reads it (AdamW, not knowing the scale, keeps no codes).
  EXPECT_EQ(model::gpu_fp8_bytes_delta(c, 16, 1024, f) - rowwise - 3 * 12.0 * 12 * 768 * 768, [&] {
    model::Fp8ModelConfig d = f;
    d.recipe.scaling = fp8::Scaling::current;
    return model::gpu_fp8_bytes_delta(c, 16, 1024, d);
  }());
}

// GPT-2's GELU input kept in E4M3: 1 byte instead of 2 per layer, and no shared BF16 GELU
// output (it is computed in place in the backward's scratch). Llama keeps its SwiGLU input.
TEST(Fp8Memory, TheGeluInputInE4m3HalvesItsBytes) {
  model::GptConfig c;
  c.vocab = 50304, c.d_model = 768, c.n_layer = 12, c.n_head = 12, c.max_seq = 1024;
  model::Fp8ModelConfig e4m3, bf16;
  bf16.gelu_input_e4m3 = false;
  const double N = 16.0 * 1024, F = 4 * 768;
  EXPECT_TRUE(model::keeps_gelu_input_e4m3(c, &e4m3));
  EXPECT_FALSE(model::keeps_gelu_input_e4m3(c, &bf16));
  EXPECT_FALSE(model::keeps_gelu_input_e4m3(c, nullptr));
  EXPECT_DOUBLE_EQ(model::gpu_fp8_bytes_delta(c, 16, 1024, bf16) - model::gpu_fp8_bytes_delta(c, 16, 1024, e4m3), 12 * N * F + 2 * N * F);
  const model::Fp8Bytes parts = model::gpu_fp8_bytes_by_part(c, 16, 1024, e4m3);
  EXPECT_DOUBLE_EQ(parts.gelu_input, -12 * N * F);
  EXPECT_DOUBLE_EQ(parts.bf16_weights, -2.0 * 12 * 12 * 768 * 768);  // qkv, proj, fc1, fc2: 12 C^2 a layer
  EXPECT_DOUBLE_EQ(parts.total(), model::gpu_fp8_bytes_delta(c, 16, 1024, e4m3));
  e4m3.linears.erase("fc2"), bf16.linears.erase("fc2");  // fc2's BF16 input is kept per layer either way
  EXPECT_DOUBLE_EQ(model::gpu_fp8_bytes_delta(c, 16, 1024, bf16) - model::gpu_fp8_bytes_delta(c, 16, 1024, e4m3), 12 * N * F);
  c.arch = model::Arch::llama;
  EXPECT_FALSE(model::keeps_gelu_input_e4m3(c, &e4m3));
}

// Under delayed scaling the loss writes the FP8 head's gradient itself, so the logits' BF16
// gradient (N x Vp x 2 bytes) is never allocated: measured on an H200 (train_sizes.json, GPT-2
// 124M), the fused delayed FP8 run's peak is 11498 MiB against 12988 for current scaling.
// Only where the loss's fast path takes the width (Vp a multiple of 32, at most 204800).
TEST(Fp8Memory, TheLossWritingTheHeadsFp8GradientSavesItsBf16Copy) {
  model::GptConfig c;
  c.vocab = 50304, c.d_model = 768, c.n_layer = 12, c.n_head = 12, c.max_seq = 1024;
  model::Fp8ModelConfig delayed, current;
  current.recipe.scaling = fp8::Scaling::current;
  const double N = 16.0 * 1024;
  // (Both with the block weights cast a layer at a time: AdamW keeps them only under delayed scaling.)
  const auto per_layer = model::WeightCopies::cast_per_layer;
  EXPECT_DOUBLE_EQ(model::gpu_fp8_bytes_delta(c, 16, 1024, current, 0, per_layer) -
                       model::gpu_fp8_bytes_delta(c, 16, 1024, delayed, 0, per_layer, false),
                   N * 50304 * 2);
  // Where the loss writes it, the head's wgrad also transposes it a slice at a time, in fc1's
  // gradient transpose's N x 3072 bytes instead of N x 50304.
  EXPECT_DOUBLE_EQ(
      model::gpu_fp8_bytes_delta(c, 16, 1024, current, 0, per_layer) - model::gpu_fp8_bytes_delta(c, 16, 1024, delayed, 0, per_layer),
      N * 50304 * 2 + N * (50304 - 3072));
  EXPECT_DOUBLE_EQ(model::gpu_fp8_bytes_delta(c, 16, 1024, current), model::gpu_fp8_bytes_delta(c, 16, 1024, current, 0, per_layer));
  delayed.linears.erase("lm_head"), current.linears.erase("lm_head");  // a BF16 head: its gradient is BF16 either way
  EXPECT_DOUBLE_EQ(model::gpu_fp8_bytes_delta(c, 16, 1024, current), model::gpu_fp8_bytes_delta(c, 16, 1024, delayed, 0, per_layer));
  // AdamW's codes: 1 byte a block parameter (12 layers of 12 C^2).
  EXPECT_DOUBLE_EQ(model::gpu_fp8_bytes_delta(c, 16, 1024, delayed) - model::gpu_fp8_bytes_delta(c, 16, 1024, delayed, 0, per_layer),
                   12.0 * 12 * 768 * 768);
  EXPECT_TRUE(model::cross_entropy_parts_shape_fits(50304));
  EXPECT_FALSE(model::cross_entropy_parts_shape_fits(50264));   // not a multiple of 32
  EXPECT_TRUE(model::cross_entropy_parts_shape_fits(128256));   // Llama-3's
  EXPECT_FALSE(model::cross_entropy_parts_shape_fits(262144));  // a quarter row beyond 200 KiB of shared memory
}

TEST(TapPlan, SlotsFollowVariantLinearsAndFormat) {
  model::GptConfig cfg;
  cfg.vocab = 96, cfg.pad_vocab_to = 1, cfg.max_seq = 32, cfg.d_model = 64, cfg.n_layer = 2, cfg.n_head = 4;
  model::Fp8ModelConfig f;  // custom, all linears, hybrid, delayed
  model::TapPlan custom(cfg, 4, 32, f);
  ASSERT_FALSE(custom.slots().empty());
  EXPECT_EQ(custom.slots().front().tensor, "qkv.input");  // the first cast of the step
  EXPECT_EQ(custom.slots().front().layer, 0);
  const auto& qkv_grad = custom.slots()[std::size_t(custom.index(0, "qkv.grad"))];
  EXPECT_EQ(qkv_grad.format, fp8::Format::e5m2);  // HYBRID: gradients in E5M2
  EXPECT_EQ(qkv_grad.pass, "backward");
  EXPECT_EQ(qkv_grad.elements, 4 * 32 * 3 * 64);
  EXPECT_EQ(custom.slots()[std::size_t(custom.index(1, "fc2.weight"))].format, fp8::Format::e4m3);
  EXPECT_FALSE(custom.slots()[std::size_t(custom.index(1, "residual"))].format.has_value());  // observed only
  EXPECT_GE(custom.index(1, "gelu_out"), 0);
  EXPECT_GE(custom.index(1, "scores"), 0);
  EXPECT_LT(model::TapPlan(cfg, 4, 32, f, /*flash_attention=*/true).index(1, "scores"), 0);  // never in memory
  EXPECT_LT(custom.index(0, "q.input"), 0);
  EXPECT_LT(custom.index(0, "fc2.input"), custom.index(-1, "lm_head.input"));  // forward before the head
  EXPECT_LT(custom.index(-1, "lm_head.grad"), custom.index(1, "fc2.grad"));    // backward runs from the head down
  EXPECT_LT(custom.index(1, "qkv.grad"), custom.index(0, "fc2.grad"));
  // fused: the GELU writes fc2's FP8 input, so there is no BF16 gelu_out to tap...
  f.variant = model::Fp8Variant::fused;
  EXPECT_LT(model::TapPlan(cfg, 4, 32, f).index(1, "gelu_out"), 0);
  // ...unless current scaling takes the unfused path.
  f.recipe.scaling = fp8::Scaling::current;
  EXPECT_GE(model::TapPlan(cfg, 4, 32, f).index(1, "gelu_out"), 0);
  // FP8 attention adds Q, K, V, the probabilities and the attention output's gradient.
  f.variant = model::Fp8Variant::fp8_attention;
  model::TapPlan att(cfg, 4, 32, f);
  for (const char* t : {"q.input", "k.input", "v.input", "probs.input", "attention_out.grad"}) EXPECT_GE(att.index(1, t), 0) << t;
  // Linears left in BF16 have no FP8 slots; E4M3 recipes keep gradients in E4M3.
  f.linears = {"fc1", "fc2"};
  f.recipe.format = fp8::RecipeFormat::e4m3;
  model::TapPlan some(cfg, 4, 32, f);
  EXPECT_LT(some.index(0, "qkv.input"), 0);
  EXPECT_LT(some.index(-1, "lm_head.grad"), 0);
  EXPECT_EQ(some.slots()[std::size_t(some.index(0, "fc1.grad"))].format, fp8::Format::e4m3);
}

TEST(Fp8Fields, LinearsAndFastAccumulation) {
  std::set<std::string> l;
  EXPECT_EQ(model::parse_linears("all", l), "");
  EXPECT_EQ(l.size(), 5u);
  EXPECT_EQ(model::parse_linears("none", l), "");
  EXPECT_TRUE(l.empty());
  EXPECT_EQ(model::parse_linears("qkv,lm_head", l), "");
  EXPECT_EQ(l, (std::set<std::string>{"qkv", "lm_head"}));
  EXPECT_NE(model::parse_linears("qkv,mlp", l).find("unknown linear 'mlp'"), std::string::npos);
  core::json p = core::json::object();
  for (const auto& a : model::fp8_axes()) p[a.name] = a.default_value;
  auto f = model::fp8_config_from(p);
  EXPECT_TRUE(f.gelu_input_e4m3);   // the axis's default
  EXPECT_TRUE(f.fast_accum_fprop);  // TransformerEngine's choice on Hopper
  EXPECT_FALSE(f.fast_accum_dgrad);
  EXPECT_FALSE(f.fast_accum_wgrad);
  p["fast_accum"] = "all";
  p["gelu_input"] = "bf16";
  f = model::fp8_config_from(p);
  EXPECT_TRUE(f.fast_accum_dgrad && f.fast_accum_wgrad);
  EXPECT_FALSE(f.gelu_input_e4m3);
  p.erase("gelu_input");  // a record made before the axis kept the GELU input in BF16
  EXPECT_FALSE(model::fp8_config_from(p).gelu_input_e4m3);
  p["variant"] = "fp8_attention";
  p["saturation"] = "nosat";
  p["format"] = "e4m3";
  const auto c = model::fp8_config_from(p);
  EXPECT_TRUE(c.attention());
  EXPECT_EQ(c.overflow, fp8::Overflow::nosat);
  EXPECT_EQ(c.recipe.format, fp8::RecipeFormat::e4m3);
}

// The step cost model: its GEMMs are the 6 N P FLOPs of the linears (fprop, dgrad, wgrad), in
// probe_gemm's shapes, FP8 exactly where the run asks for it.
TEST(StepCost, GemmsOfAGpt2StepAndTheirPrecision) {
  model::StepShape s;
  s.model.vocab = 50304, s.model.d_model = 768, s.model.n_layer = 12, s.model.n_head = 12;
  s.batch = 16, s.seq_len = 1024, s.fp8 = true, s.fp8_linears = {"qkv", "proj", "fc1", "fc2"};
  const auto costs = model::step_costs(s);
  ASSERT_EQ(costs.size(), 9u);
  EXPECT_EQ(costs[0].phase, "matmul");
  double flops = 0;
  for (auto& g : costs[0].gemms) {
    flops += g.flops();
    EXPECT_TRUE(g.fp8) << g.role;
  }
  const double N = 16.0 * 1024, linear_params = 12.0 * (768 * 2304 + 768 * 768 + 2 * 768 * 3072);
  EXPECT_DOUBLE_EQ(flops, 6.0 * N * linear_params);
  const auto& head = costs[1];
  EXPECT_EQ(head.phase, "lm_head");
  EXPECT_EQ(head.gemms[0].role, "lm_head.fprop");
  EXPECT_EQ(head.gemms[0].m, 50304);  // probe_gemm's gemm_gpt2 shapes: m = out, n = tokens, k = in
  EXPECT_EQ(head.gemms[0].n, 16384);
  EXPECT_EQ(head.gemms[0].k, 768);
  EXPECT_EQ(head.gemms[2].role, "lm_head.wgrad");
  EXPECT_EQ(head.gemms[2].m, 768);
  EXPECT_EQ(head.gemms[2].n, 50304);
  EXPECT_EQ(head.gemms[2].k, 16384);
  EXPECT_FALSE(head.gemms[0].fp8);  // the head stays BF16 unless listed
  // Causal attention: (4 + 10) / 2 B NH T^2 hs per layer.
  EXPECT_DOUBLE_EQ(costs[2].tensor_flops, 7.0 * 16 * 12 * 1024.0 * 1024 * 64 * 12);
  // Llama: the same phases; fc1 is gate and up (2 ffn wide), qkv holds the k/v heads only.
  s.model.arch = model::Arch::llama, s.model.n_kv_head = 4, s.model.ffn = 2048, s.model.tied = false;
  const auto llama = model::step_costs(s);
  ASSERT_EQ(llama.size(), 9u);
  double llama_flops = 0;
  for (auto& g : llama[0].gemms) llama_flops += g.flops();
  const double qkv = 768.0 + 2 * 4 * 64, llama_params = 12.0 * (768 * qkv + 768 * 768 + 768 * 2 * 2048 + 2048 * 768);
  EXPECT_DOUBLE_EQ(llama_flops, 6.0 * N * llama_params);
  EXPECT_DOUBLE_EQ(llama[2].tensor_flops, costs[2].tensor_flops);  // the same q heads
}

// The memory estimate before a sweep follows the GPU model's buffers: GPT-2's as measured, and
// for Llama the widths it allocates by (q with fewer k/v heads, gate and up, the hidden width).
TEST(GpuTrainingBytes, FollowTheLinearsWidths) {
  model::GptConfig g;
  g.vocab = 50304, g.d_model = 768, g.n_layer = 12, g.n_head = 12;
  const double gpt2 = model::gpu_training_bytes(g, 16, 1024, true);
  model::GptConfig l = g;
  l.arch = model::Arch::llama, l.tied = false, l.ffn = 4 * 768 / 2;  // fc1 = gate and up: GPT-2's 4C
  const double N = 16.0 * 1024, C = 768, L = 12;
  const double params = double(model::param_count(l)) - double(model::param_count(g));  // no biases, position table; own head
  // Same qkv (3C) and fc1 (4C) widths; the hidden width (the activation kept per layer and its
  // gradient's scratch) is 2C instead of 4C; Llama adds fc1's output gradient (4C) and the
  // rotary table (T x 64 floats).
  const double want = params * 18 + L * N * 2 * (2 * C - 4 * C) + N * 2 * (2 * C - 4 * C) + N * 4 * C * 2 + 1024.0 * 64 * 4;
  EXPECT_DOUBLE_EQ(model::gpu_training_bytes(l, 16, 1024, true) - gpt2, want);
  l.n_kv_head = 4;  // a third of the k/v heads: a narrower qkv
  EXPECT_LT(model::gpu_training_bytes(l, 16, 1024, true) - gpt2, want);
}

// Per-row / per-block scaling: the casts are a phase of their own (the profile's fp8_cast), 4
// bytes per element of every FP8 GEMM input, weight and output gradient (BF16 read, two FP8
// copies written), 6 row-wise (one more read for the amaxes); the GEMM phases keep only GEMMs.
TEST(StepCost, PerBlockScalingCastsAreTheirOwnPhase) {
  model::StepShape s;
  s.model.vocab = 50304, s.model.d_model = 768, s.model.n_layer = 12, s.model.n_head = 12;
  s.batch = 16, s.seq_len = 1024, s.fp8 = true, s.fp8_linears = {"qkv", "proj", "fc1", "fc2", "lm_head"};
  s.delayed = false, s.per_block = true;
  auto phase = [](const std::vector<model::PhaseCost>& costs, const std::string& name) {
    for (const auto& p : costs)
      if (p.phase == name) return p;
    ADD_FAILURE() << "no phase " << name;
    return model::PhaseCost{};
  };
  const auto costs = model::step_costs(s);
  const double N = 16.0 * 1024, C = 768, F = 3072, V = 50304;
  // Inputs, output gradients and weights of the four block linears, then the head's.
  const double layer = N * (C + C + C + F) + N * (3 * C + C + F + C) + (C * 3 * C + C * C + C * F + F * C);
  const double elements = 12 * layer + N * C + V * C + N * V;
  EXPECT_DOUBLE_EQ(phase(costs, "fp8_cast").bytes, 4 * elements);
  EXPECT_EQ(phase(costs, "matmul").serial_bytes, 0.0);
  EXPECT_EQ(phase(costs, "lm_head").serial_bytes, 0.0);
  s.rowwise = true;
  EXPECT_DOUBLE_EQ(phase(model::step_costs(s), "fp8_cast").bytes, 6 * elements);
  s.per_block = s.rowwise = false;
  for (const auto& p : model::step_costs(s)) EXPECT_NE(p.phase, "fp8_cast");
}

// Llama's SwiGLU phase: forward reads gate and up and writes the activation (3 F elements a
// token), backward reads gate, up and the gradient and writes both gradients (5 F), but under
// delayed scaling with fc1 in FP8 the backward happens inside fc1's gradient cast, which then
// reads gate and up and the half-wide gradient (5 bytes an element of fc1's 2 F output).
TEST(StepCost, LlamaSwigluBackwardMovesIntoFc1sCastUnderDelayedScaling) {
  model::StepShape s;
  s.model.arch = model::Arch::llama, s.model.vocab = 32000, s.model.d_model = 512, s.model.n_layer = 4, s.model.n_head = 8;
  s.model.n_kv_head = 2, s.model.ffn = 1408, s.model.tied = false;
  s.batch = 16, s.seq_len = 512;
  auto phase = [](const std::vector<model::PhaseCost>& costs, const std::string& name) {
    for (const auto& p : costs)
      if (p.phase == name) return p;
    ADD_FAILURE() << "no phase " << name;
    return model::PhaseCost{};
  };
  const double N = 16.0 * 512, F = 1408, L = 4;
  EXPECT_DOUBLE_EQ(phase(model::step_costs(s), "gelu").bytes, L * N * F * 2 * 8);  // BF16
  s.fp8 = true, s.fp8_linears = {"qkv", "proj", "fc1", "fc2", "lm_head"};
  const auto delayed = model::step_costs(s);
  EXPECT_DOUBLE_EQ(phase(delayed, "gelu").bytes, L * N * F * 2 * 3);
  s.delayed = false;  // current scaling: the backward stays in the phase, fc1's cast is a plain one
  const auto current = model::step_costs(s);
  EXPECT_DOUBLE_EQ(phase(current, "gelu").bytes, L * N * F * 2 * 8);
  // fc1's output gradient (2 F wide): 5 bytes an element fused with the SwiGLU backward, 4 when
  // cast on its own; current scaling's casts are serial in the matmul phase too.
  EXPECT_DOUBLE_EQ(phase(delayed, "matmul").serial_bytes - phase(current, "matmul").serial_bytes, L * N * 2 * F * (5 - 4));
}

// GPT-2's GELU input kept in E4M3: its forward writes 1 byte an element more, its backward (in
// fc1's gradient cast under delayed scaling, in the GELU phase otherwise) reads 1 byte instead
// of 2. Block weights cast from the FP32 master: forward and backward read 4 bytes an element
// and write 1 (10) where the once-a-step cast from BF16 read 2 and wrote 2 (4).
TEST(StepCost, TheGeluInputInE4m3AndTheWeightsCastFromTheMaster) {
  model::StepShape s;
  s.model.vocab = 50304, s.model.d_model = 768, s.model.n_layer = 12, s.model.n_head = 12, s.model.max_seq = 1024;
  s.batch = 16, s.seq_len = 1024;
  s.fp8 = true, s.fused = true, s.fp8_linears = {"qkv", "proj", "fc1", "fc2", "lm_head"};
  auto phase = [](const std::vector<model::PhaseCost>& costs, const std::string& name) {
    for (const auto& p : costs)
      if (p.phase == name) return p;
    ADD_FAILURE() << "no phase " << name;
    return model::PhaseCost{};
  };
  const double N = 16.0 * 1024, C = 768, F = 4 * C, L = 12;
  for (const bool delayed : {true, false}) {
    s.delayed = delayed;
    s.gelu_e4m3 = false, s.weights = model::WeightCopies::kept_per_layer;
    const auto bf16 = model::step_costs(s);
    s.gelu_e4m3 = true;
    const auto e4m3 = model::step_costs(s);
    // Delayed: +1 in the GELU's forward, -1 in fc1's fused cast; current: both in the GELU phase.
    EXPECT_DOUBLE_EQ(phase(e4m3, "gelu").bytes - phase(bf16, "gelu").bytes, delayed ? L * N * F : 0.0);
    EXPECT_DOUBLE_EQ(phase(e4m3, "matmul").serial_bytes - phase(bf16, "matmul").serial_bytes, delayed ? -L * N * F : 0.0);
    s.weights = model::WeightCopies::cast_per_layer;
    const auto master = model::step_costs(s);
    EXPECT_DOUBLE_EQ(phase(master, "matmul").serial_bytes - phase(e4m3, "matmul").serial_bytes, (10 - 4) * L * 12 * C * C);
    EXPECT_DOUBLE_EQ(phase(e4m3, "optimizer").bytes - phase(master, "optimizer").bytes, 2 * L * 12 * C * C);  // no BF16 copies
    // Every layer's codes kept and written by AdamW (1 byte, in the optimizer): forward casts
    // nothing, backward transposes them (1 + 1 bytes) instead of casting from FP32 again (4 + 1).
    s.weights = model::WeightCopies::codes_kept;
    const auto kept = model::step_costs(s);
    EXPECT_DOUBLE_EQ(phase(master, "matmul").serial_bytes - phase(kept, "matmul").serial_bytes, (10 - 2) * L * 12 * C * C);
    EXPECT_DOUBLE_EQ(phase(kept, "optimizer").bytes - phase(master, "optimizer").bytes, L * 12 * C * C);
  }
  // The GELU in fc1's epilogue (delayed): the phase is the transpose of fc2's FP8 input, read and
  // written once; the GEMMs and casts stay as they were.
  s.delayed = true;
  const auto kernel = model::step_costs(s);
  s.gelu_epilogue = true;
  const auto epilogue = model::step_costs(s);
  EXPECT_DOUBLE_EQ(phase(epilogue, "gelu").bytes, L * N * F * 2);
  EXPECT_DOUBLE_EQ(phase(kernel, "gelu").bytes, L * N * F * 5);
  EXPECT_DOUBLE_EQ(phase(epilogue, "matmul").serial_bytes, phase(kernel, "matmul").serial_bytes);
  // And fc2's dgrad writing fc1's FP8 gradient: its cast (2 + 1 read, 2 written) becomes a transpose (1 + 1).
  s.dgelu_epilogue = true;
  EXPECT_DOUBLE_EQ(phase(model::step_costs(s), "matmul").serial_bytes - phase(epilogue, "matmul").serial_bytes, -3 * L * N * F);
  // BF16: no GELU kernel left in forward; in backward the GELU kernel only where fc2's dgrad did
  // not take the gradient (it reads the pre-activation and the gradient and writes the gradient).
  s.fp8 = false, s.gelu_e4m3 = false;
  EXPECT_DOUBLE_EQ(phase(model::step_costs(s), "gelu").bytes, 0.0);
  s.dgelu_epilogue = false;
  EXPECT_DOUBLE_EQ(phase(model::step_costs(s), "gelu").bytes, L * N * F * 2 * 3);
}

// The rotary table the GPU kernels read: cos and sin of the CPU reference's angles, rounded
// once from double; pair 0 turns by t radians, the last pair by t theta^(-(hs - 2) / hs).
TEST(RopeTable, HoldsTheReferenceAnglesCosinesAndSines) {
  const int T = 300, hs = 64;
  const double theta = 10000.0;
  const std::vector<float> table = model::rope_cos_sin(T, hs, theta);
  ASSERT_EQ(table.size(), std::size_t(T) * hs);
  EXPECT_DOUBLE_EQ(model::rope_angle(7, 0, hs, theta), 7.0);
  EXPECT_DOUBLE_EQ(model::rope_angle(0, 5, hs, theta), 0.0);
  EXPECT_NEAR(model::rope_angle(299, hs / 2 - 1, hs, theta), 299.0 * std::pow(theta, -(hs - 2.0) / hs), 1e-12);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < hs / 2; ++i) {
      const double a = model::rope_angle(t, i, hs, theta);
      ASSERT_EQ(table[(std::size_t(t) * (hs / 2) + i) * 2], float(std::cos(a))) << t << "," << i;
      ASSERT_EQ(table[(std::size_t(t) * (hs / 2) + i) * 2 + 1], float(std::sin(a))) << t << "," << i;
    }
}

// The fused LM head keeps one chunk of logits: a BF16 head or an FP8 one under delayed scaling
// runs chunked; current scaling (the whole gradient's amax before its cast) and per-row /
// per-block scaling (the wgrad's copy scaled along the tokens) run the head whole.
TEST(LmHeadChunks, WhichHeadsRunInChunksAndWhatTheyHold) {
  EXPECT_EQ(model::lm_head_rows(16, 1024, 4096, nullptr), 4096);
  EXPECT_EQ(model::lm_head_rows(16, 1024, 0, nullptr), 16384);      // 0: the whole batch
  EXPECT_EQ(model::lm_head_rows(16, 1024, 16384, nullptr), 16384);  // one chunk is the whole batch
  EXPECT_EQ(model::lm_head_rows(4, 32, 4096, nullptr), 128);        // small batches: whole
  model::Fp8ModelConfig f;                                          // delayed, the head in FP8
  EXPECT_EQ(model::lm_head_rows(16, 1024, 4096, &f), 4096);
  for (auto s : {fp8::Scaling::current, fp8::Scaling::rowwise, fp8::Scaling::block}) {
    f.recipe.scaling = s;
    EXPECT_EQ(model::lm_head_rows(16, 1024, 4096, &f), 16384) << fp8::to_string(s);
  }
  f.linears.erase("lm_head");  // a BF16 head in an FP8 model
  EXPECT_EQ(model::lm_head_rows(16, 1024, 4096, &f), 4096);
  EXPECT_EQ(model::check_lm_head_chunk(0), "");
  EXPECT_EQ(model::check_lm_head_chunk(2048), "");
  EXPECT_EQ(model::check_lm_head_chunk(40), "lm_head_chunk=40 must be 0 (the whole batch) or a multiple of 16 tokens");
  EXPECT_NE(model::check_lm_head_chunk(-16), "");
}

// GPT-2 124M, B=16, T=1024: chunks of 4096 tokens hold a quarter of the FP32 logits and of
// their BF16 gradient (3.1 GB less); the FP8 head's gradient and its transpose shrink with
// them, and where the loss writes that gradient in FP8 there is no BF16 one to subtract.
TEST(LmHeadChunks, ShrinkTheLogitsAndTheHeadsFp8Scratch) {
  model::GptConfig c;
  c.vocab = 50304, c.d_model = 768, c.n_layer = 12, c.n_head = 12, c.max_seq = 1024;
  const double N = 16.0 * 1024, Vp = 50304;
  const auto whole = model::gpu_training_bytes_by_part(c, 16, 1024, true);
  const auto chunked = model::gpu_training_bytes_by_part(c, 16, 1024, true, 4096);
  EXPECT_DOUBLE_EQ(whole.logits, N * Vp * 6);
  EXPECT_DOUBLE_EQ(chunked.logits, 4096 * Vp * 6);
  EXPECT_DOUBLE_EQ(whole.total() - chunked.total(), (N - 4096) * Vp * 6);
  model::Fp8ModelConfig delayed;  // the loss casts: its BF16 gradient is subtracted, one chunk's
  constexpr auto kept = model::WeightCopies::codes_kept;
  {  // the head's wgrad transposing the whole gradient at once (records before the slices)
    const double d0 = model::gpu_fp8_bytes_delta(c, 16, 1024, delayed, 0, kept, false),
                 d1 = model::gpu_fp8_bytes_delta(c, 16, 1024, delayed, 4096, kept, false);
    // The FP8 gradient with its transpose (2 bytes a logit) shrinks to a chunk by as much as the
    // BF16 gradient it replaces (subtracted, 2 bytes a logit): the delta stays.
    EXPECT_DOUBLE_EQ(d0, d1);
    // So the FP8 run's estimate drops by the FP32 logits and FP8 gradients of the other chunks.
    EXPECT_DOUBLE_EQ((whole.total() + d0) - (chunked.total() + d1), (N - 4096) * Vp * (4 + 2));
  }
  // The transpose a slice at a time: as large as fc1's gradient transpose (N x 3072), chunked or
  // not, so only the FP8 gradient itself (1 byte a logit) shrinks with the chunk.
  const double d0 = model::gpu_fp8_bytes_delta(c, 16, 1024, delayed), d1 = model::gpu_fp8_bytes_delta(c, 16, 1024, delayed, 4096);
  EXPECT_DOUBLE_EQ(d0 - d1, -(N - 4096) * Vp);
  EXPECT_DOUBLE_EQ(model::gpu_fp8_bytes_delta(c, 16, 1024, delayed, 4096, kept, false) - d1, 4096 * Vp - N * 3072);
  model::Fp8ModelConfig current;  // runs whole: the chunk changes nothing
  current.recipe.scaling = fp8::Scaling::current;
  EXPECT_DOUBLE_EQ(model::gpu_fp8_bytes_delta(c, 16, 1024, current, 4096), model::gpu_fp8_bytes_delta(c, 16, 1024, current));
  // A BF16 head in an FP8 model: the FP8 scratch is as wide as the widest block linear (fc1's
  // 3072 columns), not the vocabulary, so the chunk does not change it.
  model::Fp8ModelConfig bf16_head;
  bf16_head.linears.erase("lm_head");
  const double d2 = model::gpu_fp8_bytes_delta(c, 16, 1024, bf16_head);
  EXPECT_DOUBLE_EQ(d2, model::gpu_fp8_bytes_delta(c, 16, 1024, bf16_head, 4096));
}

// The FP8 head's wgrad transposes its gradient in the fewest equal slices of vocabulary columns
// (multiples of 128 where they fit) that the widest layer gradient's transpose holds; where the
// loss does not write the FP8 gradient (current scaling, a BF16 head, a vocabulary the fused
// loss does not take) or the whole transpose fits, all at once.
TEST(LmHeadChunks, TheHeadsWgradTransposesSlicesNoLargerThanTheLayers) {
  auto gpt2 = [](int d, int L, int H, int V = 50304) {
    model::GptConfig c;
    c.vocab = V, c.d_model = d, c.n_layer = L, c.n_head = H, c.max_seq = 1024;
    return c;
  };
  const model::Fp8ModelConfig delayed;
  struct Case {
    int d, L, H;
    std::int64_t cols;
  };
  // 124M: 206 MB of gradient at once against 16384 x 3072 = 50.3 MB: 5 slices of 10112 (79 x
  // 128); 774M (5120): 3 of 16768; 1.56B (6400) and d=2048 (8192): 2 of 25216.
  for (const Case& k : {Case{768, 12, 12, 10112}, Case{1024, 24, 16, 12672}, Case{1280, 36, 20, 16768}, Case{1600, 48, 25, 25216},
                        Case{2048, 24, 16, 25216}}) {
    const model::GptConfig c = gpt2(k.d, k.L, k.H);
    const std::int64_t cols = model::lm_head_wgrad_columns(c, 16, 1024, 4096, delayed);
    EXPECT_EQ(cols, k.cols) << k.d;
    EXPECT_EQ(cols % 128, 0);
    EXPECT_LE(4096 * cols, 16384 * std::max(c.qkv_width(), c.fc1_width())) << k.d;
    const std::int64_t slices = (50304 + cols - 1) / cols;
    EXPECT_GT(4096 * ((50304 + slices - 2) / (slices - 1)), 16384 * std::max(c.qkv_width(), c.fc1_width())) << "one slice fewer fits";
  }
  const model::GptConfig c = gpt2(768, 12, 12);
  EXPECT_EQ(model::lm_head_wgrad_columns(c, 16, 1024, 0, delayed), 3072);                           // the whole batch's rows: 17 slices
  EXPECT_EQ(model::lm_head_wgrad_columns(gpt2(768, 12, 12, 2048), 16, 1024, 4096, delayed), 2048);  // fits whole
  model::Fp8ModelConfig current;
  current.recipe.scaling = fp8::Scaling::current;
  EXPECT_EQ(model::lm_head_wgrad_columns(c, 16, 1024, 4096, current), 50304);
  model::Fp8ModelConfig bf16_head;
  bf16_head.linears.erase("lm_head");
  EXPECT_EQ(model::lm_head_wgrad_columns(c, 16, 1024, 4096, bf16_head), 50304);
  EXPECT_EQ(model::lm_head_wgrad_columns(gpt2(768, 12, 12, 50264), 16, 1024, 4096, delayed), 50264);  // the fused loss refuses it
  // A 1056-token vocabulary over a tiny model's 128 x 256 gradient: 4 slices of 256 and one of 32.
  model::GptConfig tiny = gpt2(64, 2, 4, 1056);
  tiny.max_seq = 32;
  EXPECT_EQ(model::lm_head_wgrad_columns(tiny, 4, 32, 0, delayed), 256);
}

// The residual stream's adds in the proj and fc2 GEMMs' epilogue: no residual phase (two reads
// and a write per add), the matmul phase reads each add's C instead.
TEST(StepCosts, TheResidualAddsInTheGemmsEpilogueReadOnlyTheirC) {
  model::StepShape s;
  s.model.vocab = 50304, s.model.d_model = 768, s.model.n_layer = 12, s.model.n_head = 12, s.model.max_seq = 1024;
  s.batch = 16, s.seq_len = 1024;
  auto find = [](const std::vector<model::PhaseCost>& costs, const std::string& name) -> const model::PhaseCost* {
    for (const auto& p : costs)
      if (p.phase == name) return &p;
    return nullptr;
  };
  const double N = 16.0 * 1024, C = 768;
  for (bool fp8 : {false, true}) {
    s.fp8 = fp8, s.fp8_linears = {"qkv", "proj", "fc1", "fc2", "lm_head"};
    s.residual_epilogue = false;
    const auto kernel = model::step_costs(s);
    s.residual_epilogue = true;
    const auto epilogue = model::step_costs(s);
    ASSERT_NE(find(kernel, "residual"), nullptr);
    EXPECT_DOUBLE_EQ(find(kernel, "residual")->bytes, 12 * 2 * N * C * 2 * 3);
    EXPECT_EQ(find(epilogue, "residual"), nullptr);
    EXPECT_DOUBLE_EQ(find(epilogue, "matmul")->serial_bytes - find(kernel, "matmul")->serial_bytes, 12 * 2 * N * C * 2);
  }
}

// BF16 logits: half the bytes the head's output and the loss's input take (estimate and cost
// model); a chunked head's wgrad reads and writes its FP32 weight gradient once per chunk.
TEST(LmHeadChunks, Bf16LogitsAndTheChunksInTheCostModel) {
  model::GptConfig c;
  c.vocab = 50304, c.d_model = 768, c.n_layer = 12, c.n_head = 12, c.max_seq = 1024;
  const double N = 16.0 * 1024, V = 50304, C = 768;
  EXPECT_DOUBLE_EQ(model::gpu_training_bytes_by_part(c, 16, 1024, true, 0, true).logits, N * V * (2 + 2));
  EXPECT_DOUBLE_EQ(model::gpu_training_bytes_by_part(c, 16, 1024, true, 4096, true).logits, 4096 * V * (2 + 2));
  model::StepShape s;
  s.model = c, s.batch = 16, s.seq_len = 1024;
  auto find = [](const std::vector<model::PhaseCost>& costs, const std::string& name) {
    for (const auto& p : costs)
      if (p.phase == name) return p;
    return model::PhaseCost{};
  };
  EXPECT_DOUBLE_EQ(find(model::step_costs(s), "loss").bytes, N * V * (4 + 2));
  s.bf16_logits = true;
  EXPECT_DOUBLE_EQ(find(model::step_costs(s), "loss").bytes, N * V * (2 + 2));
  EXPECT_DOUBLE_EQ(find(model::step_costs(s), "lm_head").serial_bytes, 0.0);  // BF16 head, whole
  s.head_chunks = 4;
  EXPECT_DOUBLE_EQ(find(model::step_costs(s), "lm_head").serial_bytes, 3 * V * C * 8);
}
