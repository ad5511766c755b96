// The fused attention kernels on their own against a plain double-precision attention on the
// host, on random BF16 data across several tiles (so the diagonal tile, the tiles below it and
// the online softmax's rescaling all run), at head sizes 64 and 128, with each kind of kernel
// (mma.sync, and wgmma where the GPU and build have it, fed by cp.async or warp-specialised
// with TMA): output, log-sum-exp, dQ, dK and dV;
// also with grouped queries (k/v heads shared by several q heads).
// Tolerance: the inputs are exact BF16 on both sides; the kernel rounds the probabilities and
// dS to BF16 (relative 2^-9) before the second product and its outputs to BF16, so a relative
// RMS error of 1e-2 is about five times what that rounding makes.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/gpu_model/kernels.cuh"
#include "gpu_test_util.hpp"
#include "model_test_util.hpp"

#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <tuple>
#include <vector>

using namespace fp8scope;

namespace {

struct Attention {
  std::vector<double> out, lse, dq, dk, dv;
};

// Causal softmax attention of each of BH heads ([T, D] row-major), and its backward for `dout`.
Attention reference(const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
                    const std::vector<double>& dout, int BH, int T, int D, double scale) {
  Attention r;
  r.out.assign(q.size(), 0), r.lse.assign(std::size_t(BH) * T, 0), r.dq = r.out, r.dk = r.out, r.dv = r.out;
  std::vector<double> p(T), dp(T);
  for (int h = 0; h < BH; ++h) {
    const std::size_t o = std::size_t(h) * T * D;
    for (int i = 0; i < T; ++i) {
      double m = -INFINITY;
      for (int j = 0; j <= i; ++j) {
        double s = 0;
        for (int d = 0; d < D; ++d) s += q[o + i * D + d] * k[o + j * D + d];
        p[j] = s * scale, m = std::max(m, p[j]);
      }
      double sum = 0;
      for (int j = 0; j <= i; ++j) p[j] = std::exp(p[j] - m), sum += p[j];
      r.lse[std::size_t(h) * T + i] = m + std::log(sum);
      double rowdot = 0;
      for (int j = 0; j <= i; ++j) {
        p[j] /= sum;
        for (int d = 0; d < D; ++d) r.out[o + i * D + d] += p[j] * v[o + j * D + d];
      }
      for (int d = 0; d < D; ++d) rowdot += r.out[o + i * D + d] * dout[o + i * D + d];
      for (int j = 0; j <= i; ++j) {
        dp[j] = 0;
        for (int d = 0; d < D; ++d) dp[j] += dout[o + i * D + d] * v[o + j * D + d];
        const double ds = p[j] * (dp[j] - rowdot) * scale;
        for (int d = 0; d < D; ++d) {
          r.dv[o + j * D + d] += p[j] * dout[o + i * D + d];
          r.dq[o + i * D + d] += ds * k[o + j * D + d];
          r.dk[o + j * D + d] += ds * q[o + i * D + d];
        }
      }
    }
  }
  return r;
}

std::vector<double> random_bf16(std::size_t n, std::mt19937& rng, double std) {
  std::normal_distribution<float> d(0.0f, float(std));
  std::vector<double> x(n);
  for (auto& v : x) v = double(__bfloat162float(__float2bfloat16(d(rng))));
  return x;
}

core::DeviceBuffer upload(const std::vector<double>& x) {
  std::vector<__nv_bfloat16> h(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) h[i] = __float2bfloat16(float(x[i]));
  core::DeviceBuffer b(h.size() * sizeof(__nv_bfloat16));
  FP8S_CUDA(cudaMemcpy(b.get(), h.data(), b.size(), cudaMemcpyHostToDevice));
  return b;
}

std::vector<double> download_bf16(const core::DeviceBuffer& b) {
  std::vector<__nv_bfloat16> h(b.size() / sizeof(__nv_bfloat16));
  FP8S_CUDA(cudaMemcpy(h.data(), b.get(), b.size(), cudaMemcpyDeviceToHost));
  std::vector<double> x(h.size());
  for (std::size_t i = 0; i < h.size(); ++i) x[i] = double(__bfloat162float(h[i]));
  return x;
}

std::vector<double> download_f32(const core::DeviceBuffer& b) {
  std::vector<float> h(b.size() / sizeof(float));
  FP8S_CUDA(cudaMemcpy(h.data(), b.get(), b.size(), cudaMemcpyDeviceToHost));
  return {h.begin(), h.end()};
}

}  // namespace

