// The threshold form of the cast statistics (cast_thresholds.hpp) against the direct tests it
// replaces in the fast cast kernels: for every BF16 magnitude, and for sampled FP32 magnitudes
// plus the neighbours of each threshold, "saturated" and "underflow" must agree with
// fl(|x| * scale) > max and x != 0 && fl(|x| * scale) <= min_sub / 2, for ordinary scales
// and the degenerate ones (0, denormal, huge, inf, NaN, negative).
#include "fp8scope/fp8/cast_thresholds.hpp"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

using namespace fp8scope::fp8;

namespace {

bool saturates(float x, float scale, Format f) { return std::isfinite(x) && std::fabs(x) * scale > info(f).max; }
bool underflows(float x, float scale, Format f) { return std::fabs(x) != 0.0f && std::fabs(x) * scale <= 0.5f * info(f).min_sub; }

std::vector<float> scales() {
  std::vector<float> s = {1.0f,
                          100.0f,
                          448.0f / 3.7f,
                          57344.0f / 1e-3f,
                          std::ldexp(1.0f, -10),
                          std::ldexp(1.0f, 20),
                          1e-30f,
                          1e30f,
                          FLT_MAX,
                          std::numeric_limits<float>::denorm_min(),
                          FLT_MIN,
                          0.0f,
                          std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(),
                          -2.0f,
                          3.0e-5f};
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> e(-40.0f, 40.0f);
  for (int i = 0; i < 40; ++i) s.push_back(std::exp2(e(rng)));  // the scales a recipe produces
  return s;
}

}  // namespace

TEST(CastThresholds, EveryBf16MagnitudeAgreesWithTheDirectTests) {
  for (Format f : {Format::e4m3, Format::e5m2})
    for (float scale : scales()) {
      const Bf16Thresholds t = bf16_thresholds(scale, f);
      int wrong = 0;
      for (std::uint32_t mag = 0; mag < 0x7F80u; ++mag) {  // every finite BF16 magnitude
        const float x = float_from_bits(mag << 16);
        wrong += (mag > t.sat) != saturates(x, scale, f);
        wrong += (mag - 1u < t.under) != underflows(x, scale, f);
      }
      EXPECT_EQ(wrong, 0) << name(f) << " scale " << scale;
    }
}

TEST(CastThresholds, SampledFp32MagnitudesAndEachThresholdsNeighboursAgree) {
  std::mt19937 rng(9);
  std::uniform_int_distribution<std::uint32_t> any(0, 0x7F7FFFFFu);
  for (Format f : {Format::e4m3, Format::e5m2})
    for (float scale : scales()) {
      const CastThresholds t = cast_thresholds(scale, f);
      std::vector<std::uint32_t> mags = {0, 1, 0x7F7FFFFFu};
      for (std::uint32_t c : {t.sat, t.under})
        for (int d = -3; d <= 3; ++d)
          if (std::int64_t(c) + d >= 0 && std::int64_t(c) + d <= 0x7F7FFFFF) mags.push_back(std::uint32_t(std::int64_t(c) + d));
      for (int i = 0; i < 20000; ++i) mags.push_back(any(rng));
      int wrong = 0;
      for (std::uint32_t mag : mags) {
        const float x = float_from_bits(mag);
        wrong += (mag > t.sat) != saturates(x, scale, f);
        wrong += (mag - 1u < t.under) != underflows(x, scale, f);
      }
      EXPECT_EQ(wrong, 0) << name(f) << " scale " << scale;
    }
}

TEST(CastThresholds, OrdinaryScaleHasTheExpectedCutoffs) {
  // scale 1, E4M3: 448 is the largest value that does not saturate; 2^-10 (half the smallest
  // subnormal, a tie that rounds to zero) the largest that underflows.
  const CastThresholds t = cast_thresholds(1.0f, Format::e4m3);
  EXPECT_EQ(float_from_bits(t.sat), 448.0f);
  EXPECT_EQ(float_from_bits(t.under), std::ldexp(1.0f, -10));
}

// The fast path's bound: below `clean` every magnitude is finite, does not saturate and
// encodes to a finite code in both overflow modes (checked over every BF16 magnitude and the
// FP32 neighbours of the bound); scales that are not finite and positive turn it off.
TEST(CastThresholds, CleanBoundOnlyAdmitsValuesWithFiniteCodes) {
  for (Format f : {Format::e4m3, Format::e5m2})
    for (float scale : scales()) {
      const CastThresholds t = cast_thresholds(scale, f);
      const Bf16Thresholds tb = bf16_thresholds(scale, f);
      const bool ordinary = scale > 0.0f && std::isfinite(scale);
      ASSERT_EQ(t.clean != 0, ordinary) << name(f) << " scale " << scale;
      ASSERT_EQ(tb.clean != 0, ordinary) << name(f) << " scale " << scale;
      if (!ordinary) continue;
      EXPECT_EQ(t.clean, t.sat + 1);
      int wrong = 0;
      auto check = [&](float x) {
        wrong += saturates(x, scale, f) || !std::isfinite(x);
        for (Overflow o : {Overflow::satfinite, Overflow::nosat}) wrong += !std::isfinite(decode(encode(x * scale, f, o), f));
      };
      for (std::uint32_t mag = 0; mag < tb.clean; ++mag) check(float_from_bits(mag << 16));
      for (std::uint32_t d = 1; d <= 4 && d <= t.clean; ++d) check(float_from_bits(t.clean - d));
      EXPECT_EQ(wrong, 0) << name(f) << " scale " << scale;
    }
}
