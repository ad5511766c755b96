#include "fp8scope/gpu_model/gemm_cache.hpp"

#include "fp8scope/core/initialized_mark.hpp"
#include "fp8scope/gemm/verdict.hpp"

#include <fmt/format.h>

namespace fp8scope::gpu_model {

namespace {
constexpr std::size_t kWorkspace = 32u << 20;

std::string shape(const GemmCall& c) {
  return fmt::format("{}{} m={} n={} k={} lda={} ldb={} ldd={} batch={} {}x{}->{}", c.ta ? 'T' : 'N', c.tb ? 'T' : 'N', c.m, c.n, c.k,
                     c.lda, c.ldb, c.ldd, c.batch, gemm::to_string(c.a), gemm::to_string(c.b), gemm::to_string(c.d));
}

std::string with_reason(std::string msg, const nlohmann::json& why) {
  if (why.is_array() && !why.empty()) msg += "; " + why[0].get<std::string>();
  return msg;
}
}  // namespace

GemmCache::GemmCache(cudaStream_t stream) : stream_(stream), workspace_(kWorkspace) {}

GemmCache::Key GemmCache::key_of(const GemmCall& c) {
  return {c.ta, c.tb, c.m,     c.n,    c.k,    c.lda,     c.ldb,     c.ldd,    c.batch,  c.a,
          c.b,  c.d,  c.alpha, c.beta, c.bias, c.a_scale, c.b_scale, c.a_mode, c.b_mode, c.fast_accum};
}

void GemmCache::run(const GemmCall& c, const void* A, const void* B, void* D, const char* what) {
  const Key key = key_of(c);
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    gemm::GemmSpec s;
    s.trans_a = c.ta, s.trans_b = c.tb;
    s.m = c.m, s.n = c.n, s.k = c.k, s.lda = c.lda, s.ldb = c.ldb, s.ldd = c.ldd, s.batch = c.batch;
    s.a = c.a, s.b = c.b, s.c = c.d, s.d = c.d;
    s.alpha = c.alpha, s.beta = c.beta;
    s.fast_accum = c.fast_accum;
    s.a_scale = c.a_mode, s.b_scale = c.b_mode;
    s.epilogue = c.bias ? gemm::Epilogue::bias : gemm::Epilogue::none;
    s.workspace_bytes = kWorkspace;
    gemm::LtPointers p;
    p.bias = c.bias;
    p.a_scale = c.a_scale;
    p.b_scale = c.b_scale;
    // The batch stride is ldd * n, as lt_matmul lays it out; columns padded beyond m count too.
    const std::size_t d_bytes = std::size_t((s.batch - 1) * s.ldd_eff() * s.n + (s.n - 1) * s.ldd_eff() + s.m) * gemm::size_of(s.d);
    Plan plan{std::make_unique<gemm::LtMatmul>(s, p), {}, d_bytes};
    if (plan.mm->setup_status())
      throw GemmRefused(core::Outcome::heuristic_unsupported,
                        fmt::format("{} GEMM ({}): cuBLASLt refused {}: {}", what, shape(c), plan.mm->setup_step(),
                                    gemm::status_name(plan.mm->setup_status())));
    auto h = plan.mm->heuristic(handle_, 1, false);
    if (auto v = gemm::heuristic_verdict(h.status, int(h.results.size()))) {
      const auto why = gemm::explain_refusal([&] { plan.mm->heuristic(handle_, 1, false); }, 0);
      throw GemmRefused(
          *v, with_reason(fmt::format("{} GEMM ({}): no cuBLASLt algorithm ({})", what, shape(c), gemm::status_name(h.status)), why));
    }
    plan.algo = h.results[0].algo;
    it = plans_.emplace(key, std::move(plan)).first;
  }
  const int st = it->second.mm->run_on(handle_, it->second.algo, stream_, A, B, D, workspace_.get());
  if (st) {
    const auto why = gemm::explain_refusal([&] { it->second.mm->run_on(handle_, it->second.algo, stream_, A, B, D, workspace_.get()); }, 0);
    throw GemmRefused(core::Outcome::run_rejected,
                      with_reason(fmt::format("{} GEMM ({}): cublasLtMatmul refused: {}", what, shape(c), gemm::status_name(st)), why));
  }
  core::mark_initialized(D, it->second.d_bytes, stream_);  // initcheck does not see cuBLASLt's stores
}

}  // namespace fp8scope::gpu_model