// Head sizes 64 and 128 (GPT-2's and Llama's), times the kind of kernel.
class FlashAttentionGpu : public ::testing::TestWithParam<std::tuple<int, gpu_model::FlashKernel>> {
 protected:
  // The heads as given, with this case's kind of kernel; false when that kind can't run here.
  bool with_kernel(gpu_model::AttentionHeads& h) {
    h.kernel = std::get<1>(GetParam());
    return h.kernel == gpu_model::FlashKernel::mma_sync || gpu_model::flash_attention_wgmma_fits(h);
  }
};
#define FLASH_KERNEL_OR_SKIP(heads) \
  if (!with_kernel(heads)) GTEST_SKIP() << "the wgmma kernels need a compute capability 9.0 GPU and an sm_90a build"

TEST_P(FlashAttentionGpu, ForwardAndBackwardMatchADoubleReference) {
  FP8SCOPE_REQUIRE_GPU();
  const int BH = 3, T = 512, D = std::get<0>(GetParam());  // 4 tiles of 128: every buffer of the pipelines is reused
  gpu_model::AttentionHeads heads{BH, 1, T, D, D, float(1.0 / std::sqrt(double(D))), D};  // [BH][T][D]
  FLASH_KERNEL_OR_SKIP(heads);
  const double scale = 1.0 / std::sqrt(double(D));
  std::mt19937 rng(11);
  const std::size_t n = std::size_t(BH) * T * D;
  // Scores of std ~2 after scaling: peaked enough that the running maximum moves between tiles.
  const auto q = random_bf16(n, rng, 1.5), k = random_bf16(n, rng, 1.5), v = random_bf16(n, rng, 1.0), dout = random_bf16(n, rng, 1.0);
  const Attention want = reference(q, k, v, dout, BH, T, D, scale);

  auto dq_ = upload(q), dk_ = upload(k), dv_ = upload(v), ddout = upload(dout);
  core::DeviceBuffer out(n * 2), lse(std::size_t(BH) * T * 4), dsum(std::size_t(BH) * T * 4), gq(n * 2), gk(n * 2), gv(n * 2);
  auto run = [&] {
    gpu_model::flash_attention_forward(heads, out.as<__nv_bfloat16>(), lse.as<float>(), dq_.as<__nv_bfloat16>(), dk_.as<__nv_bfloat16>(),
                                       dv_.as<__nv_bfloat16>(), nullptr);
    gpu_model::flash_attention_backward(heads, gq.as<__nv_bfloat16>(), gk.as<__nv_bfloat16>(), gv.as<__nv_bfloat16>(), dsum.as<float>(),
                                        ddout.as<__nv_bfloat16>(), out.as<__nv_bfloat16>(), dq_.as<__nv_bfloat16>(),
                                        dk_.as<__nv_bfloat16>(), dv_.as<__nv_bfloat16>(), lse.as<float>(), nullptr);
    FP8S_CUDA(cudaDeviceSynchronize());
  };
  run();
  const auto o = download_bf16(out), l = download_f32(lse), g_q = download_bf16(gq), g_k = download_bf16(gk), g_v = download_bf16(gv);
  EXPECT_LT(test::rel_err(o, want.out), 1e-2);
  double worst_lse = 0;
  for (std::size_t i = 0; i < l.size(); ++i) worst_lse = std::max(worst_lse, std::abs(l[i] - want.lse[i]));
  EXPECT_LT(worst_lse, 1e-3) << "log-sum-exp (FP32 accumulation)";
  EXPECT_LT(test::rel_err(g_q, want.dq), 1e-2) << "dQ";
  EXPECT_LT(test::rel_err(g_k, want.dk), 1e-2) << "dK";
  EXPECT_LT(test::rel_err(g_v, want.dv), 1e-2) << "dV";
  // No float atomics: the same inputs give the same bits.
  run();
  EXPECT_EQ(download_bf16(out), o);
  EXPECT_EQ(download_bf16(gq), g_q);
  EXPECT_EQ(download_bf16(gk), g_k);
}

