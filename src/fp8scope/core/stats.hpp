#pragma once
// Summary statistics of a sample set (timings in ms, clocks in MHz, ...).
#include <nlohmann/json.hpp>

#include <vector>

namespace fp8scope::core {

struct Stats {
  std::size_t n = 0;
  double min = 0, max = 0, mean = 0, median = 0, q1 = 0, q3 = 0, iqr = 0;
  double rel_stdev = 0;  // sample stdev / mean
  double rel_iqr = 0;    // iqr / median: the noise figure the gate uses
};

// Quantiles by linear interpolation between order statistics (numpy's default).
Stats compute_stats(std::vector<double> samples);
nlohmann::json to_json(const Stats& s);

}  // namespace fp8scope::core
