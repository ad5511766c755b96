#include "fp8scope/gemm/point_fn.hpp"

#include "fp8scope/gemm/run_options.hpp"

#if FP8SCOPE_HAVE_CUDA
#include "fp8scope/gemm/gemm_runner.hpp"
#endif

#include <memory>
#include <stdexcept>

namespace fp8scope::gemm {

std::function<core::Record(const core::json&, const std::string&)> make_gemm_point_fn(const core::ProbeContext& ctx,
                                                                                      SpecFromPoint to_spec) {
#if FP8SCOPE_HAVE_CUDA
  auto runner = std::make_shared<GemmRunner>(ctx.device, options_from_settings(ctx.settings));
  return [runner, to_spec](const core::json& p, const std::string& key) { return runner->run(to_spec(p), key, p); };
#else
  (void)ctx;
  (void)to_spec;
  throw std::runtime_error("fp8scope was built without CUDA: GEMM points cannot run");
#endif
}

}  // namespace fp8scope::gemm
