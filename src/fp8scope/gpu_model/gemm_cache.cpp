#include "fp8scope/gpu_model/gemm_cache.hpp"

#include "fp8scope/core/initialized_mark.hpp"
#include "fp8scope/gemm/verdict.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace fp8scope::gpu_model {

namespace {
constexpr std::size_t kWorkspace = 32u << 20;

gemm::Epilogue epilogue_of(const GemmCall& c) {
  using gemm::Epilogue;
  if (c.dgelu_input) return c.dbias ? Epilogue::dgelu_bgrad : Epilogue::dgelu;
  if (c.gelu_aux) return c.bias ? Epilogue::bias_gelu_aux : Epilogue::gelu_aux;
  return c.bias ? Epilogue::bias : Epilogue::none;
}

std::string shape(const GemmCall& c) {
  return fmt::format("{}{} m={} n={} k={} lda={} ldb={} ldd={} batch={} {}x{}->{}{}", c.ta ? 'T' : 'N', c.tb ? 'T' : 'N', c.m, c.n, c.k,
                     c.lda, c.ldb, c.ldd, c.batch, gemm::to_string(c.a), gemm::to_string(c.b), gemm::to_string(c.d),
                     c.gelu_aux || c.dgelu_input ? " +" + gemm::to_string(epilogue_of(c)) + " aux " + gemm::to_string(c.aux) : "") +
         (c.c ? " +C" : "");
}

std::string with_reason(std::string msg, const nlohmann::json& why) {
  if (why.is_array() && !why.empty()) msg += "; " + why[0].get<std::string>();
  return msg;
}

// Timing events for the trials (GpuTimer would allocate its L2-flush buffer, which would count
// in the training run's peak memory). A trial runs the GEMM back to back on its own operands.
struct TrialEvents {
  cudaEvent_t start{}, stop{};
  TrialEvents() {
    FP8S_CUDA(cudaEventCreate(&start));
    FP8S_CUDA(cudaEventCreate(&stop));
  }
  ~TrialEvents() { cudaEventDestroy(start), cudaEventDestroy(stop); }
};
}  // namespace

GemmCache::GemmCache(cudaStream_t stream, int algos) : stream_(stream), algos_(std::max(1, algos)), workspace_(kWorkspace) {}

GemmCache::Key GemmCache::key_of(const GemmCall& c) {
  return {c.ta,      c.tb,     c.m,        c.n,      c.k,           c.lda,     c.ldb,     c.ldd,    c.batch,  c.a,
          c.b,       c.d,      c.alpha,    c.beta,   c.bias,        c.a_scale, c.b_scale, c.a_mode, c.b_mode, c.fast_accum,
          c.d_scale, c.amax_d, c.gelu_aux, c.aux_ld, c.dgelu_input, c.dbias,   c.aux,     c.c};
}

GemmCache::ShapeKey GemmCache::shape_key_of(const GemmCall& c) {
  return {c.ta,         c.tb,
          c.m,          c.n,
          c.k,          c.lda,
          c.ldb,        c.ldd,
          c.batch,      c.a,
          c.b,          c.d,
          c.beta,       c.bias != nullptr,
          c.a_mode,     c.b_mode,
          c.fast_accum, epilogue_of(c),
          c.aux,        c.c != nullptr};
}

double GemmCache::time_algo(const Plan& plan, const cublasLtMatmulAlgo_t& algo, const void* A, const void* B, void* D, const void* C) {
  constexpr int kRuns = 4, kRounds = 3;
  if (plan.mm->run_on(handle_, algo, stream_, A, B, D, workspace_.get(), C))
    return std::numeric_limits<double>::infinity();  // and warms up
  TrialEvents ev;
  double best = std::numeric_limits<double>::infinity();
  for (int round = 0; round < kRounds; ++round) {
    FP8S_CUDA(cudaEventRecord(ev.start, stream_));
    for (int i = 0; i < kRuns; ++i) plan.mm->run_on(handle_, algo, stream_, A, B, D, workspace_.get(), C);
    FP8S_CUDA(cudaEventRecord(ev.stop, stream_));
    FP8S_CUDA(cudaEventSynchronize(ev.stop));
    float ms = 0;
    FP8S_CUDA(cudaEventElapsedTime(&ms, ev.start, ev.stop));
    best = std::min(best, double(ms) / kRuns);
  }
  return best;
}

std::size_t GemmCache::choose(const GemmCall& c, const Plan& plan, const std::vector<cublasLtMatmulHeuristicResult_t>& candidates,
                              const void* A, const void* B, void* D, const char* what) {
  if (algos_ <= 1 || candidates.size() <= 1) return 0;
  if (c.beta != 0.0f && !c.c) return ++untuned_accumulating_, 0;
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  FP8S_CUDA(cudaStreamIsCapturing(stream_, &capturing));
  if (capturing != cudaStreamCaptureStatusNone) return 0;
  const ShapeKey sk = shape_key_of(c);
  if (auto it = tuned_.find(sk); it != tuned_.end()) {
    nlohmann::json& rec = it->second;
    rec["plans"] = rec["plans"].get<int>() + 1;
    // The heuristic answers the same descriptors the same way; a shorter list keeps its first.
    const auto chosen = rec["chosen"].get<std::size_t>();
    return chosen < candidates.size() ? chosen : 0;
  }
  std::vector<double> ms;
  for (const auto& r : candidates) ms.push_back(time_algo(plan, r.algo, A, B, D, c.c));
  const std::size_t best = std::size_t(std::min_element(ms.begin(), ms.end()) - ms.begin());
  if (!std::isfinite(ms[best])) return 0;  // none ran: the real run reports the refusal
  nlohmann::json times = nlohmann::json::array();
  for (double t : ms) times.push_back(std::isfinite(t) ? nlohmann::json(t) : nlohmann::json(nullptr));
  tuned_[sk] = {
      {"gemm", what},          {"shape", shape(c)}, {"candidates", candidates.size()},           {"chosen", best}, {"ms_first", times[0]},
      {"ms_chosen", ms[best]}, {"ms", times},       {"algo", gemm::algo_json(candidates[best])}, {"plans", 1}};
  return best;
}

