// One GPT-2 124M training step (B=16, T=1024, V=50304, BF16): forward, backward, AdamW.
// Wall time per step (the step synchronises to read the loss and the gradient norm).
#include "bench_common.hpp"

#include "fp8scope/model/data.hpp"
#include "fp8scope/model/gpt_gpu.hpp"

using namespace fp8scope;

namespace {
void bm_step_bf16(benchmark::State& state) {
  if (!bench::gpu_problem().empty()) {
    state.SkipWithError(bench::gpu_problem().c_str());
    return;
  }
  model::GptConfig cfg;
  cfg.vocab = 50304;
  const int B = 16, T = 1024;
  model::GpuGpt gpt(cfg, B, T, bench::stream());
  gpt.set_params(model::init_params(cfg, 1));
  model::MarkovTokens data(cfg.vocab, 1);
  std::vector<int> in, tg;
  data.next_batch(B, T, in, tg);
  for (int i = 0; i < 3; ++i) {  // warm-up: GEMM plans, first touch
    gpt.forward(in.data(), tg.data());
    gpt.backward();
    gpt.step(6e-4f, 1.0f, {});
  }
  for (auto _ : state) {
    gpt.forward(in.data(), tg.data());
    gpt.backward();
    benchmark::DoNotOptimize(gpt.step(6e-4f, 1.0f, {}));
    FP8S_CUDA(cudaStreamSynchronize(bench::stream()));
  }
  state.counters["tokens/s"] = benchmark::Counter(double(B) * T, benchmark::Counter::kIsIterationInvariantRate);
}
}  // namespace

BENCHMARK(bm_step_bf16)->Name("step/gpt2_124m/bf16")->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);
BENCHMARK_MAIN();
