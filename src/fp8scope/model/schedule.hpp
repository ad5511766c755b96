#pragma once
// Learning rate: linear warm-up to max_lr over warmup steps, then cosine decay to min_lr at
// total_steps (and min_lr after). step counts from 0.
namespace fp8scope::model {

struct LrSchedule {
  double max_lr = 6e-4, min_lr = 6e-5;
  int warmup = 0, total_steps = 1;
  double at(int step) const;
};

}  // namespace fp8scope::model
