#include "fp8scope/model/schedule.hpp"

#include <algorithm>
#include <cmath>

namespace fp8scope::model {

double LrSchedule::at(int step) const {
  if (step < warmup) return max_lr * double(step + 1) / double(warmup);
  if (step >= total_steps) return min_lr;
  const double progress = double(step - warmup) / double(std::max(1, total_steps - warmup));
  return min_lr + 0.5 * (1.0 + std::cos(M_PI * progress)) * (max_lr - min_lr);
}

}  // namespace fp8scope::model
