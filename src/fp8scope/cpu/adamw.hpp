#pragma once
// AdamW with decoupled weight decay and global-norm gradient clipping, in plain double loops:
// the reference the GPU optimizer is checked against.
//   g <- g * min(1, clip / ||g||)            (clip <= 0: no clipping)
//   m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
//   p <- p - lr * ( m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd * p )   (wd only where decay)
#include <vector>

namespace fp8scope::cpu {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

class AdamW {
 public:
  AdamW(std::size_t n, AdamWConfig cfg, std::vector<bool> decay_mask);
  // Clips grads in place; returns the global norm before clipping. t counts from 1.
  double step(std::vector<double>& params, std::vector<double>& grads, double lr, double grad_clip);
  int t() const { return t_; }

 private:
  AdamWConfig cfg_;
  std::vector<bool> decay_;
  std::vector<double> m_, v_;
  int t_ = 0;
};

}  // namespace fp8scope::cpu
