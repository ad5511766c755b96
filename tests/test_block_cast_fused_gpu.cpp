// The per-row / per-block casts fused with the GELU (gpu_model/gelu_block_cast.cu) against the
// unfused pair they replace: gelu_forward (or gelu_backward) writing BF16, then
// fp8::block_cast_transpose of that tensor, which test_block_cast_gpu checks against the CPU
// emulation. Both copies' codes, the scale tensors, every statistic, the block amaxes, the
// GELU input's E4M3 copy and the bias gradient's partial sums must be the same bits. And the
// column sums against double sums on the host: FP32 sums of 128 values per tile and then of the
// tiles, relative to the sum of magnitudes (1e-5). Shapes with partial tiles and with columns
// not a multiple of 8 take the kernels' scalar edges.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/fp8/block_cast.cuh"
#include "fp8scope/gpu_model/kernels.cuh"
#include "gpu_test_util.hpp"

#include <cuda_bf16.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace fp8scope;

namespace {

enum class Fused { gelu, gelu_pre8, dgelu, dgelu_pre8, plain_sums };

struct Case {
  int rows, cols;
  Fused what;
  fp8::ScaleMode mode;
  bool pow2;
};

std::string name_of(const Case& c) {
  static const char* what[] = {"gelu", "gelu_pre8", "dgelu", "dgelu_pre8", "plain_sums"};
  return std::to_string(c.rows) + "x" + std::to_string(c.cols) + "_" + what[int(c.what)] + "_" + std::string(fp8::to_string(c.mode)) +
         (c.pow2 ? "_pow2" : "_fp32");
}

// Pre-activations around the GELU's bend (and a far tail), gradients whose magnitude varies by
// row, so blocks have different scales; a few exact zeros.
std::vector<__nv_bfloat16> values(int rows, int cols, unsigned seed, bool grad) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, grad ? 1.0f : 2.0f);
  std::uniform_int_distribution<int> row_e(-14, 2);
  std::vector<__nv_bfloat16> v(std::size_t(rows) * cols);
  for (int r = 0; r < rows; ++r) {
    const int e = grad ? row_e(rng) : 0;
    for (int c = 0; c < cols; ++c) {
      const float x = rng() % 40 == 0 ? 0.0f : rng() % 97 == 0 ? 60.0f * nd(rng) : std::ldexp(nd(rng), e);
      v[std::size_t(r) * cols + c] = __float2bfloat16(x);
    }
  }
  return v;
}

// The outputs of one cast, both copies.
struct Outputs {
  core::DeviceBuffer codes, codes_t, lt, lt_t, stats, bamax, bamax_t, maxdq, scratch, sums;
  fp8::BlockCastCopy d, t;
  Outputs(int rows, int cols, fp8::ScaleMode mode)
      : codes(std::size_t(rows) * cols),
        codes_t(std::size_t(rows) * cols),
        lt(std::size_t(fp8::scale_geometry(mode, rows, cols).lt_elements()) * 4),
        lt_t(std::size_t(fp8::scale_geometry(mode, cols, rows).lt_elements()) * 4),
        stats(2 * sizeof(fp8::CastStats)),
        bamax(std::size_t(fp8::scale_geometry(mode, rows, cols).blocks()) * 4),
        bamax_t(std::size_t(fp8::scale_geometry(mode, cols, rows).blocks()) * 4),
        maxdq(2 * 4),
        scratch(fp8::block_cast_scratch_floats(rows, cols) * 4),
        sums(std::size_t(fp8::block_cast_sum_rows(rows)) * cols * 4) {
    for (auto* b : {&codes, &codes_t, &sums}) FP8S_CUDA(cudaMemset(b->get(), 0xAB, b->size()));  // poisoned
    for (auto* b : {&lt, &lt_t, &stats, &maxdq, &bamax, &bamax_t}) FP8S_CUDA(cudaMemset(b->get(), 0, b->size()));
    d = {codes.as<std::uint8_t>(), lt.as<float>(), stats.as<fp8::CastStats>(), bamax.as<float>(), maxdq.as<float>()};
    t = {codes_t.as<std::uint8_t>(), lt_t.as<float>(), stats.as<fp8::CastStats>() + 1, bamax_t.as<float>(), maxdq.as<float>() + 1};
  }
};

template <class T>
void expect_same_bytes(const core::DeviceBuffer& a, const core::DeviceBuffer& b, const char* what) {
  const auto x = download<T>(a, a.size() / sizeof(T)), y = download<T>(b, b.size() / sizeof(T));
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (std::memcmp(&x[i], &y[i], sizeof(T)) != 0 && bad++ == 0) first = i;
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << x.size() << " differ, the first at " << first;
}

class BlockCastFusedGpu : public ::testing::TestWithParam<Case> {};

