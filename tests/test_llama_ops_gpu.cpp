// The Llama block's elementwise kernels (gpu_model/llama.cu) against double-precision
// arithmetic on the host from the same BF16 inputs: SwiGLU forward and backward, and the rotary
// positions on q and k (forward, and back again). Tolerances: each output carries its BF16
// rounding (2^-9 relative, 2^-8 allowed) on top of FP32 arithmetic with a hardware exponential
// (1e-5 of the magnitudes of the terms; the exponential's error is ~2^-22).
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/gpu_model/kernels.cuh"
#include "fp8scope/model/rope.hpp"
#include "gpu_test_util.hpp"

#include <cuda_bf16.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

using namespace fp8scope;
using gpu_model::bf16;

namespace {

double at(const std::vector<bf16>& v, std::size_t i) { return double(__bfloat162float(v[i])); }
double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

// N rows not a multiple of a block's vectors; F = 8 x 43; gates from -12 to 12 (silu's tails).
TEST(LlamaOpsGpu, SwigluForwardAndBackwardMatchDoubleArithmetic) {
  FP8SCOPE_REQUIRE_GPU();
  const int N = 101, F = 344;
  const std::size_t nf = std::size_t(N) * F;
  const auto fc = normal_bf16(2 * nf, 4.0f, 1), dout = normal_bf16(nf, 1.0f, 2);
  core::DeviceBuffer d_fc = upload(fc), d_dout = upload(dout), d_out(nf * sizeof(bf16)), d_dfc(2 * nf * sizeof(bf16));
  gpu_model::swiglu_forward(d_out.as<bf16>(), d_fc.as<bf16>(), N, F, nullptr);
  gpu_model::swiglu_backward(d_dfc.as<bf16>(), d_fc.as<bf16>(), d_dout.as<bf16>(), N, F, nullptr);
  FP8S_CUDA(cudaDeviceSynchronize());
  const auto out = download<bf16>(d_out, nf), dfc = download<bf16>(d_dfc, 2 * nf);
  for (int n = 0; n < N; ++n)
    for (int f = 0; f < F; ++f) {
      const std::size_t gi = std::size_t(n) * 2 * F + f, ui = gi + F, oi = std::size_t(n) * F + f;
      const double g = at(fc, gi), u = at(fc, ui), d = at(dout, oi), s = sigmoid(g);
      const double y = g * s * u, dg = d * u * s * (1 + g * (1 - s)), du = d * g * s;
      ASSERT_NEAR(__bfloat162float(out[oi]), y, std::ldexp(std::fabs(y), -8) + 1e-5 * std::fabs(g * u) + 1e-30) << n << "," << f;
      ASSERT_NEAR(__bfloat162float(dfc[gi]), dg, std::ldexp(std::fabs(dg), -8) + 1e-5 * std::fabs(d * u) * (1 + std::fabs(g)) + 1e-30)
          << "gate gradient " << n << "," << f;
      ASSERT_NEAR(__bfloat162float(dfc[ui]), du, std::ldexp(std::fabs(du), -8) + 1e-5 * std::fabs(d * g) + 1e-30)
          << "up gradient " << n << "," << f;
    }
}

// Grouped-query shapes: 4 q heads and 2 k heads of 64 (and 2 + 1 of 128) in rows that also hold
// 2 v heads (left alone); two sequences of T = 96 positions, rope theta 10^4 and Llama-3's
// 5 x 10^5. Forward against the double rotation of the inputs; back again (sign -1) against
// the double inverse rotation of the GPU's output.
TEST(LlamaOpsGpu, RotaryPositionsMatchDoubleArithmeticBothWays) {
  FP8SCOPE_REQUIRE_GPU();
  struct Shape {
    int nh, kvh, hs;
    double theta;
  };
  for (const Shape sh : {Shape{4, 2, 64, 1e4}, Shape{2, 1, 128, 5e5}}) {
    SCOPED_TRACE(sh.hs);
    const int B = 2, T = 96, N = B * T, heads = sh.nh + sh.kvh, ld = (sh.nh + 2 * sh.kvh) * sh.hs;
    const auto qkv = normal_bf16(std::size_t(N) * ld, 1.0f, 3);
    const std::vector<float> table = model::rope_cos_sin(T, sh.hs, sh.theta);
    core::DeviceBuffer d_qkv = upload(qkv), d_table(table.size() * sizeof(float));
    FP8S_CUDA(cudaMemcpy(d_table.get(), table.data(), d_table.size(), cudaMemcpyHostToDevice));
    auto rotated = [&](const std::vector<bf16>& src, int sign) {  // double rotation of src, every channel
      std::vector<double> want(src.size());
      for (std::size_t i = 0; i < src.size(); ++i) want[i] = at(src, i);
      for (int n = 0; n < N; ++n)
        for (int h = 0; h < heads; ++h)
          for (int i = 0; i < sh.hs / 2; ++i) {
            const double a = sign * model::rope_angle(n % T, i, sh.hs, sh.theta);
            const std::size_t j = std::size_t(n) * ld + std::size_t(h) * sh.hs + 2 * i;
            const double x0 = at(src, j), x1 = at(src, j + 1);
            want[j] = x0 * std::cos(a) - x1 * std::sin(a);
            want[j + 1] = x0 * std::sin(a) + x1 * std::cos(a);
          }
      return want;
    };
    auto check = [&](const std::vector<bf16>& got, const std::vector<bf16>& src, const std::vector<double>& want, const char* what) {
      for (std::size_t i = 0; i < got.size(); ++i) {
        const std::size_t col = i % std::size_t(ld), pair = i - col % 2;
        if (col >= std::size_t(heads) * sh.hs) {  // v: untouched
          ASSERT_EQ(std::memcmp(&got[i], &src[i], sizeof(bf16)), 0) << what << " v channel " << i;
          continue;
        }
        const double mag = std::hypot(at(src, pair), at(src, pair + 1));  // rotation keeps the pair's length
        ASSERT_NEAR(__bfloat162float(got[i]), want[i], std::ldexp(mag, -8) + 1e-6 * mag) << what << " element " << i;
      }
    };
    gpu_model::rope_apply(d_qkv.as<bf16>(), d_table.as<float>(), N, T, ld, heads, sh.hs, +1, nullptr);
    FP8S_CUDA(cudaDeviceSynchronize());
    const auto fwd = download<bf16>(d_qkv, qkv.size());
    check(fwd, qkv, rotated(qkv, +1), "forward");
    gpu_model::rope_apply(d_qkv.as<bf16>(), d_table.as<float>(), N, T, ld, heads, sh.hs, -1, nullptr);
    FP8S_CUDA(cudaDeviceSynchronize());
    check(download<bf16>(d_qkv, qkv.size()), fwd, rotated(fwd, -1), "backward");
  }
}
