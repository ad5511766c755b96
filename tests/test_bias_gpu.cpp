// The bias gradient kernel (column sums of a BF16 gradient, added to an FP32 gradient) against
// double-precision sums on the host: the 16-byte path (OC % 8 == 0, also OC not a multiple of
// its 256-column blocks) and the one-column-per-thread path, with N not a multiple of the row
// blocks. Tolerance: FP32 sums of at most 16K terms, relative to the sum of magnitudes (1e-5).
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/gpu_model/kernels.cuh"
#include "gpu_test_util.hpp"

#include <cuda_bf16.h>

#include <cmath>
#include <random>
#include <vector>

using namespace fp8scope;

class BiasBackwardGpu : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(BiasBackwardGpu, ColumnSumsMatchDoubleSums) {
  FP8SCOPE_REQUIRE_GPU();
  const auto [N, OC] = GetParam();
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<__nv_bfloat16> dy(std::size_t(N) * OC);
  for (auto& x : dy) x = __float2bfloat16(d(rng));
  std::vector<float> db(std::size_t(OC), 0.25f);  // the kernel adds to what is there

  core::DeviceBuffer d_dy(dy.size() * 2), d_db(db.size() * 4), scratch(std::size_t(gpu_model::bias_backward_scratch_floats(OC)) * 4);
  FP8S_CUDA(cudaMemcpy(d_dy.get(), dy.data(), d_dy.size(), cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(d_db.get(), db.data(), d_db.size(), cudaMemcpyHostToDevice));
  gpu_model::bias_backward(d_db.as<float>(), scratch.as<float>(), d_dy.as<__nv_bfloat16>(), N, OC, nullptr);
  FP8S_CUDA(cudaMemcpy(db.data(), d_db.get(), d_db.size(), cudaMemcpyDeviceToHost));

  for (int c = 0; c < OC; ++c) {
    double want = 0.25, mag = 0;
    for (int n = 0; n < N; ++n) {
      const double x = double(__bfloat162float(dy[std::size_t(n) * OC + c]));
      want += x, mag += std::fabs(x);
    }
    ASSERT_NEAR(db[std::size_t(c)], want, 1e-5 * mag + 1e-6) << "column " << c;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, BiasBackwardGpu,
                         ::testing::Values(std::make_pair(16384, 768), std::make_pair(1000, 3072), std::make_pair(1003, 2312),
                                           std::make_pair(37, 20)));
