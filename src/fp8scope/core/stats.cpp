#include "fp8scope/core/stats.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace fp8scope::core {
namespace {
double quantile(const std::vector<double>& sorted, double q) {
  const double pos = q * double(sorted.size() - 1);
  const std::size_t lo = std::size_t(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - double(lo)) * (sorted[hi] - sorted[lo]);
}
}  // namespace

Stats compute_stats(std::vector<double> v) {
  Stats s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
  s.median = quantile(v, 0.5);
  s.q1 = quantile(v, 0.25);
  s.q3 = quantile(v, 0.75);
  s.iqr = s.q3 - s.q1;
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.rel_stdev = s.mean != 0 ? std::sqrt(ss / double(v.size() - 1)) / std::abs(s.mean) : 0;
  }
  s.rel_iqr = s.median != 0 ? s.iqr / std::abs(s.median) : 0;
  return s;
}

nlohmann::json to_json(const Stats& s) {
  return {{"n", s.n},   {"min", s.min}, {"max", s.max}, {"mean", s.mean},           {"median", s.median},
          {"q1", s.q1}, {"q3", s.q3},   {"iqr", s.iqr}, {"rel_stdev", s.rel_stdev}, {"rel_iqr", s.rel_iqr}};
}

}  // namespace fp8scope::core
