// probe_train's and probe_recipe's points: what is refused before any GPU work starts.
#include "fp8scope/core/error.hpp"
#include "train/train_point.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <set>

using namespace fp8scope;
TEST(TrainPoint, RejectedBeforeAnyGpuWork) {
  core::json point = core::json::object();
  for (const auto& a : train::train_axes()) point[a.name] = a.default_value;
  const core::json h200 = {{"gpu", {{"name", "NVIDIA H200"}, {"memory_mib", 143155}}}};
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), h200), "");
  point["n_head"] = 5;
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), h200), "n_head=5 does not divide d_model=64");
  point["n_head"] = 4;
  point["min_lr"] = 1.0;  // a swapped pair: the schedule would rise
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), h200),
            fmt::format("min_lr=1 is above lr={}: the learning rate decays from lr to min_lr", point["lr"].get<double>()));
  point["min_lr"] = point["lr"];  // a constant rate after warm-up is fine
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), h200), "");
  point["seq_len"] = 2048;
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), h200),
            "seq_len=2048 is larger than the position table (max_seq=1024)");
  // GPT-2 124M at B=512, T=1024 on the GPU: far beyond 140 GiB.
  point = {{"backend", "gpu"}, {"vocab", 50304},  {"pad_vocab_to", 1},   {"d_model", 768},   {"n_layer", 12}, {"n_head", 12},
           {"max_seq", 1024},  {"seq_len", 1024}, {"batch", 512},        {"tied", true},     {"steps", 1},    {"lr", 6e-4},
           {"min_lr", 6e-5},   {"warmup", 0},     {"weight_decay", 0.1}, {"grad_clip", 1.0}, {"seed", 1},     {"data", "synthetic"}};
  const std::string e = train::check_train_point(train::train_point_from(point), h200);
  EXPECT_EQ(e.rfind("needs about ", 0), 0u) << e;
  EXPECT_NE(e.find("the GPU (NVIDIA H200) has 139.8 GiB"), std::string::npos) << e;
  // The measured B=16 run (17.7 GiB on the H200) fits, and the estimate is not below it.
  point["batch"] = 16;
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), h200), "");
  EXPECT_GT(model::gpu_training_bytes(train::train_point_from(point).model, 16, 1024), 17.0 * (1 << 30));
  // The CPU reference refuses sizes it cannot train in reasonable time.
  point["backend"] = "cpu";
  EXPECT_NE(train::check_train_point(train::train_point_from(point), h200).find("use backend gpu"), std::string::npos);
}

// lm_head_chunk: a multiple of 16 (0: the whole batch), refused otherwise with one line; the
// memory check counts one chunk of logits (GPT-2 124M at B=256 fits an H200 only chunked).
TEST(TrainPoint, LmHeadChunkIsAMultipleOf16AndShrinksTheEstimate) {
  core::json point = core::json::object();
  for (const auto& a : train::train_axes()) point[a.name] = a.default_value;
  EXPECT_EQ(point["lm_head_chunk"], 4096);
  point["lm_head_chunk"] = 100;
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()),
            "lm_head_chunk=100 must be 0 (the whole batch) or a multiple of 16 tokens");
  const core::json h200 = {{"gpu", {{"name", "NVIDIA H200"}, {"memory_mib", 143155}}}};
  point = {{"backend", "gpu"}, {"vocab", 50304},  {"d_model", 768}, {"n_layer", 12},        {"n_head", 12},
           {"max_seq", 1024},  {"seq_len", 1024}, {"batch", 256},   {"attention", "flash"}, {"lm_head_chunk", 4096}};
  for (const auto& a : train::train_axes())
    if (!point.contains(a.name)) point[a.name] = a.default_value;
  const train::TrainPoint chunked = train::train_point_from(point);
  EXPECT_EQ(train::check_train_point(chunked, h200), "");
  point["lm_head_chunk"] = 0;
  const train::TrainPoint whole = train::train_point_from(point);
  EXPECT_EQ(train::check_train_point(whole, h200).rfind("needs about ", 0), 0u);
  EXPECT_DOUBLE_EQ(train::gpu_bytes_needed(whole, nullptr) - train::gpu_bytes_needed(chunked, nullptr), (262144.0 - 4096) * 50304 * 6);
}

