// FP8 codecs: every code decodes right; encoding matches CUDA's own host conversions on every
// float16 value, the edge cases and random floats, in both overflow modes.
#include "fp8scope/fp8/format.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#if FP8SCOPE_HAVE_CUDA_FP8_H
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#endif

using namespace fp8scope::fp8;

namespace {

float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Half -> float without CUDA headers, to enumerate every float16 value.
float half_to_float(std::uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 0x1F, m = h & 0x3FF;
  float v;
  if (e == 0)
    v = std::ldexp(float(m), -24);
  else if (e == 31)
    v = m ? NAN : INFINITY;
  else
    v = std::ldexp(float(m + 1024), e - 25);
  return s ? -v : v;
}

// Independent decode straight from the definition, with the special codes spelt out.
double decode_by_definition(std::uint8_t c, Format f) {
  const bool e4 = f == Format::e4m3;
  const int mb = e4 ? 3 : 2, eb = e4 ? 4 : 5, bias = e4 ? 7 : 15;
  const int s = c >> 7, e = (c >> mb) & ((1 << eb) - 1), m = c & ((1 << mb) - 1);
  double v;
  if (e4 && e == 15 && m == 7) return NAN;
  if (!e4 && e == 31) return m ? NAN : (s ? -INFINITY : INFINITY);
  if (e == 0)
    v = m * std::pow(2.0, 1 - bias - mb);
  else
    v = (1.0 + m / double(1 << mb)) * std::pow(2.0, e - bias);
  return s ? -v : v;
}

std::vector<float> edge_cases(Format f) {
  const FormatInfo fi = info(f);
  std::vector<float> v = {0.0f,
                          -0.0f,
                          INFINITY,
                          -INFINITY,
                          NAN,
                          fi.max,
                          -fi.max,
                          fi.min_normal,
                          fi.min_sub,
                          fi.min_sub / 2,
                          fi.min_sub * 0.5000001f,
                          fi.min_sub * 0.4999999f,
                          fi.min_sub * 1.5f,
                          std::nextafter(fi.max, INFINITY),
                          fi.max * (1 + 1.0f / (1 << (fi.man_bits + 1))),
                          fi.max * (1 + 1.0f / (1 << (fi.man_bits + 1))) * 1.0001f,
                          1e30f,
                          -1e30f,
                          1e-30f,
                          from_bits(1),
                          from_bits(0x007FFFFF),
                          3.4e38f};
  // Every halfway point between neighbouring positive codes (ties go to even).
  for (int c = 0; c < 0x7E; ++c) {
    const float a = decode(std::uint8_t(c), f), b = decode(std::uint8_t(c + 1), f);
    if (std::isfinite(a) && std::isfinite(b)) {
      v.push_back((a + b) / 2);
      v.push_back(-(a + b) / 2);
      v.push_back(std::nextafter((a + b) / 2, 0.0f));
      v.push_back(std::nextafter((a + b) / 2, INFINITY));
    }
  }
  return v;
}

}  // namespace

TEST(Fp8Format, DecodeEveryCodeMatchesDefinition) {
  for (Format f : {Format::e4m3, Format::e5m2})
    for (int c = 0; c < 256; ++c) {
      const double want = decode_by_definition(std::uint8_t(c), f);
      const float got = decode(std::uint8_t(c), f);
      if (std::isnan(want))
        EXPECT_TRUE(std::isnan(got)) << name(f) << " code " << c;
      else
        EXPECT_EQ(double(got), want) << name(f) << " code " << c;
    }
}