nlohmann::json GemmCache::tuning() const {
  if (algos_ <= 1) return nullptr;
  nlohmann::json shapes = nlohmann::json::array();
  for (const auto& [key, rec] : tuned_) shapes.push_back(rec);
  return {{"algos", algos_}, {"shapes", std::move(shapes)}, {"untuned_accumulating", untuned_accumulating_}};
}

void GemmCache::run(const GemmCall& c, const void* A, const void* B, void* D, const char* what) {
  if ((c.gelu_aux || c.dgelu_input) && c.batch != 1) throw std::logic_error("GemmCache: a GELU aux is laid out for one matrix (batch 1)");
  const Key key = key_of(c);
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    gemm::GemmSpec s;
    s.trans_a = c.ta, s.trans_b = c.tb;
    s.m = c.m, s.n = c.n, s.k = c.k, s.lda = c.lda, s.ldb = c.ldb, s.ldd = c.ldd, s.batch = c.batch;
    s.a = c.a, s.b = c.b, s.d = c.d;
    s.c = gemm::is_fp8(c.d) ? gemm::DType::bf16 : c.d;  // an FP8 D takes a BF16 C (unread: beta is 0 there)
    if (c.c && (c.beta == 0.0f || gemm::is_fp8(c.d) || c.gelu_aux || c.dgelu_input))
      throw std::logic_error("GemmCache: a C of its own is added (beta != 0) to a BF16 / FP32 D without a GELU epilogue");
    s.alpha = c.alpha, s.beta = c.beta;
    s.fast_accum = c.fast_accum;
    s.a_scale = c.a_mode, s.b_scale = c.b_mode;
    s.epilogue = epilogue_of(c);
    if (c.gelu_aux || c.dgelu_input) s.aux = c.aux;
    if (c.dgelu_input && c.bias) throw std::logic_error("GemmCache: a GELU gradient epilogue writes the bias gradient; it adds no bias");
    s.workspace_bytes = kWorkspace;
    gemm::LtPointers p;
    p.bias = c.bias;
    p.a_scale = c.a_scale;
    p.b_scale = c.b_scale;
    p.d_scale = c.d_scale;
    p.amax_d = c.amax_d;
    p.aux = c.gelu_aux ? c.gelu_aux : const_cast<void*>(c.dgelu_input);  // the descriptor's one aux pointer
    p.aux_ld = c.aux_ld;
    if (c.dbias) p.bias = c.dbias;
    // The batch stride is ldd * n, as lt_matmul lays it out; columns padded beyond m count too.
    const std::size_t d_bytes = std::size_t((s.batch - 1) * s.ldd_eff() * s.n + (s.n - 1) * s.ldd_eff() + s.m) * gemm::size_of(s.d);
    const std::size_t aux_bytes = c.gelu_aux ? std::size_t((s.n - 1) * c.aux_ld + s.m) * gemm::size_of(gemm::aux_type(s)) : 0;
    Plan plan{std::make_unique<gemm::LtMatmul>(s, p), {}, d_bytes, aux_bytes};
    if (plan.mm->setup_status())
      throw GemmRefused(core::Outcome::heuristic_unsupported,
                        fmt::format("{} GEMM ({}): cuBLASLt refused {}: {}", what, shape(c), plan.mm->setup_step(),
                                    gemm::status_name(plan.mm->setup_status())));
    auto h = plan.mm->heuristic(handle_, algos_, false);
    if (auto v = gemm::heuristic_verdict(h.status, int(h.results.size()))) {
      const auto why = gemm::explain_refusal([&] { plan.mm->heuristic(handle_, 1, false); }, 0);
      throw GemmRefused(
          *v, with_reason(fmt::format("{} GEMM ({}): no cuBLASLt algorithm ({})", what, shape(c), gemm::status_name(h.status)), why));
    }
    plan.algo = h.results[choose(c, plan, h.results, A, B, D, what)].algo;
    it = plans_.emplace(key, std::move(plan)).first;
  }
  const int st = it->second.mm->run_on(handle_, it->second.algo, stream_, A, B, D, workspace_.get(), c.c);
  if (st) {
    const auto why =
        gemm::explain_refusal([&] { it->second.mm->run_on(handle_, it->second.algo, stream_, A, B, D, workspace_.get(), c.c); }, 0);
    throw GemmRefused(core::Outcome::run_rejected,
                      with_reason(fmt::format("{} GEMM ({}): cublasLtMatmul refused: {}", what, shape(c), gemm::status_name(st)), why));
  }
  core::mark_initialized(D, it->second.d_bytes, stream_);  // initcheck does not see cuBLASLt's stores
  if (c.gelu_aux) core::mark_initialized(c.gelu_aux, it->second.aux_bytes, stream_);
  if (c.dbias) core::mark_initialized(c.dbias, std::size_t(c.m) * gemm::size_of(gemm::DType::bf16), stream_);
}

}  // namespace fp8scope::gpu_model