// cuda_graph: each step one CUDA graph unless the point says false; a record made before the
// axis existed ran kernel by kernel, and reading it back says so.
TEST(TrainPoint, StepsAreOneCudaGraphUnlessTheyOptOut) {
  core::json point = core::json::object();
  for (const auto& a : train::train_axes()) point[a.name] = a.default_value;
  EXPECT_EQ(point["cuda_graph"], true);
  EXPECT_TRUE(train::train_point_from(point).gpu.cuda_graph);
  point["cuda_graph"] = false;
  EXPECT_FALSE(train::train_point_from(point).gpu.cuda_graph);
  point.erase("cuda_graph");
  EXPECT_FALSE(train::train_point_from(point).gpu.cuda_graph);
}

// wgrad: the weight gradients' GEMMs write their tensors whole unless a point asks them to add;
// records made before the axis added (every gradient zeroed, beta 1).
TEST(TrainPoint, WeightGradientsAreWrittenWholeUnlessTheyAdd) {
  core::json point = core::json::object();
  for (const auto& a : train::train_axes()) point[a.name] = a.default_value;
  EXPECT_EQ(point["wgrad"], "write");
  EXPECT_TRUE(train::train_point_from(point).gpu.overwrite_wgrad);
  point["wgrad"] = "add";
  EXPECT_FALSE(train::train_point_from(point).gpu.overwrite_wgrad);
  point.erase("wgrad");
  EXPECT_FALSE(train::train_point_from(point).gpu.overwrite_wgrad);
}

TEST(TrainPoint, GpuWidthLimit) {
  core::json point = core::json::object();
  for (const auto& a : train::train_axes()) point[a.name] = a.default_value;
  point["backend"] = "gpu";
  point["d_model"] = 16384;
  point["n_head"] = 128;
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()),
            "d_model=16384: the GPU model's kernels need a multiple of 8, at most 8192");
  point["d_model"] = 1600;  // GPT-2 XL
  point["n_head"] = 25;
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()), "");
  point["d_model"] = 100;  // not a multiple of 8 (16-byte vector loads)
  point["n_head"] = 4;
  EXPECT_NE(train::check_train_point(train::train_point_from(point), core::json::object()), "");
  point["d_model"] = 96;
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()), "");
}

// The GPU model's Llama block runs in the fused attention (so not in the fp8_attention
// variant); anything else is refused before a worker starts.
TEST(TrainPoint, LlamaOnTheGpuNeedsTheFusedAttention) {
  core::json point = core::json::object();
  for (const auto& a : train::probe_train_axes()) point[a.name] = a.default_value;
  point["arch"] = "llama", point["n_kv_head"] = 2, point["tied"] = false;
  const auto tp = train::train_point_from(point);
  EXPECT_TRUE(tp.model.llama());
  EXPECT_EQ(tp.model.kv_heads(), 2);
  EXPECT_EQ(train::check_train_point(tp, core::json::object()), "");
  point["backend"] = "gpu";
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()), "arch llama on the GPU needs attention flash");
  point["attention"] = "flash", point["d_model"] = 256, point["seq_len"] = 64;  // head size 64
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()), "");
  point["precision"] = "fp8", point["variant"] = "fused";
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()), "");
  point["variant"] = "fp8_attention";
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()),
            "attention flash cannot run the fp8_attention variant (it quantises the materialised probabilities)");
}

// flash_kernel picks among the fused attention's kernels, so it means nothing without them.
TEST(TrainPoint, FlashKernelNeedsTheFusedAttention) {
  core::json point = core::json::object();
  for (const auto& a : train::probe_train_axes()) point[a.name] = a.default_value;
  point["backend"] = "gpu", point["flash_kernel"] = "wgmma_tma";
  const auto tp = train::train_point_from(point);
  EXPECT_EQ(tp.gpu.flash_kernel, "wgmma_tma");
  EXPECT_EQ(train::check_train_point(tp, core::json::object()),
            "flash_kernel wgmma_tma picks the fused attention's kernels; it needs attention flash");
  point["attention"] = "flash", point["d_model"] = 256, point["seq_len"] = 64;  // head size 64
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()), "");
}

