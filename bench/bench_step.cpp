// One GPT-2 124M training step (B=16, T=1024, V=50304): forward, backward, AdamW, in BF16 and
// in FP8 (HYBRID, delayed scaling, history 1024, each variant; taps every 100 steps), with the
// materialised attention and with the fused (flash) kernels; the fused ones also captured as a
// CUDA graph and replayed (/graph; the others launch kernel by kernel, with no host
// synchronisation inside the step either way).
// Wall time per step (the step ends with a synchronisation to read the loss and the gradient norm).
#include "bench_common.hpp"

#include "fp8scope/gpu_model/gpt_gpu.hpp"
#include "fp8scope/model/data.hpp"

#include <memory>

using namespace fp8scope;

namespace {
void bm_step(benchmark::State& state, std::optional<model::Fp8Variant> variant, bool flash, bool graph) {
  if (!bench::gpu_problem().empty()) {
    state.SkipWithError(bench::gpu_problem().c_str());
    return;
  }
  model::GptConfig cfg;
  cfg.vocab = 50304;
  const int B = 16, T = 1024;
  model::Fp8ModelConfig f;
  f.variant = variant.value_or(model::Fp8Variant::custom);
  f.tap_interval = 100;
  gpu_model::GpuGpt gpt(cfg, B, T, bench::stream(), variant ? &f : nullptr, {.flash_attention = flash, .cuda_graph = graph});
  gpt.set_params(model::init_params(cfg, 1));
  model::MarkovTokens data(cfg.vocab, 1);
  std::vector<int> in, tg;
  data.next_batch(B, T, in, tg);
  // Warm-up: GEMM plans, first touch, and with graphs one uncaptured step and the capture
  // (taps every 100 steps: the recording graph comes later, at the 100th step).
  for (int i = 0; i < 3; ++i) gpt.train_step(in.data(), tg.data(), 6e-4f, 1.0f, {});
  for (auto _ : state) benchmark::DoNotOptimize(gpt.train_step(in.data(), tg.data(), 6e-4f, 1.0f, {}));
  state.counters["tokens/s"] = benchmark::Counter(double(B) * T, benchmark::Counter::kIsIterationInvariantRate);
}
}  // namespace

int main(int argc, char** argv) {
  auto reg = [](const char* name, std::optional<model::Fp8Variant> v, bool flash = false, bool graph = false) {
    benchmark::RegisterBenchmark(name, [v, flash, graph](benchmark::State& s) { bm_step(s, v, flash, graph); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->MinTime(3.0);
  };
  reg("step/gpt2_124m/bf16", std::nullopt);
  reg("step/gpt2_124m/fp8_custom", model::Fp8Variant::custom);
  reg("step/gpt2_124m/fp8_fused", model::Fp8Variant::fused);
  reg("step/gpt2_124m/fp8_attention", model::Fp8Variant::fp8_attention);
  reg("step/gpt2_124m/bf16_flash", std::nullopt, true);
  reg("step/gpt2_124m/fp8_fused_flash", model::Fp8Variant::fused, true);
  reg("step/gpt2_124m/bf16_flash/graph", std::nullopt, true, true);
  reg("step/gpt2_124m/fp8_fused_flash/graph", model::Fp8Variant::fused, true, true);
  benchmark::Initialize(&argc, argv);
  bench::add_env_context();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
