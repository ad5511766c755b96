// GEMM micro-benchmarks: FP8 (E4M3 x E4M3, E4M3 x E5M2) and BF16 at the GPT-2 124M training
// shapes and at square 4096/8192/16384, through the heuristic's first cuBLASLt algorithm.
// Counters: TFLOP/s and the algorithm chosen (id, tile, stages).
#include "bench_common.hpp"

#include "fp8scope/gemm/kernels.cuh"
#include "fp8scope/gemm/lt_matmul.hpp"

#include <fmt/format.h>

#include <memory>

using namespace fp8scope;

namespace {

struct Shape {
  std::string name;
  std::int64_t m, n, k;
  bool grad;  // gradient GEMMs: B is the gradient, no fast accumulation
};

void bm_gemm(benchmark::State& state, Shape sh, gemm::DType a, gemm::DType b) {
  if (!bench::gpu_problem().empty()) {
    state.SkipWithError(bench::gpu_problem().c_str());
    return;
  }
  gemm::GemmSpec s;
  s.m = sh.m, s.n = sh.n, s.k = sh.k;
  s.a = a, s.b = b, s.c = s.d = gemm::DType::bf16;
  s.fast_accum = !sh.grad;
  const float qa = gemm::is_fp8(a) ? 56.0f : 1.0f, qb = gemm::is_fp8(b) ? (b == gemm::DType::e5m2 ? 7168.0f : 56.0f) : 1.0f;
  core::DeviceBuffer A(std::size_t(s.k * s.m) * gemm::size_of(a)), B(std::size_t(s.k * s.n) * gemm::size_of(b)),
      D(std::size_t(s.m * s.n) * 2), scales(64), ws(s.workspace_bytes);
  gemm::fill_normal(A.get(), a, s.k * s.m, qa, 1, bench::stream());
  gemm::fill_normal(B.get(), b, s.k * s.n, qb, 2, bench::stream());
  const float sc[8] = {1 / qa, 0, 0, 0, 1 / qb};
  FP8S_CUDA(cudaMemcpy(scales.get(), sc, sizeof sc, cudaMemcpyHostToDevice));
  gemm::LtPointers p;
  p.a = A.get(), p.b = B.get(), p.c = D.get(), p.d = D.get();
  p.a_scale = scales.as<float>(), p.b_scale = scales.as<float>() + 4, p.workspace = ws.get();
  gemm::LtHandle h;
  gemm::LtMatmul mm(s, p);
  auto heur = mm.heuristic(h, 1, false);
  if (mm.setup_status() || heur.status || heur.results.empty()) {
    state.SkipWithError("cuBLASLt offers no algorithm for this GEMM");
    return;
  }
  const auto algo = heur.results[0].algo;
  const double secs = bench::run_timed(state, [&] { mm.run(h, algo, bench::stream()); });
  const auto info = gemm::algo_json(heur.results[0]);
  state.counters["TFLOP/s"] = s.flops() * double(state.iterations()) / secs / 1e12;
  state.counters["algo_id"] = double(info["id"].get<long long>());
  state.counters["tile"] = double(info["tile"].get<long long>());
  state.counters["stages"] = double(info["stages"].get<long long>());
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t T = 16 * 1024, d = 768, V = 50304;
  std::vector<Shape> shapes;
  const std::pair<const char*, std::pair<std::int64_t, std::int64_t>> linears[] = {
      {"qkv", {d, 3 * d}}, {"proj", {d, d}}, {"fc1", {d, 4 * d}}, {"fc2", {4 * d, d}}, {"lm_head", {d, V}}};
  for (auto& [name, io] : linears) {
    const auto [in, out] = io;
    shapes.push_back({fmt::format("{}.fprop", name), out, T, in, false});
    shapes.push_back({fmt::format("{}.dgrad", name), in, T, out, true});
    shapes.push_back({fmt::format("{}.wgrad", name), in, out, T, true});
  }
  for (std::int64_t n : {4096, 8192, 16384}) shapes.push_back({fmt::format("square{}", n), n, n, n, false});
  using gemm::DType;
  for (auto& sh : shapes) {
    const DType b8 = sh.grad ? DType::e5m2 : DType::e4m3;
    benchmark::RegisterBenchmark(fmt::format("gemm/fp8_e4m3x{}/{}", gemm::to_string(b8), sh.name).c_str(),
                                 [sh, b8](benchmark::State& st) { bm_gemm(st, sh, DType::e4m3, b8); })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
    if (sh.name.rfind("square", 0) == 0)
      benchmark::RegisterBenchmark(fmt::format("gemm/fp8_e4m3xe5m2/{}", sh.name).c_str(),
                                   [sh](benchmark::State& st) { bm_gemm(st, sh, DType::e4m3, DType::e5m2); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(fmt::format("gemm/bf16/{}", sh.name).c_str(),
                                 [sh](benchmark::State& st) { bm_gemm(st, sh, DType::bf16, DType::bf16); })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::Initialize(&argc, argv);
  bench::add_env_context();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
