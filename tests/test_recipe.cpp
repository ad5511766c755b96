// Scaling recipes against hand-computed sequences (fp8 max: E4M3 448, E5M2 57344).
#include "fp8scope/fp8/recipe.hpp"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <vector>

using namespace fp8scope::fp8;

namespace {
std::vector<float> run(RecipeConfig cfg, Format f, const std::vector<float>& amaxes) {
  TensorScaler s(cfg, f);
  std::vector<float> out;
  for (float a : amaxes) {
    s.update(a);
    out.push_back(s.scale());
  }
  return out;
}
RecipeConfig delayed(int margin, int hist, AmaxAlgo algo, RecipeFormat fmt = RecipeFormat::e4m3) {
  return {Scaling::delayed, fmt, margin, hist, algo};
}
}  // namespace

TEST(Recipe, InitialScaleIsOne) {
  TensorScaler s(delayed(0, 16, AmaxAlgo::max), Format::e4m3);
  EXPECT_EQ(s.scale(), 1.0f);
  EXPECT_EQ(s.scale_inv(), 1.0f);
}

TEST(Recipe, HistoryMaxRollsOut) {
  // history 3: [2] [4,2] [1,4,2] [.5,1,4] [.5,.5,1] -> amax 2,4,4,4,1
  EXPECT_EQ(run(delayed(0, 3, AmaxAlgo::max), Format::e4m3, {2, 4, 1, 0.5f, 0.5f}), (std::vector<float>{224, 112, 112, 112, 448}));
}

TEST(Recipe, MostRecentIgnoresHistory) {
  EXPECT_EQ(run(delayed(0, 3, AmaxAlgo::most_recent), Format::e4m3, {2, 4, 1, 0.5f, 0.5f}), (std::vector<float>{224, 112, 448, 896, 896}));
}

TEST(Recipe, MarginDividesByPowerOfTwo) {
  EXPECT_EQ(run(delayed(1, 1, AmaxAlgo::max), Format::e4m3, {2}), (std::vector<float>{112}));
  EXPECT_EQ(run(delayed(3, 1, AmaxAlgo::max), Format::e4m3, {2}), (std::vector<float>{28}));
  EXPECT_EQ(run(delayed(-1, 1, AmaxAlgo::max), Format::e4m3, {2}), (std::vector<float>{448}));
  // HYBRID gradient tensors are E5M2: 57344 / 8 / 2^2 = 1792.
  EXPECT_EQ(format_for(RecipeFormat::hybrid, Pass::backward), Format::e5m2);
  EXPECT_EQ(format_for(RecipeFormat::hybrid, Pass::forward), Format::e4m3);
  EXPECT_EQ(format_for(RecipeFormat::e4m3, Pass::backward), Format::e4m3);
  EXPECT_EQ(run(delayed(2, 1, AmaxAlgo::max, RecipeFormat::hybrid), Format::e5m2, {8}), (std::vector<float>{1792}));
}

TEST(Recipe, BadAmaxKeepsPreviousScale) {
  EXPECT_EQ(run(delayed(0, 1, AmaxAlgo::max), Format::e4m3, {2, 0, INFINITY, NAN, -0.0f, 8}),
            (std::vector<float>{224, 224, 224, 224, 224, 56}));
}

TEST(Recipe, NanInHistoryFreezesScaleUntilItRollsOut) {
  // history 3 with max: [2] [NaN,2] [1,NaN,2] [1,1,NaN] [1,1,1]
  EXPECT_EQ(run(delayed(0, 3, AmaxAlgo::max), Format::e4m3, {2, NAN, 1, 1, 1}), (std::vector<float>{224, 224, 224, 224, 448}));
  // most_recent forgets it at once.
  EXPECT_EQ(run(delayed(0, 3, AmaxAlgo::most_recent), Format::e4m3, {2, NAN, 1}), (std::vector<float>{224, 224, 448}));
}

TEST(Recipe, InfiniteScaleClampsToFltMax) {
  const float tiny = std::nextafter(0.0f, 1.0f);  // 448 / 1.4e-45 overflows
  EXPECT_EQ(run(delayed(0, 1, AmaxAlgo::max), Format::e4m3, {tiny}), (std::vector<float>{FLT_MAX}));
  EXPECT_EQ(*scale_from_amax(1e-40f, 448.0f, -10), FLT_MAX);
  EXPECT_FALSE(scale_from_amax(0.0f, 448.0f, 0).has_value());
  EXPECT_FALSE(scale_from_amax(NAN, 448.0f, 0).has_value());
}

TEST(Recipe, CurrentScalingUsesThisStepsAmax) {
  RecipeConfig cfg{Scaling::current, RecipeFormat::e4m3, 0, 1024, AmaxAlgo::max};
  EXPECT_EQ(run(cfg, Format::e4m3, {2, 4, 1, 0, 8}), (std::vector<float>{224, 112, 448, 448, 56}));
  TensorScaler s(cfg, Format::e4m3);
  s.update(4);
  s.update(1);
  EXPECT_EQ(s.history().size(), 1u);
}

TEST(Recipe, HistoryLengthIsBounded) {
  TensorScaler s(delayed(0, 4, AmaxAlgo::max), Format::e4m3);
  for (int i = 0; i < 10; ++i) s.update(float(i + 1));
  ASSERT_EQ(s.history().size(), 4u);
  EXPECT_EQ(s.history().front(), 10.0f);
  EXPECT_EQ(s.history().back(), 7.0f);
  EXPECT_EQ(s.reduced_amax(), 10.0f);
}
