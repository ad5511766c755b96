// Host-only builds: the GPU backend is not there.
#include "train/train_point.hpp"

namespace fp8scope::train {

namespace {
constexpr const char* kNoCuda = "fp8scope was built without CUDA: the GPU backend is not available";
}

bool train_gpu_run(const TrainPoint&, const model::Fp8ModelConfig*, const core::json&, int, bool, GpuRun&, core::Record& r) {
  r.outcome = core::Outcome::skipped;
  r.reason = kNoCuda;
  return false;
}

void train_on_gpu(const TrainPoint&, const core::json&, const core::json&, int, core::Record& r) {
  r.outcome = core::Outcome::skipped;
  r.reason = kNoCuda;
}

}  // namespace fp8scope::train