TEST(Fp8Format, KnownValues) {
  EXPECT_EQ(decode(0x7E, Format::e4m3), 448.0f);
  EXPECT_EQ(decode(0x01, Format::e4m3), std::ldexp(1.0f, -9));
  EXPECT_EQ(decode(0x08, Format::e4m3), std::ldexp(1.0f, -6));
  EXPECT_EQ(decode(0x38, Format::e4m3), 1.0f);
  EXPECT_TRUE(std::isnan(decode(0x7F, Format::e4m3)));
  EXPECT_TRUE(std::isnan(decode(0xFF, Format::e4m3)));
  EXPECT_EQ(decode(0x7B, Format::e5m2), 57344.0f);
  EXPECT_EQ(decode(0x7C, Format::e5m2), INFINITY);
  EXPECT_EQ(decode(0xFC, Format::e5m2), -INFINITY);
  EXPECT_EQ(decode(0x3C, Format::e5m2), 1.0f);
  EXPECT_EQ(decode(0x01, Format::e5m2), std::ldexp(1.0f, -16));
  // Overflow behaviour, spelt out.
  EXPECT_EQ(encode(464.0f, Format::e4m3, Overflow::nosat), 0x7E);  // tie -> even (448)
  EXPECT_EQ(encode(465.0f, Format::e4m3, Overflow::nosat), 0x7F);  // NaN
  EXPECT_EQ(encode(465.0f, Format::e4m3, Overflow::satfinite), 0x7E);
  EXPECT_EQ(encode(61440.0f, Format::e5m2, Overflow::nosat), 0x7C);  // tie -> even is 2^16: inf
  EXPECT_EQ(encode(61440.0f, Format::e5m2, Overflow::satfinite), 0x7B);
  EXPECT_EQ(encode(-1e9f, Format::e5m2, Overflow::nosat), 0xFC);
  EXPECT_EQ(encode(-0.0f, Format::e4m3, Overflow::nosat), 0x80);
}

TEST(Fp8Format, RoundTripOfEveryFiniteCode) {
  for (Format f : {Format::e4m3, Format::e5m2})
    for (Overflow o : {Overflow::satfinite, Overflow::nosat})
      for (int c = 0; c < 256; ++c) {
        const float x = decode(std::uint8_t(c), f);
        if (std::isfinite(x)) EXPECT_EQ(encode(x, f, o), c) << name(f) << " code " << c;
      }
}

#if FP8SCOPE_HAVE_CUDA_FP8_H
namespace {
std::uint8_t cuda_encode(float x, Format f, Overflow o) {
  return __nv_cvt_float_to_fp8(x, o == Overflow::satfinite ? __NV_SATFINITE : __NV_NOSAT, f == Format::e4m3 ? __NV_E4M3 : __NV_E5M2);
}
void expect_same_as_cuda(float x, Format f, Overflow o) {
  const std::uint8_t got = encode(x, f, o), want = cuda_encode(x, f, o);
  // NaN payloads/signs may differ; both must be NaN.
  if (std::isnan(decode(want, f)))
    EXPECT_TRUE(std::isnan(decode(got, f))) << x;
  else
    EXPECT_EQ(int(got), int(want)) << name(f) << " " << name(o) << " x=" << x;
}
}  // namespace

TEST(Fp8FormatVsCuda, DecodeEveryCode) {
  for (Format f : {Format::e4m3, Format::e5m2})
    for (int c = 0; c < 256; ++c) {
      __half_raw h = __nv_cvt_fp8_to_halfraw(__nv_fp8_storage_t(c), f == Format::e4m3 ? __NV_E4M3 : __NV_E5M2);
      const float want = half_to_float(h.x);
      const float got = decode(std::uint8_t(c), f);
      if (std::isnan(want))
        EXPECT_TRUE(std::isnan(got));
      else
        EXPECT_EQ(got, want) << name(f) << " code " << c;
    }
}

TEST(Fp8FormatVsCuda, EncodeEveryFloat16) {
  for (Format f : {Format::e4m3, Format::e5m2})
    for (Overflow o : {Overflow::satfinite, Overflow::nosat})
      for (std::uint32_t h = 0; h < 65536; ++h) expect_same_as_cuda(half_to_float(std::uint16_t(h)), f, o);
}

TEST(Fp8FormatVsCuda, EncodeEdgeCases) {
  for (Format f : {Format::e4m3, Format::e5m2})
    for (Overflow o : {Overflow::satfinite, Overflow::nosat})
      for (float x : edge_cases(f)) expect_same_as_cuda(x, f, o);
}

TEST(Fp8FormatVsCuda, EncodeRandomFloats) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<std::uint32_t> bits;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (Format f : {Format::e4m3, Format::e5m2})
    for (Overflow o : {Overflow::satfinite, Overflow::nosat})
      for (int i = 0; i < 300000; ++i) {
        expect_same_as_cuda(from_bits(bits(rng)), f, o);                         // any bit pattern
        expect_same_as_cuda(normal(rng) * std::ldexp(1.0f, i % 40 - 20), f, o);  // realistic data
      }
}
#else
TEST(Fp8FormatVsCuda, Skipped) { GTEST_SKIP() << "cuda_fp8.h not available (no CUDA toolkit): CUDA-oracle tests skipped"; }
#endif
