// The LayerNorm and RMSNorm kernels against double-precision arithmetic on the host, at widths that use
// one to eight 256-channel groups of the warp-per-row kernels and two to four 2048-channel
// groups of the block-per-row kernels (also widths that leave lanes idle), and row counts that
// are not multiples of the blocks' rows, some larger than the backward grid covers in one pass.
// Tolerances: BF16 outputs carry their rounding (2^-9 relative, 2^-8 allowed) on top of FP32
// arithmetic (1e-4 of the magnitudes of the terms, far above FP32's 2^-24 per operation);
// the FP32 parameter-gradient sums of at most a few thousand terms get 1e-5 of their terms'
// magnitudes.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/fp8/cast.cuh"
#include "fp8scope/fp8/format.hpp"
#include "fp8scope/gpu_model/kernels.cuh"
#include "gpu_test_util.hpp"

#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

using namespace fp8scope;
using gpu_model::bf16;

namespace {

struct Tensor {
  std::vector<bf16> host;
  core::DeviceBuffer dev;
  explicit Tensor(std::size_t n, std::mt19937& rng, float sd) : host(n), dev(n * sizeof(bf16)) {
    std::normal_distribution<float> d(0.0f, sd);
    for (auto& x : host) x = __float2bfloat16(d(rng));
    FP8S_CUDA(cudaMemcpy(dev.get(), host.data(), dev.size(), cudaMemcpyHostToDevice));
  }
  double at(std::size_t i) const { return double(__bfloat162float(host[i])); }
};

std::vector<float> read_floats(const core::DeviceBuffer& b) { return download<float>(b, b.size() / 4); }

// Mean and 1 / sqrt(variance + 1e-5) of the C values of x from base, in double, two-pass;
// RMSNorm's: mean 0, 1 / sqrt(mean(x^2) + 1e-5).
std::pair<double, double> row_mean_rstd(const Tensor& x, std::size_t base, int C, bool rms = false) {
  double m = 0, var = 0;
  for (int c = 0; c < C && !rms; ++c) m += x.at(base + c);
  m /= C;
  for (int c = 0; c < C; ++c) var += (x.at(base + c) - m) * (x.at(base + c) - m);
  return {m, 1.0 / std::sqrt(var / C + 1e-5)};
}

}  // namespace

struct NormShape {
  int N, C;
  bool rms;            // RMSNorm (Llama): no mean, no bias
  bool block = false;  // LayerNorm through NormKernel::block_per_row at a width a warp takes
};

class LayerNormGpu : public ::testing::TestWithParam<NormShape> {};