// The model's layout (q, k, v inside one [B, T, 3C] qkv tensor, out and dout in [B, T, C], the
// gradients into a [B, T, 3C] tensor) runs the same arithmetic as the plain per-head layout,
// only addressed differently: the results must be the same bits.
TEST_P(FlashAttentionGpu, ModelLayoutGivesThePerHeadLayoutsBits) {
  FP8SCOPE_REQUIRE_GPU();
  const int B = 2, NH = 3, T = 256, D = std::get<0>(GetParam()), C = NH * D, BH = B * NH;
  const float scale = 0.125f;
  gpu_model::AttentionHeads plain{BH, 1, T, D, D, scale, D}, packed{B, NH, T, 3 * C, C, scale, D};
  FLASH_KERNEL_OR_SKIP(plain);
  with_kernel(packed);
  std::mt19937 rng(5);
  const std::size_t n = std::size_t(BH) * T * D;
  const auto q = random_bf16(n, rng, 1.5), k = random_bf16(n, rng, 1.5), v = random_bf16(n, rng, 1.0), dout = random_bf16(n, rng, 1.0);
  // Per head [BH][T][D] -> rows of [B][T][ld] at column offset `col` + D h.
  auto pack = [&](std::vector<double>& dst, const std::vector<double>& src, int ld, int col) {
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < NH; ++h)
        for (int t = 0; t < T; ++t)
          for (int d = 0; d < D; ++d)
            dst[(std::size_t(b) * T + t) * ld + col + h * D + d] = src[((std::size_t(b) * NH + h) * T + t) * D + d];
  };
  auto unpack = [&](const std::vector<double>& src, int ld, int col) {
    std::vector<double> dst(n);
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < NH; ++h)
        for (int t = 0; t < T; ++t)
          for (int d = 0; d < D; ++d)
            dst[((std::size_t(b) * NH + h) * T + t) * D + d] = src[(std::size_t(b) * T + t) * ld + col + h * D + d];
    return dst;
  };
  std::vector<double> qkv(n * 3), dy(n);
  pack(qkv, q, 3 * C, 0), pack(qkv, k, 3 * C, C), pack(qkv, v, 3 * C, 2 * C), pack(dy, dout, C, 0);

  using bf = __nv_bfloat16;
  // Per-head layout.
  auto hq = upload(q), hk = upload(k), hv = upload(v), hdy = upload(dout);
  core::DeviceBuffer hout(n * 2), hlse(std::size_t(BH) * T * 4), dsum(std::size_t(BH) * T * 4), gq(n * 2), gk(n * 2), gv(n * 2);
  gpu_model::flash_attention_forward(plain, hout.as<bf>(), hlse.as<float>(), hq.as<bf>(), hk.as<bf>(), hv.as<bf>(), nullptr);
  gpu_model::flash_attention_backward(plain, gq.as<bf>(), gk.as<bf>(), gv.as<bf>(), dsum.as<float>(), hdy.as<bf>(), hout.as<bf>(),
                                      hq.as<bf>(), hk.as<bf>(), hv.as<bf>(), hlse.as<float>(), nullptr);
  // Model layout.
  auto mqkv = upload(qkv), mdy = upload(dy);
  core::DeviceBuffer mout(n * 2), mlse(std::size_t(BH) * T * 4), mdqkv(n * 3 * 2);
  const bf* p = mqkv.as<bf>();
  bf* g = mdqkv.as<bf>();
  gpu_model::flash_attention_forward(packed, mout.as<bf>(), mlse.as<float>(), p, p + C, p + 2 * C, nullptr);
  gpu_model::flash_attention_backward(packed, g, g + C, g + 2 * C, dsum.as<float>(), mdy.as<bf>(), mout.as<bf>(), p, p + C, p + 2 * C,
                                      mlse.as<float>(), nullptr);
  FP8S_CUDA(cudaDeviceSynchronize());
  EXPECT_EQ(unpack(download_bf16(mout), C, 0), download_bf16(hout)) << "output";
  EXPECT_EQ(download_f32(mlse), download_f32(hlse)) << "log-sum-exp";
  const auto grads = download_bf16(mdqkv);
  EXPECT_EQ(unpack(grads, 3 * C, 0), download_bf16(gq)) << "dQ";
  EXPECT_EQ(unpack(grads, 3 * C, C), download_bf16(gk)) << "dK";
  EXPECT_EQ(unpack(grads, 3 * C, 2 * C), download_bf16(gv)) << "dV";
}

