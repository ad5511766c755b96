#include "fp8scope/cpu/adamw.hpp"

#include <cmath>

namespace fp8scope::cpu {

AdamW::AdamW(std::size_t n, AdamWConfig cfg, std::vector<bool> decay_mask)
    : cfg_(cfg), decay_(std::move(decay_mask)), m_(n, 0.0), v_(n, 0.0) {}

double AdamW::step(std::vector<double>& p, std::vector<double>& g, double lr, double clip) {
  double ss = 0;
  for (double x : g) ss += x * x;
  const double norm = std::sqrt(ss);
  if (clip > 0 && norm > clip)
    for (double& x : g) x *= clip / norm;
  ++t_;
  const double c1 = 1.0 - std::pow(cfg_.beta1, t_), c2 = 1.0 - std::pow(cfg_.beta2, t_);
  for (std::size_t i = 0; i < p.size(); ++i) {
    m_[i] = cfg_.beta1 * m_[i] + (1 - cfg_.beta1) * g[i];
    v_[i] = cfg_.beta2 * v_[i] + (1 - cfg_.beta2) * g[i] * g[i];
    const double update = (m_[i] / c1) / (std::sqrt(v_[i] / c2) + cfg_.eps);
    p[i] -= lr * (update + (decay_[i] ? cfg_.weight_decay * p[i] : 0.0));
  }
  return norm;
}

}  // namespace fp8scope::cpu