TEST_P(BlockCastFusedGpu, EqualsTheUnfusedKernelsBitForBit) {
  FP8SCOPE_REQUIRE_GPU();
  const Case k = GetParam();
  const int R = k.rows, C = k.cols;
  const std::size_t n = std::size_t(R) * C;
  const bool backward = k.what == Fused::dgelu || k.what == Fused::dgelu_pre8, pre8 = k.what == Fused::gelu_pre8 || k.what == Fused::dgelu_pre8;
  const fp8::Format f = backward ? fp8::Format::e5m2 : fp8::Format::e4m3;
  const fp8::BlockScaleRule rule{0, k.pow2};
  const auto h_pre = values(R, C, unsigned(R * 3 + C), false), h_dout = values(R, C, unsigned(R + 5 * C), true);
  core::DeviceBuffer pre(n * 2), dout(n * 2), mid(n * 2), p8(n), p8_ref(n);
  FP8S_CUDA(cudaMemcpy(pre.get(), h_pre.data(), n * 2, cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(dout.get(), h_dout.data(), n * 2, cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemset(p8.get(), 0xAB, n));
  Outputs fused(R, C, k.mode), ref(R, C, k.mode);
  auto bf = [](core::DeviceBuffer& b) { return b.as<__nv_bfloat16>(); };
  float* sums = k.what == Fused::gelu || k.what == Fused::gelu_pre8 ? nullptr : fused.sums.as<float>();
  float* ref_sums = sums ? ref.sums.as<float>() : nullptr;

  // The unfused pair: the elementwise kernel's BF16 tensor (mid), then the plain cast.
  switch (k.what) {
    case Fused::gelu:
    case Fused::gelu_pre8:
      gpu_model::gelu_forward(bf(mid), bf(pre), std::int64_t(n), nullptr, pre8 ? p8_ref.as<std::uint8_t>() : nullptr);
      gpu_model::gelu_block_cast_transpose(bf(pre), R, C, k.mode, f, fp8::Overflow::satfinite, rule, fused.d, fused.t,
                                           fused.scratch.as<float>(), nullptr, pre8 ? p8.as<std::uint8_t>() : nullptr);
      break;
    case Fused::dgelu:
      gpu_model::gelu_backward(bf(mid), bf(pre), bf(dout), std::int64_t(n), nullptr);
      gpu_model::dgelu_block_cast_transpose_dbias(bf(dout), bf(pre), R, C, k.mode, f, fp8::Overflow::satfinite, rule, fused.d, fused.t,
                                                  fused.scratch.as<float>(), sums, nullptr);
      break;
    case Fused::dgelu_pre8:
      // The E4M3 copy as the forward writes it, then the backward from it both ways.
      gpu_model::gelu_forward(bf(mid), bf(pre), std::int64_t(n), nullptr, p8_ref.as<std::uint8_t>());
      gpu_model::gelu_backward(bf(mid), p8_ref.as<std::uint8_t>(), bf(dout), std::int64_t(n), nullptr);
      gpu_model::dgelu_block_cast_transpose_dbias(bf(dout), p8_ref.as<std::uint8_t>(), R, C, k.mode, f, fp8::Overflow::satfinite, rule,
                                                  fused.d, fused.t, fused.scratch.as<float>(), sums, nullptr);
      break;
    case Fused::plain_sums:
      FP8S_CUDA(cudaMemcpy(mid.get(), dout.get(), n * 2, cudaMemcpyDeviceToDevice));
      fp8::block_cast_transpose(bf(dout), R, C, k.mode, f, fp8::Overflow::satfinite, rule, fused.d, fused.t, fused.scratch.as<float>(),
                                nullptr, sums);
      break;
  }
  fp8::block_cast_transpose(bf(mid), R, C, k.mode, f, fp8::Overflow::satfinite, rule, ref.d, ref.t, ref.scratch.as<float>(), nullptr,
                            ref_sums);
  FP8S_CUDA(cudaDeviceSynchronize());

  expect_same_bytes<std::uint8_t>(fused.codes, ref.codes, "codes");
  expect_same_bytes<std::uint8_t>(fused.codes_t, ref.codes_t, "transposed codes");
  expect_same_bytes<float>(fused.lt, ref.lt, "scale tensor");
  expect_same_bytes<float>(fused.lt_t, ref.lt_t, "transposed scale tensor");
  expect_same_bytes<fp8::CastStats>(fused.stats, ref.stats, "statistics");
  expect_same_bytes<float>(fused.bamax, ref.bamax, "block amaxes");
  expect_same_bytes<float>(fused.bamax_t, ref.bamax_t, "transposed block amaxes");
  expect_same_bytes<float>(fused.maxdq, ref.maxdq, "largest dequantisation scales");
  if (k.what == Fused::gelu_pre8) expect_same_bytes<std::uint8_t>(p8, p8_ref, "the GELU input in E4M3");
  if (!sums) return;
  expect_same_bytes<float>(fused.sums, ref.sums, "column sums");

  // The column sums against double sums of the BF16 values the cast saw.
  const auto g = download<__nv_bfloat16>(mid, n);
  const auto part = download<float>(fused.sums, std::size_t(fp8::block_cast_sum_rows(R)) * C);
  for (int c = 0; c < C; ++c) {
    double want = 0, mag = 0, got = 0;
    for (int r = 0; r < R; ++r) {
      const double x = double(__bfloat162float(g[std::size_t(r) * C + c]));
      want += x, mag += std::fabs(x);
    }
    for (int t = 0; t < fp8::block_cast_sum_rows(R); ++t) got += part[std::size_t(t) * C + c];
    ASSERT_NEAR(got, want, 1e-5 * mag + 1e-30) << "column " << c;
  }
}

std::vector<Case> cases() {
  std::vector<Case> out;
  const std::pair<int, int> shapes[] = {{256, 384}, {200, 136}, {130, 100}};
  for (auto [r, c] : shapes)
    for (Fused w : {Fused::gelu, Fused::gelu_pre8, Fused::dgelu, Fused::dgelu_pre8, Fused::plain_sums})
      for (fp8::ScaleMode m : {fp8::ScaleMode::vec128, fp8::ScaleMode::outer_vec})
        for (bool pow2 : {false, true}) out.push_back({r, c, w, m, pow2});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Shapes, BlockCastFusedGpu, ::testing::ValuesIn(cases()), [](const auto& i) { return name_of(i.param); });

}  // namespace