// gemm_algos times cuBLASLt's candidates: the CPU reference has none to time.
TEST(TrainPoint, GemmAlgosNeedsTheGpuBackend) {
  core::json point = core::json::object();
  for (const auto& a : train::probe_train_axes()) point[a.name] = a.default_value;
  EXPECT_EQ(train::train_point_from(point).gpu.gemm_algos, 1);
  point["gemm_algos"] = 8;
  EXPECT_EQ(train::train_point_from(point).gpu.gemm_algos, 8);
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()),
            "gemm_algos=8 times cuBLASLt's algorithms; it needs backend gpu (the CPU reference has none)");
  point["backend"] = "gpu";
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()), "");
}

// gelu_cast gemm_epilogue: in FP8 fc1's cuBLASLt GEMM writes fc2's FP8 input, so it needs the
// fused path under delayed scaling with both linears in FP8, the E4M3 GELU input, saturating
// casts; in both precisions GPT-2 and the GPU; each refusal is one line that says what is
// missing.
TEST(TrainPoint, GeluEpilogueNeedsTheFusedDelayedGpt2PathOnTheGpu) {
  core::json point = core::json::object();
  for (const auto& a : train::probe_train_axes()) point[a.name] = a.default_value;
  EXPECT_EQ(point["gelu_cast"], "kernel");
  point["precision"] = "fp8", point["backend"] = "gpu", point["variant"] = "fused", point["scaling"] = "delayed";
  point["gelu_cast"] = "gemm_epilogue";
  auto check = [&] { return train::check_train_point(train::train_point_from(point), core::json::object()); };
  EXPECT_TRUE(train::train_point_from(point).fp8->gelu_epilogue);
  EXPECT_EQ(check(), "");
  const std::string needs_fused =
      "gelu_cast gemm_epilogue writes fc2's FP8 input from fc1's GEMM: it needs variant fused (or fp8_attention), scaling delayed and "
      "fc1, fc2 in FP8";
  point["variant"] = "custom";
  EXPECT_EQ(check(), needs_fused);
  point["variant"] = "fused", point["scaling"] = "current";
  EXPECT_EQ(check(), needs_fused);
  point["scaling"] = "delayed", point["fp8_linears"] = "qkv,proj,fc1";
  EXPECT_EQ(check(), needs_fused);
  point["fp8_linears"] = "all", point["gelu_input"] = "bf16";
  EXPECT_EQ(check(), "gelu_cast gemm_epilogue keeps the GELU's input as the GEMM's E4M3 aux output: it needs gelu_input e4m3");
  point["gelu_input"] = "e4m3", point["saturation"] = "nosat";
  EXPECT_EQ(check(), "gelu_cast gemm_epilogue converts to FP8 in cuBLASLt, which saturates: saturation nosat cannot hold there");
  point["saturation"] = "satfinite", point["arch"] = "llama", point["attention"] = "flash", point["d_model"] = 256, point["seq_len"] = 64;
  EXPECT_EQ(check(), "gelu_cast gemm_epilogue applies GPT-2's GELU; arch llama has a SwiGLU");
  point["arch"] = "gpt2", point["attention"] = "materialized", point["backend"] = "cpu";
  EXPECT_EQ(check(),
            "gelu_cast gemm_epilogue is a cuBLASLt epilogue; it needs backend gpu (the CPU reference applies the GELU to unrounded "
            "values either way)");
  // BF16 takes the epilogues too (its twin of an FP8 run with them), GPT-2 on the GPU only.
  point["backend"] = "gpu", point["precision"] = "bf16", point["variant"] = "custom", point["scaling"] = "current";
  EXPECT_TRUE(train::train_point_from(point).gpu.gelu_epilogue);
  EXPECT_EQ(check(), "");
  point["arch"] = "llama", point["attention"] = "flash";
  EXPECT_EQ(check(), "gelu_cast gemm_epilogue applies GPT-2's GELU; arch llama has a SwiGLU");
}

