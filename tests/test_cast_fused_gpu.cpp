// The casts fused into their neighbours against the unfused kernels they replace, on shapes
// with partial tiles and more tiles than the capped grid (so the tile loop's prefetch of the
// next tile runs): FP8 codes (row-major and transposed) and statistics must be identical; the
// bias gradient taken from the tile loop is an FP32 sum of BF16 values, checked against a
// double sum with a bound of rows * 2^-24 times the sum of magnitudes (FP32 rounding per add).
// Also the loss kernel that writes the LM head's FP8 gradient, and the Llama MLP's SwiGLU casts.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/fp8/cast.cuh"
#include "fp8scope/gpu_model/kernels.cuh"
#include "gpu_test_util.hpp"

#include <cuda_bf16.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

using namespace fp8scope;
using fp8::Format;
using fp8::Overflow;

namespace {
constexpr int kRows = 2056, kCols = 1096;  // 33 x 18 tiles (594, above the 528-block cap), both edges partial

struct Cast {  // one cast's outputs: codes, transposed codes, statistics
  core::DeviceBuffer out, out_t, stats;
  explicit Cast(std::size_t n = std::size_t(kRows) * kCols) : out(n), out_t(n), stats(sizeof(fp8::CastStats)) {
    cudaMemset(stats.get(), 0, stats.size());
  }
  std::uint8_t* o() { return out.as<std::uint8_t>(); }
  std::uint8_t* t() { return out_t.as<std::uint8_t>(); }
  fp8::CastStats* s() { return stats.as<fp8::CastStats>(); }
};

void expect_same(const Cast& got, const Cast& want, std::size_t n = std::size_t(kRows) * kCols) {
  EXPECT_EQ(download<std::uint8_t>(got.out, n), download<std::uint8_t>(want.out, n)) << "row-major codes differ";
  EXPECT_EQ(download<std::uint8_t>(got.out_t, n), download<std::uint8_t>(want.out_t, n)) << "transposed codes differ";
  const auto a = download<fp8::CastStats>(got.stats, 1)[0], b = download<fp8::CastStats>(want.stats, 1)[0];
  EXPECT_EQ(a.amax, b.amax);
  EXPECT_EQ(a.nonfinite, b.nonfinite);
  EXPECT_EQ(a.saturated, b.saturated);
  EXPECT_EQ(a.underflow, b.underflow);
  EXPECT_EQ(a.nonfinite_out, b.nonfinite_out);
}

// Column sums from the tile loop's per-tile partials against a double sum of the values.
void expect_bias(const core::DeviceBuffer& partial, const std::vector<__nv_bfloat16>& values) {
  const int prow = fp8::dbias_partial_rows(kRows);
  const auto p = download<float>(partial, std::size_t(prow) * kCols);
  for (int c = 0; c < kCols; ++c) {
    double got = 0, want = 0, mag = 0;
    for (int r = 0; r < prow; ++r) got += p[std::size_t(r) * kCols + c];
    for (int r = 0; r < kRows; ++r) {
      const double x = __bfloat162float(values[std::size_t(r) * kCols + c]);
      want += x, mag += std::fabs(x);
    }
    ASSERT_LE(std::fabs(got - want), kRows * std::ldexp(1.0, -24) * mag + 1e-30) << "column " << c;
  }
}

class CastFusedGpu : public ::testing::TestWithParam<Format> {};
}  // namespace