// Grouped-query attention (Llama): 4 q heads over 2 k/v heads, and over 1 (multi-query), in the
// model's layout (q, k, v heads side by side in one row of (NH + 2 KVH) heads). The reference is
// the plain attention of each q head with its group's k/v head; a k/v head's dK and dV are the
// sums over the q heads that read it.
TEST_P(FlashAttentionGpu, GroupedQueryHeadsMatchADoubleReference) {
  FP8SCOPE_REQUIRE_GPU();
  const int B = 2, NH = 4, T = 256, D = std::get<0>(GetParam());
  const double scale = 1.0 / std::sqrt(double(D));
  gpu_model::AttentionHeads probe{B, NH, T, D, D, float(scale), D};
  FLASH_KERNEL_OR_SKIP(probe);
  for (const int KVH : {2, 1}) {
    SCOPED_TRACE(KVH);
    const int G = NH / KVH, ld = (NH + 2 * KVH) * D, BH = B * NH;
    std::mt19937 rng(unsigned(17 + KVH));
    const std::size_t nq = std::size_t(BH) * T * D, nkv = std::size_t(B) * KVH * T * D;
    const auto q = random_bf16(nq, rng, 1.5), k = random_bf16(nkv, rng, 1.5), v = random_bf16(nkv, rng, 1.0),
               dout = random_bf16(nq, rng, 1.0);
    // [B][heads][T][D] per head <-> rows [B][T][ld] at column col + D h.
    auto at_row = [&](int b, int h, int t, int col) { return (std::size_t(b) * T + t) * ld + col + std::size_t(h) * D; };
    auto head = [&](int b, int h, int heads) { return (std::size_t(b) * heads + h) * T * D; };
    std::vector<double> k_rep(nq), v_rep(nq), qkv(std::size_t(B) * T * ld), dy(nq);
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < NH; ++h)
        for (int t = 0; t < T; ++t)
          for (int d = 0; d < D; ++d) {
            const std::size_t e = head(b, h, NH) + std::size_t(t) * D + d, kv = head(b, h / G, KVH) + std::size_t(t) * D + d;
            k_rep[e] = k[kv], v_rep[e] = v[kv];
            qkv[at_row(b, h, t, 0) + d] = q[e];
            dy[(std::size_t(b) * T + t) * NH * D + std::size_t(h) * D + d] = dout[e];
            if (h < KVH) qkv[at_row(b, h, t, NH * D) + d] = k[head(b, h, KVH) + std::size_t(t) * D + d];
            if (h < KVH) qkv[at_row(b, h, t, (NH + KVH) * D) + d] = v[head(b, h, KVH) + std::size_t(t) * D + d];
          }
    const Attention want = reference(q, k_rep, v_rep, dout, BH, T, D, scale);
    std::vector<double> want_dk(nkv, 0.0), want_dv(nkv, 0.0);
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < NH; ++h)
        for (std::size_t e = 0; e < std::size_t(T) * D; ++e) {
          want_dk[head(b, h / G, KVH) + e] += want.dk[head(b, h, NH) + e];
          want_dv[head(b, h / G, KVH) + e] += want.dv[head(b, h, NH) + e];
        }

    using bf = __nv_bfloat16;
    auto mqkv = upload(qkv), mdy = upload(dy);
    core::DeviceBuffer out(nq * 2), lse(std::size_t(BH) * T * 4), dsum(std::size_t(BH) * T * 4), dqkv(qkv.size() * 2);
    gpu_model::AttentionHeads heads{B, NH, T, ld, NH * D, float(scale), D};
    heads.KVH = KVH;
    with_kernel(heads);
    const bf* p = mqkv.as<bf>();
    bf* g = dqkv.as<bf>();
    gpu_model::flash_attention_forward(heads, out.as<bf>(), lse.as<float>(), p, p + NH * D, p + (NH + KVH) * D, nullptr);
    gpu_model::flash_attention_backward(heads, g, g + NH * D, g + (NH + KVH) * D, dsum.as<float>(), mdy.as<bf>(), out.as<bf>(), p,
                                        p + NH * D, p + (NH + KVH) * D, lse.as<float>(), nullptr);
    FP8S_CUDA(cudaDeviceSynchronize());
    const auto o = download_bf16(out), grads = download_bf16(dqkv);
    std::vector<double> got_o(nq), got_dq(nq), got_dk(nkv), got_dv(nkv);
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < NH; ++h)
        for (int t = 0; t < T; ++t)
          for (int d = 0; d < D; ++d) {
            const std::size_t e = head(b, h, NH) + std::size_t(t) * D + d;
            got_o[e] = o[(std::size_t(b) * T + t) * NH * D + std::size_t(h) * D + d];
            got_dq[e] = grads[at_row(b, h, t, 0) + d];
            if (h < KVH) {
              got_dk[head(b, h, KVH) + std::size_t(t) * D + d] = grads[at_row(b, h, t, NH * D) + d];
              got_dv[head(b, h, KVH) + std::size_t(t) * D + d] = grads[at_row(b, h, t, (NH + KVH) * D) + d];
            }
          }
    EXPECT_LT(test::rel_err(got_o, want.out), 1e-2) << "output";
    EXPECT_LT(test::rel_err(got_dq, want.dq), 1e-2) << "dQ";
    EXPECT_LT(test::rel_err(got_dk, want_dk), 1e-2) << "dK (summed over the group)";
    EXPECT_LT(test::rel_err(got_dv, want_dv), 1e-2) << "dV (summed over the group)";
  }
}