TEST(TrainPoint, DataParallelNeedsTheGpuBackendAndEnoughGpus) {
  core::json point = core::json::object();
  for (const auto& a : train::probe_train_axes()) point[a.name] = a.default_value;
  point["ranks"] = 2;
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()),
            "ranks=2 needs backend gpu (data parallelism runs on GPUs)");
  point["backend"] = "gpu";
  const core::json one_gpu = {{"gpu", {{"count", 1}, {"memory_mib", 143771}, {"name", "NVIDIA H200"}}}};
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), one_gpu),
            "ranks=2 from --device 0 needs GPUs 0..1; this machine has 1 (0..0)");
  point["ranks"] = 1;
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), one_gpu), "");
  // The ranks start at --device: two GPUs from device 1 of a two-GPU machine do not exist.
  point["ranks"] = 2;
  const core::json second_of_two = {{"gpu", {{"count", 2}, {"index", 1}, {"memory_mib", 143771}, {"name", "NVIDIA H200"}}}};
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), second_of_two),
            "ranks=2 from --device 1 needs GPUs 1..2; this machine has 2 (0..1)");
  // Tokens per step count every rank's batch; MFU stays per GPU.
  point["ranks"] = 2;
  const auto tp = train::train_point_from(point);
  core::Record r = core::make_record("k", point, core::Outcome::ok);
  train::fill_train_record(r, tp, {{4.0, 1.0, 1e-3, 10.0}, {3.9, 1.0, 1e-3, 10.0}}, 0, 1e15);
  EXPECT_DOUBLE_EQ(r.data["metrics"]["tokens_per_s"].get<double>(), 2.0 * tp.batch * tp.seq_len / 0.010);
  EXPECT_DOUBLE_EQ(r.data["metrics"]["tokens_per_s_per_gpu"].get<double>(), double(tp.batch) * tp.seq_len / 0.010);
  EXPECT_NEAR(r.data["metrics"]["mfu"].get<double>(), train::train_flops_per_step(tp.model, tp.batch, tp.seq_len) / 0.010 / 1e15, 1e-12);
}

TEST(TrainPoint, FlashAttentionNeedsHeadSize64Or128AndFullTiles) {
  core::json point = core::json::object();
  for (const auto& a : train::probe_train_axes()) point[a.name] = a.default_value;
  point["backend"] = "gpu";
  point["attention"] = "flash";
  point["d_model"] = 128, point["n_head"] = 2, point["seq_len"] = 128, point["max_seq"] = 128;
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()), "");
  point["seq_len"] = 96;
  EXPECT_NE(train::check_train_point(train::train_point_from(point), core::json::object()).find("multiple of 64"), std::string::npos);
  point["seq_len"] = 128;
  point["n_head"] = 4;  // head size 32
  EXPECT_NE(train::check_train_point(train::train_point_from(point), core::json::object()).find("head size 64 or 128"), std::string::npos);
  point["n_head"] = 1;  // head size 128
  EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()), "");
  point["d_model"] = 192, point["n_head"] = 2;  // head size 96
  EXPECT_NE(train::check_train_point(train::train_point_from(point), core::json::object()).find("head size 96"), std::string::npos);
  point["d_model"] = 128, point["n_head"] = 2;
  point["precision"] = "fp8";
  point["variant"] = "fp8_attention";
  EXPECT_NE(train::check_train_point(train::train_point_from(point), core::json::object()).find("fp8_attention"), std::string::npos);
}

// Rowwise and block scaling run on both backends; FP8 attention keeps per-tensor scales.
TEST(TrainPoint, RowwiseAndBlockScalingScaleTheLinearsOnBothBackends) {
  core::json point = core::json::object();
  for (const auto& a : train::probe_train_axes()) point[a.name] = a.default_value;
  point["precision"] = "fp8";
  for (const char* s : {"rowwise", "block"}) {
    point["scaling"] = s;
    point["backend"] = "cpu";
    point["variant"] = "custom";
    EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()), "");
    point["variant"] = "fp8_attention";
    EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()),
              fmt::format("scaling {} scales the linears; variant fp8_attention needs delayed or current", s));
    point["variant"] = "custom";
    point["backend"] = "gpu";  // the GPU model has the per-row / per-block casts too
    EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()), "");
  }
}

