#include "fp8scope/core/stats.hpp"

#include <gtest/gtest.h>

using namespace fp8scope::core;

TEST(Stats, QuantilesInterpolateLikeNumpy) {
  // numpy.percentile([1,2,3,4,10], [25,50,75]) = [2, 3, 4]
  Stats s = compute_stats({10, 2, 4, 1, 3});
  EXPECT_EQ(s.n, 5u);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 10);
  EXPECT_DOUBLE_EQ(s.mean, 4);
  EXPECT_DOUBLE_EQ(s.median, 3);
  EXPECT_DOUBLE_EQ(s.q1, 2);
  EXPECT_DOUBLE_EQ(s.q3, 4);
  EXPECT_DOUBLE_EQ(s.iqr, 2);
  EXPECT_DOUBLE_EQ(s.rel_iqr, 2.0 / 3.0);
  // sample stdev of {1,2,3,4,10} = sqrt(12.5)
  EXPECT_NEAR(s.rel_stdev, std::sqrt(12.5) / 4, 1e-12);
  // numpy.percentile([1,2,3,4], 25) = 1.75
  EXPECT_DOUBLE_EQ(compute_stats({4, 3, 2, 1}).q1, 1.75);
}

TEST(Stats, DegenerateSets) {
  EXPECT_EQ(compute_stats({}).n, 0u);
  Stats one = compute_stats({7});
  EXPECT_DOUBLE_EQ(one.median, 7);
  EXPECT_DOUBLE_EQ(one.rel_stdev, 0);
}