TEST_P(LayerNormGpu, ForwardAndBackwardMatchDoubleArithmetic) {
  FP8SCOPE_REQUIRE_GPU();
  const auto [N, C, rms, block] = GetParam();
  const auto kind = block ? gpu_model::NormKernel::block_per_row : gpu_model::NormKernel::automatic;
  const std::size_t n = std::size_t(N) * C;
  std::mt19937 rng(11);
  // An offset mean in the input, as in a residual stream, so the mean subtraction matters.
  Tensor x(n, rng, 1.0f), dy(n, rng, 1.0f), dx(n, rng, 0.5f), w(std::size_t(C), rng, 1.0f), b(std::size_t(C), rng, 0.3f);
  for (auto& v : x.host) v = __float2bfloat16(__bfloat162float(v) + 0.75f);
  FP8S_CUDA(cudaMemcpy(x.dev.get(), x.host.data(), x.dev.size(), cudaMemcpyHostToDevice));
  core::DeviceBuffer out(n * sizeof(bf16)), mean(std::size_t(N) * 4), rstd(std::size_t(N) * 4);
  core::DeviceBuffer dw(std::size_t(C) * 4), db(std::size_t(C) * 4);
  core::DeviceBuffer scratch(std::size_t(gpu_model::layernorm_backward_scratch_floats(N, C)) * 4);
  const std::vector<float> dw0(std::size_t(C), 0.5f), db0(std::size_t(C), -0.25f);  // the backward adds to what is there
  FP8S_CUDA(cudaMemcpy(dw.get(), dw0.data(), dw.size(), cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(db.get(), db0.data(), db.size(), cudaMemcpyHostToDevice));

  auto backward = [&] {
    if (rms)
      gpu_model::rmsnorm_backward(dx.dev.as<bf16>(), dw.as<float>(), scratch.as<float>(), dy.dev.as<bf16>(), x.dev.as<bf16>(),
                                  w.dev.as<bf16>(), rstd.as<float>(), N, C, nullptr);
    else
      gpu_model::layernorm_backward(dx.dev.as<bf16>(), dw.as<float>(), db.as<float>(), scratch.as<float>(), dy.dev.as<bf16>(),
                                    x.dev.as<bf16>(), w.dev.as<bf16>(), mean.as<float>(), rstd.as<float>(), N, C, nullptr, kind);
  };
  if (rms)
    gpu_model::rmsnorm_forward(out.as<bf16>(), rstd.as<float>(), x.dev.as<bf16>(), w.dev.as<bf16>(), N, C, nullptr);
  else
    gpu_model::layernorm_forward(out.as<bf16>(), mean.as<float>(), rstd.as<float>(), x.dev.as<bf16>(), w.dev.as<bf16>(), b.dev.as<bf16>(),
                                 N, C, nullptr, kind);
  backward();
  FP8S_CUDA(cudaDeviceSynchronize());
  const std::vector<bf16> y = download<bf16>(out, n);
  // RMSNorm writes no mean: its buffer stays unread (and uninitialised).
  const std::vector<float> m_gpu = rms ? std::vector<float>() : read_floats(mean), r_gpu = read_floats(rstd), dw_gpu = read_floats(dw),
                           db_gpu = read_floats(db);
  const std::vector<bf16> dx_gpu = download<bf16>(dx.dev, n);

  std::vector<double> dw_want(dw0.begin(), dw0.end()), db_want(db0.begin(), db0.end()), dw_mag(dw0.size()), db_mag(dw0.size());
  for (int row = 0; row < N; ++row) {
    const std::size_t base = std::size_t(row) * C;
    const auto [m, r] = row_mean_rstd(x, base, C, rms);
    if (!rms) ASSERT_NEAR(m_gpu[std::size_t(row)], m, 1e-5 * (std::fabs(m) + 1)) << "mean of row " << row;
    ASSERT_NEAR(r_gpu[std::size_t(row)], r, 1e-5 * r) << "rstd of row " << row;
    double g_mean = 0, gn_mean = 0;
    for (int c = 0; c < C; ++c) {
      const double norm = (x.at(base + c) - m) * r, g = w.at(std::size_t(c)) * dy.at(base + c), bias = rms ? 0.0 : b.at(std::size_t(c));
      const double want = norm * w.at(std::size_t(c)) + bias;
      const double tol = std::ldexp(std::fabs(want), -8) + 1e-4 * (std::fabs(norm * w.at(std::size_t(c))) + std::fabs(bias));
      ASSERT_NEAR(__bfloat162float(y[base + c]), want, tol) << "forward row " << row << " channel " << c;
      g_mean += g, gn_mean += g * norm;
      dw_want[std::size_t(c)] += norm * dy.at(base + c), dw_mag[std::size_t(c)] += std::fabs(norm * dy.at(base + c));
      db_want[std::size_t(c)] += dy.at(base + c), db_mag[std::size_t(c)] += std::fabs(dy.at(base + c));
    }
    g_mean = rms ? 0.0 : g_mean / C, gn_mean /= C;
    for (int c = 0; c < C; ++c) {
      const double norm = (x.at(base + c) - m) * r, g = w.at(std::size_t(c)) * dy.at(base + c);
      const double want = dx.at(base + c) + (g - g_mean - norm * gn_mean) * r;
      const double terms = std::fabs(dx.at(base + c)) + (std::fabs(g) + std::fabs(g_mean) + std::fabs(norm * gn_mean)) * r;
      ASSERT_NEAR(__bfloat162float(dx_gpu[base + c]), want, std::ldexp(std::fabs(want), -8) + 1e-4 * terms)
          << "input gradient row " << row << " channel " << c;
    }
  }
  for (int c = 0; c < C; ++c) {
    ASSERT_NEAR(dw_gpu[std::size_t(c)], dw_want[std::size_t(c)], 1e-5 * dw_mag[std::size_t(c)] + 1e-6) << "dw channel " << c;
    if (!rms) ASSERT_NEAR(db_gpu[std::size_t(c)], db_want[std::size_t(c)], 1e-5 * db_mag[std::size_t(c)] + 1e-6) << "db channel " << c;
  }

  // The same inputs again give the same bits (no float atomics in the reductions).
  FP8S_CUDA(cudaMemcpy(dx.dev.get(), dx.host.data(), dx.dev.size(), cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(dw.get(), dw0.data(), dw.size(), cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(db.get(), db0.data(), db.size(), cudaMemcpyHostToDevice));
  backward();
  FP8S_CUDA(cudaDeviceSynchronize());
  const std::vector<float> dw_again = read_floats(dw), db_again = read_floats(db);
  const std::vector<bf16> dx_again = download<bf16>(dx.dev, n);
  EXPECT_EQ(std::memcmp(dw_again.data(), dw_gpu.data(), dw_gpu.size() * 4), 0);
  EXPECT_EQ(std::memcmp(db_again.data(), db_gpu.data(), db_gpu.size() * 4), 0);
  EXPECT_EQ(std::memcmp(dx_again.data(), dx_gpu.data(), dx_gpu.size() * sizeof(bf16)), 0);
}

// The FP8 forward (the fused variant's LayerNormLinear) writes the same normalised values cast
// to E4M3 with the given scale: each code decodes to y * scale within E4M3's rounding (half a
// step, 2^-4 relative, over FP32's own rounding of y), saturated to +-448 where |y * scale| is
// larger (N(0, 1) weights put a few |y| above 11), and its statistics carry y's amax and the
// saturated count.
TEST_P(LayerNormGpu, Fp8ForwardIsTheNormalisedRowCast) {
  FP8SCOPE_REQUIRE_GPU();
  const auto [N, C, rms, block] = GetParam();
  const auto kind = block ? gpu_model::NormKernel::block_per_row : gpu_model::NormKernel::automatic;
  const std::size_t n = std::size_t(N) * C;
  std::mt19937 rng(5);
  Tensor x(n, rng, 1.0f), w(std::size_t(C), rng, 1.0f), b(std::size_t(C), rng, 0.3f);
  const float scale = 40.0f;  // most |y| * scale inside E4M3's 448, the tails saturate
  core::DeviceBuffer out(n), mean(std::size_t(N) * 4), rstd(std::size_t(N) * 4), sc(sizeof(float)), st(sizeof(fp8::CastStats));
  FP8S_CUDA(cudaMemcpy(sc.get(), &scale, sizeof scale, cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemset(st.get(), 0, st.size()));
  if (rms)
    gpu_model::rmsnorm_forward_fp8(out.as<std::uint8_t>(), rstd.as<float>(), x.dev.as<bf16>(), w.dev.as<bf16>(), N, C, sc.as<float>(),
                                   fp8::Format::e4m3, fp8::Overflow::satfinite, st.as<fp8::CastStats>(), nullptr);
  else
    gpu_model::layernorm_forward_fp8(out.as<std::uint8_t>(), mean.as<float>(), rstd.as<float>(), x.dev.as<bf16>(), w.dev.as<bf16>(),
                                     b.dev.as<bf16>(), N, C, sc.as<float>(), fp8::Format::e4m3, fp8::Overflow::satfinite,
                                     st.as<fp8::CastStats>(), nullptr, kind);
  FP8S_CUDA(cudaDeviceSynchronize());
  const std::vector<std::uint8_t> codes = download<std::uint8_t>(out, n);
  const fp8::CastStats stats = download<fp8::CastStats>(st, 1)[0];
  double amax = 0;
  long long saturated = 0;
  for (int row = 0; row < N; ++row) {
    const std::size_t base = std::size_t(row) * C;
    const auto [m, r] = row_mean_rstd(x, base, C, rms);
    for (int c = 0; c < C; ++c) {
      const double y = (x.at(base + c) - m) * r * w.at(std::size_t(c)) + (rms ? 0.0 : b.at(std::size_t(c)));
      amax = std::max(amax, std::fabs(y));
      // Saturating cast: the nearest representable magnitude is 448 (counted where y * scale
      // is beyond it by more than FP32's rounding could move it).
      const double want = std::clamp(y, -448.0 / scale, 448.0 / scale);
      if (std::fabs(y) * scale > 448.0 * (1 + 1e-5)) ++saturated;
      const double got = fp8::decode(codes[base + c], fp8::Format::e4m3) / scale;
      ASSERT_NEAR(got, want, std::ldexp(std::fabs(want), -4) + 1e-4 * (std::fabs(y) + 1) + std::ldexp(1.0, -9) / scale)
          << "row " << row << " channel " << c << " (y = " << y << ")";
    }
  }
  EXPECT_NEAR(stats.amax, amax, 1e-4 * amax);
  EXPECT_EQ(stats.nonfinite, 0u);
  EXPECT_NEAR(double(stats.saturated), double(saturated),
              2.0 + 1e-4 * double(saturated));  // values within FP32 rounding of 448 may go either way
}

// 4100 rows: more than the backward grid's warps (264 x 8), so warps walk two rows.
std::vector<NormShape> shapes() {
  std::vector<NormShape> out;
  for (auto [n, c] : {std::pair{4100, 768},
                      {37, 64},
                      {300, 1016},
                      {1001, 200},
                      {64, 520},
                      // A warp per row with five to eight 256-channel groups (GPT-2 large and XL,
                      // Llama's 2048), the backward walking several rows per warp (4100 > 264 x 8)
                      // with two blocks an SM (1280) and one, which loads each row's residual
                      // gradient before its reductions (1600), idle lanes (1600, 1800).
                      {4100, 1280},
                      {4100, 1600},
                      {97, 1600},
                      {300, 1800},
                      {600, 2048},
                      // Wider than a warp's 2048 channels: a block per row, two to four
                      // 2048-channel groups, idle threads (2056, 4160), rows past one backward
                      // grid pass (300 > 264 blocks).
                      {300, 2056},
                      {40, 4160},
                      {24, 8192}})
    out.push_back({n, c, false});
  // RMSNorm through both kernel families: one, three and four 256-channel groups, a block per
  // row with one, two and four 2048-channel groups (Llama's 2048 and 4096 among them).
  for (auto [n, c] : {std::pair{4100, 768}, {37, 64}, {300, 1016}, {300, 1280}, {600, 2048}, {40, 4096}, {24, 8192}})
    out.push_back({n, c, true});
  // The block-per-row kernels at widths the warps take (what benchmarks compare them with).
  for (auto [n, c] : {std::pair{300, 1280}, {600, 2048}, {37, 64}}) out.push_back({n, c, false, true});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Shapes, LayerNormGpu, ::testing::ValuesIn(shapes()), [](const auto& i) {
  return std::string(i.param.rms ? "rms_" : "ln_") + std::to_string(i.param.N) + "x" + std::to_string(i.param.C) +
         (i.param.block ? "_block_per_row" : "");
});