// block_scales: FP32 scales unless asked (and in records made before the axis); pow2 only
// where there are per-row / per-block scales to round.
TEST(TrainPoint, PowerOfTwoScalesAreForRowwiseAndBlockScaling) {
  core::json point = core::json::object();
  for (const auto& a : train::probe_train_axes()) point[a.name] = a.default_value;
  point["precision"] = "fp8";
  EXPECT_EQ(point["block_scales"], "fp32");
  EXPECT_FALSE(train::train_point_from(point).fp8->recipe.pow2_block_scales);
  point["block_scales"] = "pow2";
  for (const char* s : {"rowwise", "block"}) {
    point["scaling"] = s;
    const auto tp = train::train_point_from(point);
    EXPECT_TRUE(tp.fp8->recipe.pow2_block_scales);
    EXPECT_EQ(train::check_train_point(tp, core::json::object()), "");
  }
  for (const char* s : {"delayed", "current"}) {
    point["scaling"] = s;
    EXPECT_EQ(train::check_train_point(train::train_point_from(point), core::json::object()),
              fmt::format("block_scales pow2 rounds the scales of scaling rowwise and block; scaling {} keeps one scale per tensor (tie "
                          "the two in a zip group)",
                          s));
  }
  core::json old = point;
  old.erase("block_scales");
  old["scaling"] = "block";
  EXPECT_FALSE(train::train_point_from(old).fp8->recipe.pow2_block_scales);
}

// `probe_train --list` plans a sweep without a GPU: each GPU point's device memory estimate by
// part, and an FP8 point's against its BF16 twin (GPT-2 774M at B=16: measured 38094 and 30529
// MiB on an H100, results/h100/train_sizes.json).
TEST(TrainPoint, ListingPlansEachGpuPointsMemory) {
  core::json point = core::json::object();
  for (const auto& a : train::probe_train_axes()) point[a.name] = a.default_value;
  EXPECT_EQ(train::memory_plan(train::train_point_from(point)), "");  // the CPU reference: nothing to plan
  point.update({{"backend", "gpu"},
                {"vocab", 50304},
                {"d_model", 1280},
                {"n_layer", 36},
                {"n_head", 20},
                {"max_seq", 1024},
                {"seq_len", 1024},
                {"batch", 16},
                {"attention", "flash"},
                {"variant", "fused"}});
  const std::string bf16 = train::memory_plan(train::train_point_from(point));
  EXPECT_EQ(bf16.rfind("memory ~37.4 GiB: parameters 13.0, activations 22.6, logits 1.2, scratch 0.7", 0), 0u) << bf16;
  EXPECT_EQ(bf16.find("FP8"), std::string::npos) << bf16;
  point["precision"] = "fp8";
  const std::string fp8 = train::memory_plan(train::train_point_from(point));
  // weight_cast optimizer (the default) keeps every layer's FP8 block weights: 0.66 GiB. (The
  // head's wgrad transposes its gradient in three slices: 0.11 GiB less than all at once.)
  EXPECT_NE(fp8.find("memory ~30.5 GiB"), std::string::npos) << fp8;
  EXPECT_NE(fp8.find("FP8 -6.8 (0.82x the BF16 twin's 37.4)"), std::string::npos) << fp8;
  EXPECT_EQ(fp8.find("tokens"), std::string::npos) << fp8;  // the chunk holds
  point["weight_cast"] = "forward";
  const std::string per_layer = train::memory_plan(train::train_point_from(point));
  EXPECT_NE(per_layer.find("memory ~29.9 GiB"), std::string::npos) << per_layer;
  EXPECT_NE(per_layer.find("FP8 -7.5 (0.80x the BF16 twin's 37.4)"), std::string::npos) << per_layer;
  point["weight_cast"] = "optimizer";
  // Per-block scaling runs an FP8 head over the whole batch whatever lm_head_chunk asks (GPT-2
  // 124M: measured 12500 MiB against its BF16 twin's 8265 on an H100,
  // results/h100/train_scaling_gpt2_124m.json); the plan says why.
  point.update({{"d_model", 768}, {"n_layer", 12}, {"n_head", 12}, {"scaling", "block"}, {"variant", "custom"}, {"lm_head_chunk", 4096}});
  const std::string block = train::memory_plan(train::train_point_from(point));
  EXPECT_NE(block.find("; the FP8 head over all 16384 tokens under block scaling (an FP8 head runs lm_head_chunk=4096 under delayed "
                       "scaling only)"),
            std::string::npos)
      << block;
  point["scaling"] = "delayed";
  EXPECT_EQ(train::memory_plan(train::train_point_from(point)).find("tokens"), std::string::npos);
}
