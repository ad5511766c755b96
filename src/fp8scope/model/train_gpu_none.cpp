// Host-only builds: the GPU backend is not there.
#include "fp8scope/model/train_point.hpp"

namespace fp8scope::model {

void train_on_gpu(const TrainPoint&, const core::json&, const core::json&, int, core::Record& r) {
  r.outcome = core::Outcome::skipped;
  r.reason = "fp8scope was built without CUDA: the GPU backend is not available";
}

}  // namespace fp8scope::model
