#include "fp8scope/model/rope.hpp"

#include <cmath>
#include <cstddef>

namespace fp8scope::model {

double rope_angle(int t, int i, int hs, double theta) { return t * std::pow(theta, -2.0 * i / hs); }

std::vector<float> rope_cos_sin(int T, int hs, double theta) {
  std::vector<float> out(std::size_t(T) * hs);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < hs / 2; ++i) {
      const double a = rope_angle(t, i, hs, theta);
      out[(std::size_t(t) * (hs / 2) + i) * 2] = float(std::cos(a));
      out[(std::size_t(t) * (hs / 2) + i) * 2 + 1] = float(std::sin(a));
    }
  return out;
}

}  // namespace fp8scope::model
