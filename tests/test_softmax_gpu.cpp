// The causal softmax kernels of the (non-flash) attention against double-precision arithmetic
// on the host: T = 1024 (GPT-2's context, several 256-column steps per warp), T = 72 (a row
// shorter than one warp step, so most lanes mask or sit idle) and T = 100 (not a multiple of 8:
// the one-column kernels). Rows past the diagonal must be exact zeros.
// Tolerances: BF16 outputs carry their rounding (2^-9 relative, 2^-8 allowed); the FP32 sums
// of at most 1024 terms (the softmax's denominator, the backward's dot product) get 1e-5 of
// their terms' magnitudes, far above FP32's 2^-24 per operation.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/gpu_model/kernels.cuh"
#include "gpu_test_util.hpp"

#include <cuda_bf16.h>

#include <cmath>
#include <random>
#include <vector>

using namespace fp8scope;
using gpu_model::bf16;

class SoftmaxGpu : public ::testing::TestWithParam<int> {};

TEST_P(SoftmaxGpu, ForwardAndBackwardMatchDoubleArithmetic) {
  FP8SCOPE_REQUIRE_GPU();
  const int BH = 3, T = GetParam();
  const std::size_t n = std::size_t(BH) * T * T;
  std::mt19937 rng(7);
  std::normal_distribution<float> d(0.0f, 2.0f);
  std::vector<float> scores(n), dprobs(n);
  for (auto& x : scores) x = d(rng);
  for (auto& x : dprobs) x = d(rng);
  core::DeviceBuffer d_scores(n * 4), d_dprobs(n * 4), d_probs(n * 2), d_ds(n * 2);
  FP8S_CUDA(cudaMemcpy(d_scores.get(), scores.data(), n * 4, cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(d_dprobs.get(), dprobs.data(), n * 4, cudaMemcpyHostToDevice));
  const float scale = 0.125f;
  gpu_model::softmax_causal_forward(d_probs.as<bf16>(), d_scores.as<float>(), BH, T, nullptr);
  gpu_model::softmax_causal_backward(d_ds.as<bf16>(), d_dprobs.as<float>(), d_probs.as<bf16>(), scale, BH, T, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto probs = download<bf16>(d_probs, n), ds = download<bf16>(d_ds, n);

  int bad_p = 0, bad_g = 0;
  bool reported = false;  // the first mismatch is printed, the rest counted
  for (std::size_t row = 0; row < std::size_t(BH) * T; ++row) {
    const int tq = int(row % T);
    const float* x = &scores[row * T];
    const float* dp = &dprobs[row * T];
    double m = x[0];
    for (int j = 1; j <= tq; ++j) m = std::max(m, double(x[j]));
    double sum = 0;
    for (int j = 0; j <= tq; ++j) sum += std::exp(double(x[j]) - m);
    // The backward's reference uses the BF16 probabilities the kernel reads.
    double dot = 0, dot_mag = 0;
    for (int j = 0; j <= tq; ++j) {
      const double p = __bfloat162float(probs[row * T + j]);
      dot += p * dp[j], dot_mag += std::abs(p * dp[j]);
    }
    for (int j = 0; j < T; ++j) {
      const float p = __bfloat162float(probs[row * T + j]), g = __bfloat162float(ds[row * T + j]);
      if (j > tq) {
        bad_p += p != 0.0f, bad_g += g != 0.0f;
        continue;
      }
      const double ref_p = std::exp(double(x[j]) - m) / sum;
      const bool p_off = std::abs(p - ref_p) > std::ldexp(ref_p, -8) + 1e-5 * ref_p;
      const double ref_g = double(p) * (dp[j] - dot) * scale;
      const bool g_off = std::abs(g - ref_g) > std::ldexp(std::abs(ref_g), -8) + 1e-5 * std::abs(p) * scale * (dot_mag + std::abs(dp[j]));
      bad_p += p_off, bad_g += g_off;
      if ((p_off || g_off) && !reported) {
        ADD_FAILURE() << "row " << row << " col " << j << ": p " << p << " (ref " << ref_p << "), dscore " << g << " (ref " << ref_g << ")";
        reported = true;
      }
    }
  }
  EXPECT_EQ(bad_p, 0);
  EXPECT_EQ(bad_g, 0);
}

INSTANTIATE_TEST_SUITE_P(ContextLengths, SoftmaxGpu, ::testing::Values(1024, 72, 100),
                         [](const auto& info) { return "T" + std::to_string(info.param); });
