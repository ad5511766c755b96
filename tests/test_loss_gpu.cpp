// The fused cross-entropy kernel on its own against a double-precision softmax on the host:
// the fast path (padded vocabulary, row kept in shared memory) and the general one (a row
// length that is not a multiple of 4). Tolerances: the loss is an FP32 log-sum-exp of up to
// 50K terms (relative error ~1e-6 of ~11); the gradient is rounded to BF16 (relative 2^-9).
// Then BF16 logits and chunks of rows against the FP32 whole-batch launch.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/gpu_model/kernels.cuh"
#include "gpu_test_util.hpp"
#include "model_test_util.hpp"

#include <cuda_bf16.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

using namespace fp8scope;

// (V, Vp, N). Every case is launched twice and must give the same bits.
class CrossEntropyGpu : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(CrossEntropyGpu, LossAndGradientMatchADoubleSoftmax) {
  FP8SCOPE_REQUIRE_GPU();
  const auto [V, Vp, N] = GetParam();
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> z(std::size_t(N) * Vp);
  for (auto& x : z) x = d(rng);
  std::vector<int> targets(N);
  for (int r = 0; r < N; ++r) targets[r] = int(rng() % unsigned(V));
  targets[0] = V - 1;  // the last real column

  core::DeviceBuffer dz(z.size() * 4), dt(std::size_t(N) * 4), dl(std::size_t(N) * 4), dg(z.size() * 2);
  FP8S_CUDA(cudaMemcpy(dz.get(), z.data(), dz.size(), cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(dt.get(), targets.data(), dt.size(), cudaMemcpyHostToDevice));
  gpu_model::cross_entropy_forward_backward(dl.as<float>(), dg.as<__nv_bfloat16>(), dz.as<float>(), dt.as<int>(), N, N, V, Vp, nullptr);
  std::vector<float> loss(targets.size()), loss2(targets.size());
  std::vector<__nv_bfloat16> g(z.size()), g2(z.size());
  FP8S_CUDA(cudaMemcpy(loss.data(), dl.get(), dl.size(), cudaMemcpyDeviceToHost));
  FP8S_CUDA(cudaMemcpy(g.data(), dg.get(), dg.size(), cudaMemcpyDeviceToHost));
  FP8S_CUDA(cudaMemset(dl.get(), 0xFF, dl.size()));
  FP8S_CUDA(cudaMemset(dg.get(), 0xFF, dg.size()));
  gpu_model::cross_entropy_forward_backward(dl.as<float>(), dg.as<__nv_bfloat16>(), dz.as<float>(), dt.as<int>(), N, N, V, Vp, nullptr);
  FP8S_CUDA(cudaMemcpy(loss2.data(), dl.get(), dl.size(), cudaMemcpyDeviceToHost));
  FP8S_CUDA(cudaMemcpy(g2.data(), dg.get(), dg.size(), cudaMemcpyDeviceToHost));
  EXPECT_EQ(std::memcmp(loss.data(), loss2.data(), loss.size() * 4), 0) << "a second launch differs";
  EXPECT_EQ(std::memcmp(g.data(), g2.data(), g.size() * 2), 0) << "a second launch differs";

  std::vector<double> want, got;
  for (int r = 0; r < N; ++r) {
    const float* row = z.data() + std::size_t(r) * Vp;
    double m = -INFINITY, s = 0;
    for (int v = 0; v < V; ++v) m = std::max(m, double(row[v]));
    for (int v = 0; v < V; ++v) s += std::exp(double(row[v]) - m);
    const double lse = m + std::log(s);
    EXPECT_NEAR(loss[r], lse - row[targets[r]], 2e-4) << "row " << r;
    for (int v = 0; v < Vp; ++v) {
      const double gv = double(__bfloat162float(g[std::size_t(r) * Vp + v]));
      if (v >= V) {
        EXPECT_EQ(gv, 0.0) << "padded column " << v;
        continue;
      }
      want.push_back((std::exp(double(row[v]) - lse) - (v == targets[r] ? 1.0 : 0.0)) / N);
      got.push_back(gv);
    }
  }
  EXPECT_LT(test::rel_err(got, want), 1e-2);
}

INSTANTIATE_TEST_SUITE_P(Vocab, CrossEntropyGpu,
                         ::testing::Values(std::tuple{50257, 50304, 6}, std::tuple{50257, 50304, 700}, std::tuple{96, 96, 6},
                                           std::tuple{1000, 1001, 6}),
                         [](const auto& i) {
                           return "V" + std::to_string(std::get<0>(i.param)) + "_Vp" + std::to_string(std::get<1>(i.param)) + "_N" +
                                  std::to_string(std::get<2>(i.param));
                         });

// The loss's other inputs: BF16 logits (the head's output with logits: bf16) give the loss of
// their FP32 values (the rows are summed in another grouping, so within FP32 rounding, not to
// the bit), and the rows of one chunk with the whole batch's count to average over give the
// whole launch's losses and gradient bit for bit (the fused LM head's chunks). Both paths: the
// clusters' (Vp 50304) and the general one (Vp 1001).
class CrossEntropyGpuInputs : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(CrossEntropyGpuInputs, Bf16LogitsAndChunksOfRows) {
  FP8SCOPE_REQUIRE_GPU();
  const auto [V, Vp] = GetParam();
  const int N = 6, split = 4;  // chunks of rows [0, 4) and [4, 6)
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<__nv_bfloat16> zb(std::size_t(N) * Vp);
  std::vector<float> zf(zb.size());
  for (std::size_t i = 0; i < zb.size(); ++i) zb[i] = __float2bfloat16(d(rng)), zf[i] = __bfloat162float(zb[i]);
  std::vector<int> targets(N);
  for (int r = 0; r < N; ++r) targets[r] = int(rng() % unsigned(V));
  core::DeviceBuffer dzf(zf.size() * 4), dzb(zb.size() * 2), dt(std::size_t(N) * 4), dl(std::size_t(N) * 4), dg(zf.size() * 2);
  FP8S_CUDA(cudaMemcpy(dzf.get(), zf.data(), dzf.size(), cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(dzb.get(), zb.data(), dzb.size(), cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(dt.get(), targets.data(), dt.size(), cudaMemcpyHostToDevice));
  auto fetch = [&](std::vector<float>& loss, std::vector<__nv_bfloat16>& g) {
    loss.resize(std::size_t(N)), g.resize(zf.size());
    FP8S_CUDA(cudaMemcpy(loss.data(), dl.get(), dl.size(), cudaMemcpyDeviceToHost));
    FP8S_CUDA(cudaMemcpy(g.data(), dg.get(), dg.size(), cudaMemcpyDeviceToHost));
  };
  std::vector<float> lf, lb, lc;
  std::vector<__nv_bfloat16> gf, gb, gc;
  gpu_model::cross_entropy_forward_backward(dl.as<float>(), dg.as<__nv_bfloat16>(), dzf.as<float>(), dt.as<int>(), N, N, V, Vp, nullptr);
  fetch(lf, gf);
  gpu_model::cross_entropy_forward_backward(dl.as<float>(), dg.as<__nv_bfloat16>(), dzb.as<__nv_bfloat16>(), dt.as<int>(), N, N, V, Vp,
                                            nullptr);
  fetch(lb, gb);
  for (int r = 0; r < N; ++r) EXPECT_NEAR(lb[r], lf[r], 1e-5 * std::abs(lf[r]) + 1e-6) << "row " << r;
  std::vector<double> a, b;
  for (std::size_t i = 0; i < gf.size(); ++i) a.push_back(__bfloat162float(gb[i])), b.push_back(__bfloat162float(gf[i]));
  EXPECT_LT(test::rel_err(a, b), 1e-3);
  // The BF16 input in two chunks of rows, each averaging over all N.
  FP8S_CUDA(cudaMemset(dl.get(), 0xFF, dl.size()));
  FP8S_CUDA(cudaMemset(dg.get(), 0xFF, dg.size()));
  gpu_model::cross_entropy_forward_backward(dl.as<float>(), dg.as<__nv_bfloat16>(), dzb.as<__nv_bfloat16>(), dt.as<int>(), split, N, V, Vp,
                                            nullptr);
  gpu_model::cross_entropy_forward_backward(dl.as<float>() + split, dg.as<__nv_bfloat16>() + std::size_t(split) * Vp,
                                            dzb.as<__nv_bfloat16>() + std::size_t(split) * Vp, dt.as<int>() + split, N - split, N, V, Vp,
                                            nullptr);
  fetch(lc, gc);
  EXPECT_EQ(std::memcmp(lc.data(), lb.data(), lb.size() * 4), 0) << "chunks differ from the whole launch";
  EXPECT_EQ(std::memcmp(gc.data(), gb.data(), gb.size() * 2), 0) << "chunks differ from the whole launch";
}

INSTANTIATE_TEST_SUITE_P(Vocab, CrossEntropyGpuInputs, ::testing::Values(std::tuple{50257, 50304}, std::tuple{1000, 1001}),
                         [](const auto& i) {
                           return "V" + std::to_string(std::get<0>(i.param)) + "_Vp" + std::to_string(std::get<1>(i.param));
                         });
