// The fused cross-entropy kernel on its own against a double-precision softmax on the host:
// the fast path (padded vocabulary, row kept in shared memory) and the general one (a row
// length that is not a multiple of 4). Tolerances: the loss is an FP32 log-sum-exp of up to
// 50K terms (relative error ~1e-6 of ~11); the gradient is rounded to BF16 (relative 2^-9).
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
