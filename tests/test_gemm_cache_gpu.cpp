// The model's GEMM path (GemmCache over cuBLASLt) writes an output that is never written
// before, and the next kernel (the tap statistics) reads it: D must equal a double-precision
// product of the same operands, and the statistics must see exactly the bytes cuBLASLt wrote.
// Beside the correctness check this is the control case for compute-sanitizer's initcheck: the
// output buffer is fresh from cudaMalloc, so a report here is about how the tool sees
// cuBLASLt's stores, not about the model (docs/development.md, "Sanitizers"). The same with
// tuning on (the fastest of the heuristic's candidates, timed in place), and a tuned cache must
// never let its trials touch an output the GEMM accumulates into.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/fp8/cast.cuh"
#include "fp8scope/fp8/format.hpp"
#include "fp8scope/gpu_model/gemm_cache.hpp"
#include "gpu_test_util.hpp"

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

using namespace fp8scope;

namespace {

struct Shape {
  std::int64_t m, n, k;
  bool fp8;
  int algos = 1;  // GemmCache's candidates timed per shape
};

class GemmCacheOutput : public ::testing::TestWithParam<Shape> {};

TEST_P(GemmCacheOutput, EqualsTheReferenceAndIsWhatTheNextKernelReads) {
  FP8SCOPE_REQUIRE_GPU();
  const Shape sh = GetParam();
  // TN, as the model's fprop: A is [m][k] row-major (k x m column-major, transposed), B is
  // [n][k], D is [n][m] row-major (m x n column-major).
  std::mt19937_64 rng(sh.m * 131 + sh.n * 7 + sh.k);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<double> a(std::size_t(sh.m * sh.k)), b(std::size_t(sh.n * sh.k));
  const std::size_t elem = sh.fp8 ? 1 : 2;
  std::vector<std::uint8_t> ha(a.size() * elem), hb(b.size() * elem);
  auto fill = [&](std::vector<double>& v, std::vector<std::uint8_t>& bytes) {
    for (std::size_t i = 0; i < v.size(); ++i) {
      const float x = nd(rng);
      if (sh.fp8) {
        bytes[i] = fp8::encode(x, fp8::Format::e4m3, fp8::Overflow::satfinite);
        v[i] = fp8::decode(bytes[i], fp8::Format::e4m3);
      } else {
        const __nv_bfloat16 h = __float2bfloat16(x);
        std::memcpy(&bytes[2 * i], &h, 2);
        v[i] = __bfloat162float(h);
      }
    }
  };
  fill(a, ha);
  fill(b, hb);
  // Dequantisation scales that are not 1, so a scale read from the wrong place shows; 16 bytes
  // apart, as cuBLASLt wants scale pointers (fp8::ScalerBank::kStride).
  const float scales[8] = {0.5f, 0, 0, 0, 0.25f, 0, 0, 0};
  const double scale = sh.fp8 ? double(scales[0]) * scales[4] : 1.0;

  core::DeviceBuffer da(ha.size()), db(hb.size()), dd(std::size_t(sh.m * sh.n) * 2), dscale(sizeof scales), dstats(sizeof(fp8::CastStats));
  FP8S_CUDA(cudaMemcpy(da.get(), ha.data(), ha.size(), cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(db.get(), hb.data(), hb.size(), cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(dscale.get(), scales, sizeof scales, cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemset(dstats.get(), 0, sizeof(fp8::CastStats)));

  gpu_model::GemmCache cache(nullptr, sh.algos);
  gpu_model::GemmCall c;
  c.ta = true, c.tb = false;
  c.m = sh.m, c.n = sh.n, c.k = sh.k, c.lda = sh.k, c.ldb = sh.k, c.ldd = sh.m;
  if (sh.fp8) {
    c.a = c.b = gemm::DType::e4m3;
    c.a_scale = dscale.as<float>();
    c.b_scale = dscale.as<float>() + 4;
  }
  cache.run(c, da.get(), db.get(), dd.get(), "test");
  fp8::tensor_stats(dd.as<__nv_bfloat16>(), sh.m * sh.n, dstats.as<fp8::CastStats>(), nullptr);
  FP8S_CUDA(cudaDeviceSynchronize());

  const auto d = download<__nv_bfloat16>(dd, std::size_t(sh.m * sh.n));
  fp8::CastStats st{};
  FP8S_CUDA(cudaMemcpy(&st, dstats.get(), sizeof st, cudaMemcpyDeviceToHost));
  float amax = 0.0f;
  int bad = 0;
  for (std::int64_t j = 0; j < sh.n; ++j)
    for (std::int64_t i = 0; i < sh.m; ++i) {
      double ref = 0.0, mag = 0.0;
      for (std::int64_t p = 0; p < sh.k; ++p) {
        ref += a[std::size_t(i * sh.k + p)] * b[std::size_t(j * sh.k + p)];
        mag += std::fabs(a[std::size_t(i * sh.k + p)] * b[std::size_t(j * sh.k + p)]);
      }
      const float got = __bfloat162float(d[std::size_t(j * sh.m + i)]);
      amax = std::fmax(amax, std::fabs(got));
      // BF16 output: half a unit in the last place (2^-9 relative) of the result, plus the
      // accumulation error: BF16 operands accumulate in FP32 (k * 2^-24 of the sum of
      // magnitudes); Hopper's FP8 tensor cores add products with about 14 mantissa bits inside
      // an MMA before cuBLASLt promotes to FP32 (seen here: up to ~2^-16 of the magnitude sum
      // at k = 64), so 2^-12 of it.
      const double acc = sh.fp8 ? std::ldexp(mag * scale, -12) : double(sh.k) * std::ldexp(mag * scale, -23);
      const double tol = std::ldexp(std::fabs(ref * scale), -8) + acc + 1e-6;
      if (!(std::fabs(got - ref * scale) <= tol) && ++bad <= 5)
        ADD_FAILURE() << "D[" << i << "," << j << "] = " << got << ", reference " << ref * scale;
    }
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(st.amax, amax);  // the statistics kernel read every byte cuBLASLt wrote
  EXPECT_EQ(st.nonfinite, 0u);
  if (sh.algos > 1) {
    const auto t = cache.tuning();
    ASSERT_EQ(t["shapes"].size(), 1u) << t.dump();
    const auto& r = t["shapes"][0];
    EXPECT_LT(r["chosen"].get<int>(), r["candidates"].get<int>());
    EXPECT_LE(r["ms_chosen"].get<double>(), r["ms_first"].get<double>());
  }
}

// The tiny model's shapes (B*T = 128 tokens, C = 64) and one of GPT-2 124M's.
INSTANTIATE_TEST_SUITE_P(Shapes, GemmCacheOutput,
                         ::testing::Values(Shape{192, 128, 64, false}, Shape{192, 128, 64, true}, Shape{64, 128, 256, true},
                                           Shape{768, 1024, 768, true}, Shape{768, 1024, 768, true, 8}, Shape{768, 1024, 768, false, 8}),
                         [](const auto& i) {
                           const Shape& s = i.param;
                           return (s.fp8 ? "e4m3_" : "bf16_") + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
                                  std::to_string(s.k) + (s.algos > 1 ? "_tuned" + std::to_string(s.algos) : "");
                         });

// A weight gradient accumulates (beta 1) into its FP32 output: a tuned cache leaves it to the
// heuristic's first algorithm, so its D is D0 + A B once, bit for bit what an untuned cache
// writes; a second plan of a tuned shape (another scale pointer) takes the first's choice
// without timing again.
TEST(GemmCacheTuning, LeavesAccumulatingGemmsAloneAndTunesEachShapeOnce) {
  FP8SCOPE_REQUIRE_GPU();
  const std::int64_t m = 256, n = 512, k = 1024;
  const auto a = normal_bf16(std::size_t(m * k), 1.0f, 1), b = normal_bf16(std::size_t(n * k), 1.0f, 2);
  std::vector<float> d0(std::size_t(m * n));
  std::mt19937_64 rng(3);
  std::normal_distribution<float> nd(0.0f, 4.0f);
  for (auto& v : d0) v = nd(rng);
  core::DeviceBuffer da(a.size() * 2), db(b.size() * 2), dd(d0.size() * 4), dout(std::size_t(m * n) * 2);
  FP8S_CUDA(cudaMemcpy(da.get(), a.data(), a.size() * 2, cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(db.get(), b.data(), b.size() * 2, cudaMemcpyHostToDevice));

  gpu_model::GemmCall acc;  // NT, FP32 output accumulated, as the model's wgrad
  acc.ta = false, acc.tb = true;
  acc.m = m, acc.n = n, acc.k = k, acc.lda = m, acc.ldb = n, acc.ldd = m;
  acc.d = gemm::DType::fp32;
  acc.beta = 1.0f;
  std::vector<std::vector<float>> out;
  for (int algos : {1, 8}) {
    gpu_model::GemmCache cache(nullptr, algos);
    FP8S_CUDA(cudaMemcpy(dd.get(), d0.data(), d0.size() * 4, cudaMemcpyHostToDevice));
    cache.run(acc, da.get(), db.get(), dd.get(), "accumulating");
    FP8S_CUDA(cudaDeviceSynchronize());
    out.push_back(download<float>(dd, d0.size()));
    if (algos > 1) {
      const auto t = cache.tuning();
      EXPECT_EQ(t["untuned_accumulating"].get<int>(), 1) << t.dump();
      EXPECT_TRUE(t["shapes"].empty()) << t.dump();
    }
  }
  EXPECT_TRUE(out[0] == out[1]) << "the tuned cache's accumulating GEMM differs from the untuned one's";
  // Sanity: the accumulation happened once (D0 plus a product of unit-variance sums, not D0).
  double moved = 0;
  for (std::size_t i = 0; i < d0.size(); ++i) moved += std::fabs(out[0][i] - d0[i]);
  EXPECT_GT(moved / double(d0.size()), 1.0);

  // Two plans of one shape: BF16 TN with a bias each (different pointers, one shape).
  const std::vector<__nv_bfloat16> bias(std::size_t(m) * 2, __float2bfloat16(0.5f));
  core::DeviceBuffer dbias(bias.size() * 2);
  FP8S_CUDA(cudaMemcpy(dbias.get(), bias.data(), bias.size() * 2, cudaMemcpyHostToDevice));
  gpu_model::GemmCache cache(nullptr, 8);
  gpu_model::GemmCall c;
  c.ta = true, c.tb = false;
  c.m = m, c.n = n, c.k = k, c.lda = k, c.ldb = k, c.ldd = m;
  c.bias = dbias.as<__nv_bfloat16>();
  cache.run(c, da.get(), db.get(), dout.get(), "first");
  c.bias = dbias.as<__nv_bfloat16>() + m;
  cache.run(c, da.get(), db.get(), dout.get(), "second");
  FP8S_CUDA(cudaDeviceSynchronize());
  EXPECT_EQ(cache.plans(), 2u);
  const auto t = cache.tuning();
  ASSERT_EQ(t["shapes"].size(), 1u) << t.dump();
  EXPECT_EQ(t["shapes"][0]["plans"].get<int>(), 2);
  EXPECT_EQ(t["shapes"][0]["gemm"].get<std::string>(), "first");
}

// The residual stream's add in the epilogue: D = A B (+ bias) + C with a C of its own (beta 1),
// BF16 and FP8 operands, untuned and tuned (its trials may run: D is overwritten, C only read).
// D must be the GEMM's own output plus C to one BF16 rounding of each (the separate add rounds
// the product to BF16 first, the epilogue adds in FP32 and rounds once), and C stays as it was.
class GemmCacheResidual : public ::testing::TestWithParam<std::tuple<bool, int>> {};

TEST_P(GemmCacheResidual, AddsItsOwnCInTheEpilogueAndLeavesCAsItWas) {
  FP8SCOPE_REQUIRE_GPU();
  const auto [fp8, algos] = GetParam();
  const std::int64_t m = 768, n = 1024, k = 768;
  const std::size_t elem = fp8 ? 1 : 2;
  std::mt19937 rng(7);
  std::vector<std::uint8_t> ha(std::size_t(m * k) * elem), hb(std::size_t(n * k) * elem);
  if (fp8) {  // E4M3 codes of unit normals
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& x : ha) x = fp8::encode(nd(rng), fp8::Format::e4m3, fp8::Overflow::satfinite);
    for (auto& x : hb) x = fp8::encode(nd(rng), fp8::Format::e4m3, fp8::Overflow::satfinite);
  } else {
    const auto a = normal_bf16(std::size_t(m * k), 1.0f, 11), b = normal_bf16(std::size_t(n * k), 1.0f, 12);
    std::memcpy(ha.data(), a.data(), ha.size());
    std::memcpy(hb.data(), b.data(), hb.size());
  }
  const auto resid = normal_bf16(std::size_t(m * n), 8.0f, 13), bias = normal_bf16(std::size_t(m), 1.0f, 14);
  const float scales[8] = {0.5f, 0, 0, 0, 0.25f, 0, 0, 0};
  core::DeviceBuffer da(ha.size()), db(hb.size()), dc(resid.size() * 2), dbias(bias.size() * 2), plain(resid.size() * 2),
      fused(resid.size() * 2), dscale(sizeof scales);
  FP8S_CUDA(cudaMemcpy(da.get(), ha.data(), ha.size(), cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(db.get(), hb.data(), hb.size(), cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(dc.get(), resid.data(), resid.size() * 2, cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(dbias.get(), bias.data(), bias.size() * 2, cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(dscale.get(), scales, sizeof scales, cudaMemcpyHostToDevice));
  gpu_model::GemmCache cache(nullptr, algos);
  gpu_model::GemmCall c;
  c.ta = true, c.tb = false;
  c.m = m, c.n = n, c.k = k, c.lda = k, c.ldb = k, c.ldd = m;
  c.bias = dbias.as<__nv_bfloat16>();
  if (fp8) {
    c.a = c.b = gemm::DType::e4m3;
    c.a_scale = dscale.as<float>(), c.b_scale = dscale.as<float>() + 4;
  }
  cache.run(c, da.get(), db.get(), plain.get(), "plain");
  gpu_model::GemmCall r = c;
  r.c = dc.get(), r.beta = 1.0f;
  cache.run(r, da.get(), db.get(), fused.get(), "with residual");
  FP8S_CUDA(cudaDeviceSynchronize());
  const auto p = download<__nv_bfloat16>(plain, resid.size()), f = download<__nv_bfloat16>(fused, resid.size()),
             after = download<__nv_bfloat16>(dc, resid.size());
  int bad = 0;
  for (std::size_t i = 0; i < resid.size(); ++i) {
    const double want = double(__bfloat162float(p[i])) + __bfloat162float(resid[i]), got = __bfloat162float(f[i]);
    // the product's rounding (2^-9 of |plain|) and the sum's (2^-9 of |want|), plus the
    // accumulation's order (a tuned candidate may sum differently): 2^-7 of |plain| in all
    const double tol = std::ldexp(std::fabs(want), -8) + std::ldexp(std::fabs(double(__bfloat162float(p[i]))), -7) + 1e-6;
    if (!(std::fabs(got - want) <= tol) && ++bad <= 5) ADD_FAILURE() << "D[" << i << "] = " << got << ", plain + C = " << want;
  }
  EXPECT_EQ(bad, 0);
  EXPECT_TRUE(std::memcmp(after.data(), resid.data(), resid.size() * 2) == 0) << "C was written";
  if (algos > 1) {  // a C of its own is tuned like any overwriting GEMM
    const auto t = cache.tuning();
    EXPECT_EQ(t["untuned_accumulating"].get<int>(), 0) << t.dump();
    ASSERT_EQ(t["shapes"].size(), 2u) << t.dump();
    bool with_c = false;
    for (const auto& sh : t["shapes"]) with_c |= sh["shape"].get<std::string>().find("+C") != std::string::npos;
    EXPECT_TRUE(with_c) << t.dump();
  }
}

INSTANTIATE_TEST_SUITE_P(Types, GemmCacheResidual, ::testing::Combine(::testing::Bool(), ::testing::Values(1, 8)), [](const auto& i) {
  return std::string(std::get<0>(i.param) ? "e4m3" : "bf16") + (std::get<1>(i.param) > 1 ? "_tuned" : "");
});

}  // namespace
