// Host-only builds (FP8SCOPE_CUDA=OFF or no CUDA compiler): there is never a GPU to use.
#include "fp8scope/core/env.hpp"

namespace fp8scope::core {

json gpu_env(int) { return {{"gpu", nullptr}, {"gpu_reason", "fp8scope was built without CUDA"}}; }

}  // namespace fp8scope::core