TEST_P(CastFusedGpu, QuantizeTransposeDbiasEqualsTheCastAndSumsTheColumns) {
  FP8SCOPE_REQUIRE_GPU();
  const Format f = GetParam();
  const auto host = normal_bf16(std::size_t(kRows) * kCols, 1.0f, 7);
  const float scale = 40.0f;  // some values saturate in E4M3
  auto in = upload(host);
  core::DeviceBuffer sc(4), partial(std::size_t(fp8::dbias_partial_floats(kRows, kCols)) * 4);
  cudaMemcpy(sc.get(), &scale, 4, cudaMemcpyHostToDevice);
  Cast fused, plain;
  ASSERT_TRUE(fp8::tile_cast_fits(kRows, kCols));
  fp8::quantize_transpose_dbias(fused.o(), fused.t(), partial.as<float>(), in.as<__nv_bfloat16>(), kRows, kCols, sc.as<float>(), f,
                                Overflow::satfinite, fused.s(), nullptr);
  fp8::quantize_transpose(plain.o(), plain.t(), in.as<__nv_bfloat16>(), kRows, kCols, sc.as<float>(), f, Overflow::satfinite, plain.s(),
                          nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  expect_same(fused, plain);
  expect_bias(partial, host);
}

// The GELU cast written with its transpose equals the GELU cast followed by the FP8 transpose.
TEST_P(CastFusedGpu, GeluCastTransposeEqualsGeluCastThenTranspose) {
  FP8SCOPE_REQUIRE_GPU();
  const Format f = GetParam();
  const auto host = normal_bf16(std::size_t(kRows) * kCols, 2.0f, 8);
  const float scale = 100.0f;
  auto in = upload(host);
  core::DeviceBuffer sc(4);
  cudaMemcpy(sc.get(), &scale, 4, cudaMemcpyHostToDevice);
  Cast fused, plain;
  ASSERT_TRUE(fp8::tile_cast_fits(kRows, kCols));
  gpu_model::gelu_cast_transpose(fused.o(), fused.t(), in.as<__nv_bfloat16>(), kRows, kCols, sc.as<float>(), f, Overflow::satfinite,
                                 fused.s(), nullptr);
  gpu_model::gelu_forward_fp8(plain.o(), in.as<__nv_bfloat16>(), std::int64_t(kRows) * kCols, sc.as<float>(), f, Overflow::satfinite,
                              plain.s(), nullptr);
  fp8::transpose_fp8(plain.t(), plain.o(), kRows, kCols, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  expect_same(fused, plain);
  // And the codes are the GELU: within half an FP8 step (2^-4 relative in E4M3, 2^-3 in E5M2,
  // plus FP32 tanh) of the host's GELU where the scaled value is normal and below the max.
  const auto codes = download<std::uint8_t>(fused.out, host.size());
  const double half_step = f == Format::e4m3 ? 1.0 / 16 : 1.0 / 8;
  std::size_t checked = 0;
  for (std::size_t i = 0; i < host.size(); i += 97) {
    const double x = __bfloat162float(host[i]);
    const double y = 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) * scale;
    if (std::fabs(y) < fp8::info(f).min_normal || std::fabs(y) > fp8::info(f).max) continue;
    ASSERT_NEAR(fp8::decode(codes[i], f), y, std::fabs(y) * half_step * 1.01) << "x=" << x;
    ++checked;
  }
  EXPECT_GT(checked, 10000u);
}

// fc1's fused gradient cast equals gelu_backward (BF16), then the cast with transpose, and its
// bias sums are the column sums of that BF16 gradient.
TEST_P(CastFusedGpu, DgeluCastTransposeDbiasEqualsGeluBackwardThenTheCast) {
  FP8SCOPE_REQUIRE_GPU();
  const Format f = GetParam();
  const std::size_t n = std::size_t(kRows) * kCols;
  const auto pre = normal_bf16(n, 2.0f, 9), dout = normal_bf16(n, 1e-3f, 10);
  const float scale = 2.0e4f;
  auto d_pre = upload(pre), d_dout = upload(dout);
  core::DeviceBuffer sc(4), partial(std::size_t(fp8::dbias_partial_floats(kRows, kCols)) * 4), dgelu(n * 2);
  cudaMemcpy(sc.get(), &scale, 4, cudaMemcpyHostToDevice);
  Cast fused, plain;
  gpu_model::dgelu_cast_transpose_dbias(fused.o(), fused.t(), partial.as<float>(), d_dout.as<__nv_bfloat16>(), d_pre.as<__nv_bfloat16>(),
                                        kRows, kCols, sc.as<float>(), f, Overflow::satfinite, fused.s(), nullptr);
  gpu_model::gelu_backward(dgelu.as<__nv_bfloat16>(), d_pre.as<__nv_bfloat16>(), d_dout.as<__nv_bfloat16>(), std::int64_t(n), nullptr);
  fp8::quantize_transpose(plain.o(), plain.t(), dgelu.as<__nv_bfloat16>(), kRows, kCols, sc.as<float>(), f, Overflow::satfinite, plain.s(),
                          nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  expect_same(fused, plain);
  expect_bias(partial, download<__nv_bfloat16>(dgelu, n));
}

// GPT-2's GELU input kept in E4M3 (gelu_input e4m3): every GELU forward writes the input's
// E4M3 code at unit scale, saturating (the host codec's code, bit for bit) without changing
// its own outputs, and the backward kernels reading those codes give exactly what they give
// on the BF16 values the codes stand for (every E4M3 value is a BF16 value).
TEST_P(CastFusedGpu, TheGeluInputKeptInE4m3IsReadAsItsBf16Value) {
  FP8SCOPE_REQUIRE_GPU();
  const Format f = GetParam();
  const std::size_t n = std::size_t(kRows) * kCols;
  const auto pre = normal_bf16(n, 150.0f, 11), dout = normal_bf16(n, 1e-3f, 12);  // some |x| > 448 saturate
  std::vector<std::uint8_t> want(n);
  std::vector<__nv_bfloat16> rounded(n);  // the values the codes stand for
  for (std::size_t i = 0; i < n; ++i) {
    want[i] = fp8::encode(__bfloat162float(pre[i]), Format::e4m3, Overflow::satfinite);
    rounded[i] = __float2bfloat16(fp8::decode(want[i], Format::e4m3));
  }
  const float scale = 0.5f;
  auto d_pre = upload(pre), d_dout = upload(dout), d_rounded = upload(rounded);
  core::DeviceBuffer sc(4), pre8(n), pre8_vec(n), pre8_plain(n), gelu(n * 2), gelu_in_place = upload(pre);
  cudaMemcpy(sc.get(), &scale, 4, cudaMemcpyHostToDevice);
  const auto* x = d_pre.as<__nv_bfloat16>();
  Cast with, without, vec(n), vec_without(n);
  gpu_model::gelu_cast_transpose(with.o(), with.t(), x, kRows, kCols, sc.as<float>(), f, Overflow::satfinite, with.s(), nullptr,
                                 pre8.as<std::uint8_t>());
  gpu_model::gelu_cast_transpose(without.o(), without.t(), x, kRows, kCols, sc.as<float>(), f, Overflow::satfinite, without.s(), nullptr);
  // The vector loop on n - 5 elements: its tail runs one element at a time.
  cudaMemset(pre8_vec.get(), 0, n), cudaMemset(vec.out_t.get(), 0, n), cudaMemset(vec_without.out_t.get(), 0, n);
  gpu_model::gelu_forward_fp8(vec.o(), x, std::int64_t(n - 5), sc.as<float>(), f, Overflow::satfinite, vec.s(), nullptr,
                              pre8_vec.as<std::uint8_t>());
  gpu_model::gelu_forward_fp8(vec_without.o(), x, std::int64_t(n - 5), sc.as<float>(), f, Overflow::satfinite, vec_without.s(), nullptr);
  gpu_model::gelu_forward(gelu.as<__nv_bfloat16>(), x, std::int64_t(n), nullptr);
  gpu_model::gelu_forward(gelu_in_place.as<__nv_bfloat16>(), gelu_in_place.as<__nv_bfloat16>(), std::int64_t(n), nullptr,
                          pre8_plain.as<std::uint8_t>());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  expect_same(with, without);
  expect_same(vec, vec_without, n - 5);
  EXPECT_EQ(download<std::uint8_t>(pre8, n), want);
  EXPECT_EQ(download<std::uint8_t>(pre8_plain, n), want);
  auto got_vec = download<std::uint8_t>(pre8_vec, n);
  EXPECT_EQ(std::vector<std::uint8_t>(got_vec.begin(), got_vec.end() - 5), std::vector<std::uint8_t>(want.begin(), want.end() - 5));
  const auto g0 = download<__nv_bfloat16>(gelu, n), g1 = download<__nv_bfloat16>(gelu_in_place, n);
  EXPECT_EQ(0, std::memcmp(g0.data(), g1.data(), n * 2)) << "the GELU in place differs";
  // Backward: the codes against their BF16 values.
  const float gscale = 2.0e4f;
  cudaMemcpy(sc.get(), &gscale, 4, cudaMemcpyHostToDevice);
  const std::size_t np = std::size_t(fp8::dbias_partial_floats(kRows, kCols));
  core::DeviceBuffer part8(np * 4), part16(np * 4), d8(n * 2), d16(n * 2);
  Cast from8, from16;
  gpu_model::dgelu_cast_transpose_dbias(from8.o(), from8.t(), part8.as<float>(), d_dout.as<__nv_bfloat16>(), pre8.as<std::uint8_t>(), kRows,
                                        kCols, sc.as<float>(), f, Overflow::satfinite, from8.s(), nullptr);
  gpu_model::dgelu_cast_transpose_dbias(from16.o(), from16.t(), part16.as<float>(), d_dout.as<__nv_bfloat16>(),
                                        d_rounded.as<__nv_bfloat16>(), kRows, kCols, sc.as<float>(), f, Overflow::satfinite, from16.s(),
                                        nullptr);
  gpu_model::gelu_backward(d8.as<__nv_bfloat16>(), pre8.as<std::uint8_t>(), d_dout.as<__nv_bfloat16>(), std::int64_t(n), nullptr);
  gpu_model::gelu_backward(d16.as<__nv_bfloat16>(), d_rounded.as<__nv_bfloat16>(), d_dout.as<__nv_bfloat16>(), std::int64_t(n), nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  expect_same(from8, from16);
  EXPECT_EQ(download<float>(part8, np), download<float>(part16, np));
  const auto b8 = download<__nv_bfloat16>(d8, n), b16 = download<__nv_bfloat16>(d16, n);
  EXPECT_EQ(0, std::memcmp(b8.data(), b16.data(), n * 2)) << "gelu_backward on the codes differs";
}

// The Llama MLP: SwiGLU of fc1's output [N][2F] cast with its transpose equals swiglu_forward
// (BF16) then the cast; fc1's gradient [N][2F] cast with the SwiGLU backward equals
// swiglu_backward then the cast. N = 2056 (a partial row tile), F = 576 (the backward's 33 x 18
// tiles exceed the capped grid); gates up to +-12 (silu's tails), scales that saturate some.
TEST_P(CastFusedGpu, SwigluCastsEqualTheSwigluKernelsThenTheCast) {
  FP8SCOPE_REQUIRE_GPU();
  const Format f = GetParam();
  const int N = kRows, F = 576;
  const std::size_t nf = std::size_t(N) * F;
  ASSERT_TRUE(gpu_model::swiglu_cast_fits(N, F));
  const auto fc = normal_bf16(2 * nf, 3.0f, 11), dout = normal_bf16(nf, 1e-3f, 12);
  auto d_fc = upload(fc), d_dout = upload(dout);
  const float scales[2] = {40.0f, 2.0e4f};  // forward, backward
  core::DeviceBuffer sc(8), act(nf * 2), dfc(2 * nf * 2);
  cudaMemcpy(sc.get(), scales, 8, cudaMemcpyHostToDevice);
  const float* s_fwd = sc.as<float>();
  const float* s_bwd = sc.as<float>() + 1;
  Cast fused(nf), plain(nf), dfused(2 * nf), dplain(2 * nf);
  gpu_model::swiglu_cast_transpose(fused.o(), fused.t(), d_fc.as<__nv_bfloat16>(), N, F, s_fwd, f, Overflow::satfinite, fused.s(), nullptr);
  gpu_model::swiglu_forward(act.as<__nv_bfloat16>(), d_fc.as<__nv_bfloat16>(), N, F, nullptr);
  fp8::quantize_transpose(plain.o(), plain.t(), act.as<__nv_bfloat16>(), N, F, s_fwd, f, Overflow::satfinite, plain.s(), nullptr);
  gpu_model::dswiglu_cast_transpose(dfused.o(), dfused.t(), d_dout.as<__nv_bfloat16>(), d_fc.as<__nv_bfloat16>(), N, F, s_bwd, f,
                                    Overflow::satfinite, dfused.s(), nullptr);
  gpu_model::swiglu_backward(dfc.as<__nv_bfloat16>(), d_fc.as<__nv_bfloat16>(), d_dout.as<__nv_bfloat16>(), N, F, nullptr);
  fp8::quantize_transpose(dplain.o(), dplain.t(), dfc.as<__nv_bfloat16>(), N, 2 * F, s_bwd, f, Overflow::satfinite, dplain.s(), nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  {
    SCOPED_TRACE("forward");
    expect_same(fused, plain, nf);
  }
  {
    SCOPED_TRACE("backward");
    expect_same(dfused, dplain, 2 * nf);
  }
  const auto st = download<fp8::CastStats>(plain.stats, 1)[0], dst = download<fp8::CastStats>(dplain.stats, 1)[0];
  if (f == Format::e4m3) EXPECT_GT(st.saturated, 0u);  // the scales reach the format's edges
  EXPECT_GT(dst.underflow + dst.saturated, 0u);
}

// The FP8 LM head's gradient written by the loss kernel equals the BF16 gradient of the plain
// loss kernel cast by fp8::quantize: codes (padded columns included) and statistics; the
// losses are the same bits. The scale makes the target columns saturate in E4M3 and most of
// the rest underflow, so every count is exercised.
TEST_P(CastFusedGpu, CrossEntropyFp8EqualsTheLossThenTheCast) {
  FP8SCOPE_REQUIRE_GPU();
  const Format f = GetParam();
  // More rows than the clusters that fit on an H200 at once: they walk several rows each.
  const int N = 4096, V = 1000, Vp = 1024;
  ASSERT_TRUE(gpu_model::cross_entropy_fp8_fits(Vp));
  std::mt19937_64 rng(12);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> logits(std::size_t(N) * Vp);
  for (auto& x : logits) x = d(rng);
  std::vector<int> targets(N);
  for (auto& t : targets) t = int(rng() % V);
  core::DeviceBuffer d_logits(logits.size() * 4), d_targets(targets.size() * 4), sc(4), loss_a(N * 4), loss_b(N * 4);
  core::DeviceBuffer codes_a(logits.size()), codes_b(logits.size()), grad(logits.size() * 2), st_a(sizeof(fp8::CastStats)),
      st_b(sizeof(fp8::CastStats));
  cudaMemcpy(d_logits.get(), logits.data(), d_logits.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(d_targets.get(), targets.data(), d_targets.size(), cudaMemcpyHostToDevice);
  const float scale = 2097152.0f;  // |grad| up to 1/N = 2^-12 -> 512, above E4M3's 448
  cudaMemcpy(sc.get(), &scale, 4, cudaMemcpyHostToDevice);
  cudaMemset(st_a.get(), 0, st_a.size());
  cudaMemset(st_b.get(), 0, st_b.size());
  gpu_model::cross_entropy_forward_backward_fp8(loss_a.as<float>(), codes_a.as<std::uint8_t>(), d_logits.as<float>(), d_targets.as<int>(),
                                                N, N, V, Vp, sc.as<float>(), f, Overflow::satfinite, st_a.as<fp8::CastStats>(), nullptr);
  gpu_model::cross_entropy_forward_backward(loss_b.as<float>(), grad.as<__nv_bfloat16>(), d_logits.as<float>(), d_targets.as<int>(), N, N,
                                            V, Vp, nullptr);
  fp8::quantize(codes_b.as<std::uint8_t>(), grad.as<__nv_bfloat16>(), std::int64_t(N) * Vp, sc.as<float>(), f, Overflow::satfinite,
                st_b.as<fp8::CastStats>(), nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(download<float>(loss_a, N), download<float>(loss_b, N));
  EXPECT_EQ(download<std::uint8_t>(codes_a, logits.size()), download<std::uint8_t>(codes_b, logits.size()));
  const auto a = download<fp8::CastStats>(st_a, 1)[0], b = download<fp8::CastStats>(st_b, 1)[0];
  EXPECT_EQ(a.amax, b.amax);
  EXPECT_EQ(a.nonfinite, b.nonfinite);
  EXPECT_EQ(a.saturated, b.saturated);
  EXPECT_EQ(a.underflow, b.underflow);
  EXPECT_EQ(a.nonfinite_out, b.nonfinite_out);
  EXPECT_GT(a.underflow, 0u);
  if (f == Format::e4m3) {
    EXPECT_GT(a.saturated, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, CastFusedGpu, ::testing::Values(Format::e4m3, Format::e5m2),
                         [](const auto& info) { return std::string(fp8::name(info.param)); });