INSTANTIATE_TEST_SUITE_P(HeadSizes, FlashAttentionGpu,
                         ::testing::Combine(::testing::Values(64, 128),
                                            ::testing::Values(gpu_model::FlashKernel::mma_sync, gpu_model::FlashKernel::wgmma,
                                                              gpu_model::FlashKernel::wgmma_tma)),
                         [](const auto& info) {
                           const gpu_model::FlashKernel k = std::get<1>(info.param);
                           return "D" + std::to_string(std::get<0>(info.param)) +
                                  (k == gpu_model::FlashKernel::wgmma       ? "_wgmma"
                                   : k == gpu_model::FlashKernel::wgmma_tma ? "_wgmma_tma"
                                                                            : "_mma_sync");
                         });

// The warp-specialised TMA kernels run flash_wgmma_parts.cuh's arithmetic on the same tiles as
// the cp.async wgmma kernels, only fed differently: the same bits, forward and backward, in the
// model's layout with grouped queries (4 q heads over 2 k/v heads) and 8 tiles of 128 rows, so
// every buffer of every ring is refilled several times; with the persistent grid (each block
// walks several work tiles: 384 forward tiles and 192 dK/dV ones, against 132 SMs, over 48 and
// 24 heads, so at head 128 the second L2 section of heads is a partial one) and with a block per
// tile.
class FlashAttentionTmaGpu : public ::testing::TestWithParam<int> {};
TEST_P(FlashAttentionTmaGpu, GivesTheWgmmaKernelsBits) {
  FP8SCOPE_REQUIRE_GPU();
  const int B = 12, NH = 4, KVH = 2, T = 1024, D = GetParam(), ld = (NH + 2 * KVH) * D;
  gpu_model::AttentionHeads heads{B, NH, T, ld, NH * D, float(1.0 / std::sqrt(double(D))), D};
  heads.KVH = KVH;
  if (!gpu_model::flash_attention_wgmma_fits(heads))
    GTEST_SKIP() << "the wgmma kernels need a compute capability 9.0 GPU and an sm_90a build";
  std::mt19937 rng(23);
  using bf = __nv_bfloat16;
  auto qkv = upload(random_bf16(std::size_t(B) * T * ld, rng, 1.5)), dy = upload(random_bf16(std::size_t(B) * T * NH * D, rng, 1.0));
  const bf* p = qkv.as<bf>();
  struct Run {
    std::vector<double> out, lse, grads;
  };
  auto run = [&](gpu_model::FlashKernel kind, bool persistent = true) {
    heads.kernel = kind;
    heads.persistent = persistent;
    core::DeviceBuffer out(std::size_t(B) * T * NH * D * 2), lse(std::size_t(B) * NH * T * 4), dsum(lse.size()), dqkv(qkv.size());
    FP8S_CUDA(cudaMemset(dqkv.get(), 0, dqkv.size()));  // the gradient's unused columns compare equal
    bf* g = dqkv.as<bf>();
    gpu_model::flash_attention_forward(heads, out.as<bf>(), lse.as<float>(), p, p + NH * D, p + (NH + KVH) * D, nullptr);
    gpu_model::flash_attention_backward(heads, g, g + NH * D, g + (NH + KVH) * D, dsum.as<float>(), dy.as<bf>(), out.as<bf>(), p,
                                        p + NH * D, p + (NH + KVH) * D, lse.as<float>(), nullptr);
    FP8S_CUDA(cudaDeviceSynchronize());
    return Run{download_bf16(out), download_f32(lse), download_bf16(dqkv)};
  };
  const Run want = run(gpu_model::FlashKernel::wgmma);
  for (const bool persistent : {true, false}) {
    const Run got = run(gpu_model::FlashKernel::wgmma_tma, persistent);
    const char* grid = persistent ? "persistent grid" : "a block per tile";
    EXPECT_EQ(got.out, want.out) << "output, " << grid;
    EXPECT_EQ(got.lse, want.lse) << "log-sum-exp, " << grid;
    EXPECT_EQ(got.grads, want.grads) << "dQ, dK, dV, " << grid;
  }
}
INSTANTIATE_TEST_SUITE_P(HeadSizes, FlashAttentionTmaGpu, ::testing::Values(64, 128),
                         [](const auto& info) { return "D" + std::to_string(info.param); });
