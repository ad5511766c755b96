#include "fp8scope/model/gemm_cache.hpp"

#include "fp8scope/gemm/verdict.hpp"

#include <fmt/format.h>

#include <stdexcept>

namespace fp8scope::model {

namespace {
constexpr std::size_t kWorkspace = 32u << 20;
}

GemmCache::GemmCache(cudaStream_t stream) : stream_(stream), workspace_(kWorkspace) {}

void GemmCache::run(const GemmCall& c, const void* A, const void* B, void* D) {
  const std::string key = fmt::format("{}{} {} {} {} {} {} {} {} {} {} {} {} {} {}", c.ta, c.tb, c.m, c.n, c.k, c.lda, c.ldb, c.ldd,
                                      c.batch, int(c.a), int(c.b), int(c.d), c.alpha, c.beta, c.bias);
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    gemm::GemmSpec s;
    s.trans_a = c.ta, s.trans_b = c.tb;
    s.m = c.m, s.n = c.n, s.k = c.k, s.lda = c.lda, s.ldb = c.ldb, s.ldd = c.ldd, s.batch = c.batch;
    s.a = c.a, s.b = c.b, s.c = c.d, s.d = c.d;
    s.alpha = c.alpha, s.beta = c.beta;
    s.epilogue = c.bias ? gemm::Epilogue::bias : gemm::Epilogue::none;
    s.workspace_bytes = kWorkspace;
    gemm::LtPointers p;
    p.bias = c.bias;
    Plan plan{std::make_unique<gemm::LtMatmul>(s, p), {}};
    if (plan.mm->setup_status())
      throw std::runtime_error(fmt::format("cuBLASLt refused the GEMM description ({}): {}", plan.mm->setup_step(),
                                           gemm::status_name(plan.mm->setup_status())));
    auto h = plan.mm->heuristic(handle_, 1, false);
    if (h.status || h.results.empty())
      throw std::runtime_error(fmt::format("no cuBLASLt algorithm for the GEMM {}: {}", key, gemm::status_name(h.status)));
    plan.algo = h.results[0].algo;
    it = plans_.emplace(key, std::move(plan)).first;
  }
  const int st = it->second.mm->run_on(handle_, it->second.algo, stream_, A, B, D, workspace_.get());
  if (st) throw std::runtime_error(fmt::format("cublasLtMatmul failed for {}: {}", key, gemm::status_name(st)));
}

}  // namespace fp8scope::model
