#include "fp8scope/gemm/gemm_runner.hpp"

#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/core/runner.hpp"
#include "fp8scope/fp8/format.hpp"
#include "fp8scope/gemm/kernels.cuh"
#include "fp8scope/gemm/scaled_operand.hpp"
#include "fp8scope/gemm/verdict.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <optional>
#include <random>

namespace fp8scope::gemm {
using core::json;
using core::Outcome;

namespace {

float fp8_max(DType t) { return t == DType::e4m3 ? 448.0f : 57344.0f; }

// Stored values are N(0,1) * q; FP8 tensors use q = max/8 so that the largest of millions of
// samples (about 5.5 sigma) stays below the format's max, as a well-scaled tensor does.
float quant_scale(DType t) { return is_fp8(t) ? fp8_max(t) / 8.0f : 1.0f; }

std::vector<std::int64_t> sample_columns(std::int64_t n, std::int64_t want, std::uint64_t seed) {
  std::vector<std::int64_t> cols;
  if (n <= want) {
    cols.resize(std::size_t(n));
    std::iota(cols.begin(), cols.end(), 0);
    return cols;
  }
  // The first and last columns (tile edges show errors first), the rest spread at random.
  std::mt19937_64 rng(seed);
  std::vector<std::int64_t> all{0, n - 1};
  std::uniform_int_distribution<std::int64_t> pick(1, n - 2);
  while (std::int64_t(all.size()) < want) all.push_back(pick(rng));
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  return all;
}

double gib(double bytes) { return bytes / double(1ull << 30); }

// Median and 90th percentile of sqrt(err2 / ref2) over the lines with a non-zero reference.
std::pair<double, double> line_error_quantiles(const double* err2, const double* ref2, std::int64_t n) {
  std::vector<double> e;
  for (std::int64_t i = 0; i < n; ++i)
    if (ref2[i] > 0) e.push_back(std::sqrt(err2[i] / ref2[i]));
  if (e.empty()) return {0.0, 0.0};
  std::sort(e.begin(), e.end());
  auto at = [&](double q) { return e[std::size_t(q * double(e.size() - 1) + 0.5)]; };
  return {at(0.5), at(0.9)};
}

}  // namespace

GemmRunner::GemmRunner(int device, GemmRunOptions opt) : opt_(std::move(opt)) {
  FP8S_CUDA(cudaSetDevice(device));
  FP8S_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  handle_ = std::make_unique<LtHandle>();
  cudaDeviceProp p{};
  FP8S_CUDA(cudaGetDeviceProperties(&p, device));
  char pci[32] = {};
  FP8S_CUDA(cudaDeviceGetPCIBusId(pci, sizeof pci, device));
  timer_ = std::make_unique<core::GpuTimer>(stream_, pci, std::size_t(p.l2CacheSize));
  start_log_capture(opt_.lt_log_level);
}

GemmRunner::~GemmRunner() {
  timer_.reset();
  handle_.reset();
  if (stream_) cudaStreamDestroy(stream_);
}

core::Record GemmRunner::run(const GemmSpec& spec, const std::string& key, const json& params) {
  core::Record r = core::make_record(key, params, Outcome::ok);
  r.data["gemm"] = to_json(spec);
  if (auto e = structural_error(spec); !e.empty()) {
    r.outcome = Outcome::skipped;
    r.reason = "not a valid GEMM: " + e;
    return r;
  }
  try {
    core::NvtxRange range("gemm point");
    return measure(spec, std::move(r));
  } catch (const core::CudaError& e) {
    r.outcome = e.is_oom() ? Outcome::oom : Outcome::crashed;
    r.reason = e.what();
    if (!e.is_oom()) core::request_worker_restart();  // the context may be unusable now
    take_log_lines();
    return r;
  }
}

core::Record GemmRunner::measure(const GemmSpec& spec, core::Record r) {
  // Refuse up front what cannot fit, instead of provoking the allocator.
  std::size_t free_b = 0, total_b = 0;
  FP8S_CUDA(cudaMemGetInfo(&free_b, &total_b));
  const double need = spec.device_bytes(opt_.ref_columns);
  if (need > 0.95 * double(free_b)) {
    r.outcome = Outcome::oom;
    r.reason = fmt::format("needs {:.1f} GiB of device memory, {:.1f} GiB free", gib(need), gib(double(free_b)));
    return r;
  }

  // --- inputs -------------------------------------------------------------------------------
  const std::int64_t a_count = spec.batch * spec.lda_eff() * spec.a_cols();
  const std::int64_t b_count = spec.batch * spec.ldb_eff() * spec.b_cols();
  const std::int64_t d_count = spec.batch * spec.ldd_eff() * spec.n;
  core::DeviceBuffer a_buf(std::size_t(a_count) * size_of(spec.a) + std::size_t(spec.a_offset));
  core::DeviceBuffer b_buf(std::size_t(b_count) * size_of(spec.b) + std::size_t(spec.b_offset));
  core::DeviceBuffer d_buf(std::size_t(d_count) * size_of(spec.d) + std::size_t(spec.d_offset));
  core::DeviceBuffer c_buf(spec.c == spec.d ? 0 : std::size_t(spec.batch * spec.m * spec.n) * size_of(spec.c));
  core::DeviceBuffer scales(256 + std::size_t(spec.scale_offset));
  const bool with_bias = adds_bias(spec.epilogue);
  const DType et = epilogue_type(spec);
  core::DeviceBuffer bias_buf(with_bias ? std::size_t(spec.m) * size_of(et) : 0);
  const std::int64_t aux_ld = (spec.m + 7) / 8 * 8;
  core::DeviceBuffer aux_buf(writes_aux(spec.epilogue) ? std::size_t(aux_ld * spec.n * spec.batch) * size_of(aux_type(spec)) : 0);
  core::DeviceBuffer workspace(spec.workspace_bytes);
  core::DeviceBuffer results(sizeof(CompareResult) + 16);

  void* a = a_buf.bytes_at(std::size_t(spec.a_offset));
  void* b = b_buf.bytes_at(std::size_t(spec.b_offset));
  void* d = d_buf.bytes_at(std::size_t(spec.d_offset));
  float* scale_base = reinterpret_cast<float*>(scales.bytes_at(std::size_t(spec.scale_offset)));
  const float qa = quant_scale(spec.a), qb = quant_scale(spec.b);
  // Scale modes and FP32-sourced inputs: each operand quantised block by block (the reference
  // applies the same block scales); otherwise codes drawn directly at one scale.
  std::optional<ScaledOperand> sa, sb;
  if (spec.from_sources()) {
    sa.emplace(OperandRequest{a, spec.a, spec.a_geometry(), OperandIndex{spec.trans_a, spec.lda_eff()}, a_count, spec.inputs, qa,
                              opt_.seed * 3 + 1, spec.scale_offset},
               stream_);
    sb.emplace(OperandRequest{b, spec.b, spec.b_geometry(), OperandIndex{!spec.trans_b, spec.ldb_eff()}, b_count, spec.inputs, qb,
                              opt_.seed * 3 + 2, spec.scale_offset},
               stream_);
  } else {
    fill_normal(a, spec.a, a_count, qa, opt_.seed * 3 + 1, stream_);
    fill_normal(b, spec.b, b_count, qb, opt_.seed * 3 + 2, stream_);
  }
  if (with_bias) fill_normal(bias_buf.get(), et, spec.m, 1.0f, opt_.seed * 3 + 3, stream_);
  FP8S_CUDA(cudaGetLastError());

  // --- reference on sampled columns ------------------------------------------------------------
  const auto cols = sample_columns(spec.n, opt_.ref_columns, opt_.seed);
  const std::int64_t nc = std::int64_t(cols.size());
  core::DeviceBuffer cols_buf(cols.size() * sizeof(std::int64_t));
  core::DeviceBuffer ref_buf(std::size_t(spec.batch * nc * spec.m) * sizeof(float));
  FP8S_CUDA(cudaMemcpyAsync(cols_buf.get(), cols.data(), cols_buf.size(), cudaMemcpyHostToDevice, stream_));
  ReferenceArgs ra{a,
                   b,
                   spec.a,
                   spec.b,
                   spec.trans_a,
                   spec.trans_b,
                   spec.m,
                   spec.k,
                   spec.lda_eff(),
                   spec.ldb_eff(),
                   spec.lda_eff() * spec.a_cols(),
                   spec.ldb_eff() * spec.b_cols(),
                   spec.batch,
                   sa ? 1.0f : 1.0f / qa,
                   sb ? 1.0f : 1.0f / qb,
                   cols_buf.as<std::int64_t>(),
                   nc,
                   spec.epilogue,
                   bias_buf.get(),
                   et,
                   ref_buf.as<float>()};
  if (sa) {
    ra.a_block_dequant = sa->block_dequant();
    ra.b_block_dequant = sb->block_dequant();
    ra.a_geo = spec.a_geometry();
    ra.b_geo = spec.b_geometry();
  }
  reference_gemm(ra, stream_);
  // With FP32 sources, a second reference: the product of the unquantised sources. The GEMM's
  // error against it is what the scale modes cost (or save) in accuracy.
  core::DeviceBuffer ref_src_buf;
  if (sa && sa->source()) {
    ref_src_buf = core::DeviceBuffer(ref_buf.size());
    ReferenceArgs rs = ra;
    rs.a = sa->source(), rs.b = sb->source();
    rs.a_type = rs.b_type = DType::fp32;
    rs.a_dequant = rs.b_dequant = 1.0f;
    rs.a_block_dequant = rs.b_block_dequant = nullptr;
    rs.out = ref_src_buf.as<float>();
    reference_gemm(rs, stream_);
  }
  auto* res = results.as<CompareResult>();
  FP8S_CUDA(cudaMemsetAsync(res, 0, sizeof(CompareResult), stream_));
  abs_max(ref_buf.as<float>(), spec.batch * nc * spec.m, &res->max_abs_d, stream_);
  CompareResult host{};
  FP8S_CUDA(cudaMemcpyAsync(&host, res, sizeof host, cudaMemcpyDeviceToHost, stream_));
  FP8S_CUDA(cudaStreamSynchronize(stream_));
  const float ref_amax = host.max_abs_d;

  // --- scales: dequantisation for FP8 inputs, quantisation for an FP8 output ----------------
  const float d_scale = is_fp8(spec.d) && ref_amax > 0 ? fp8_max(spec.d) / (2.0f * ref_amax) : 1.0f;
  const float host_scales[16] = {opt_.planted_scale_error / qa, 0, 0, 0, 1.0f / qb, 0, 0, 0, d_scale};
  FP8S_CUDA(cudaMemcpyAsync(scale_base, host_scales, sizeof host_scales, cudaMemcpyHostToDevice, stream_));

  LtPointers ptrs;
  ptrs.a = a;
  ptrs.b = b;
  ptrs.d = d;
  ptrs.c = spec.c == spec.d ? d : c_buf.get();
  // Each scale/amax pointer sits on its own 16-byte boundary (plus the probed offset):
  // cuBLASLt's Hopper FP8 kernels refuse scale pointers that are only 4-byte aligned.
  ptrs.a_scale = sa ? sa->lt_scales() : scale_base;
  ptrs.b_scale = sb ? sb->lt_scales() : scale_base + 4;
  ptrs.d_scale = scale_base + 8;
  ptrs.amax_d = scale_base + 12;
  ptrs.bias = bias_buf.get();
  ptrs.aux = aux_buf.get();
  ptrs.aux_ld = aux_ld;
  ptrs.workspace = workspace.get();

  const double tol = tolerance(spec) * opt_.tolerance_scale;
  r.data["accuracy"] = {{"tolerance", tol}, {"ref_columns", nc}, {"ref_amax", ref_amax}};
  if (sa && sa->source()) {
    // Fraction of each operand's non-zero source values that quantised to zero.
    unsigned long long lost[2] = {0, 0};
    FP8S_CUDA(cudaMemcpyAsync(&lost[0], sa->underflow(), sizeof lost[0], cudaMemcpyDeviceToHost, stream_));
    FP8S_CUDA(cudaMemcpyAsync(&lost[1], sb->underflow(), sizeof lost[1], cudaMemcpyDeviceToHost, stream_));
    FP8S_CUDA(cudaStreamSynchronize(stream_));
    r.data["accuracy"]["a_underflow"] = double(lost[0]) / double(spec.m * spec.k);
    r.data["accuracy"]["b_underflow"] = double(lost[1]) / double(spec.n * spec.k);
  }
  json cublas = json::object();
  auto attach_log = [&] {
    auto lines = take_log_lines();
    if (!lines.empty()) cublas["log"] = lines;
    r.data["cublas"] = cublas;
  };

  // --- cuBLASLt's verdict ----------------------------------------------------------------------
  LtMatmul mm(spec, ptrs);
  if (mm.setup_status()) {
    r.outcome = Outcome::heuristic_unsupported;
    r.reason = fmt::format("{} refused: {}", mm.setup_step(), status_name(mm.setup_status()));
    cublas["setup_status"] = mm.setup_status();
    cublas["setup_step"] = mm.setup_step();
    attach_log();
    return r;
  }
  const auto h = mm.heuristic(*handle_, opt_.algorithms, opt_.alignment_hints);
  cublas["heuristic_status"] = h.status;
  cublas["heuristic_status_name"] = status_name(h.status);
  cublas["algorithms_returned"] = h.results.size();
  if (auto v = heuristic_verdict(h.status, int(h.results.size()))) {
    r.outcome = *v;
    r.reason = *v == Outcome::no_algorithm ? "cublasLtMatmulAlgoGetHeuristic returned 0 algorithms"
                                           : "cublasLtMatmulAlgoGetHeuristic: " + status_name(h.status);
    if (opt_.lt_log_level > 0) {
      cublas["why"] = explain_refusal([&] { mm.heuristic(*handle_, opt_.algorithms, opt_.alignment_hints); }, opt_.lt_log_level);
      if (!cublas["why"].empty()) r.reason += "; " + cublas["why"][0].get<std::string>();
    }
    attach_log();
    return r;
  }

  // --- run, check and time each algorithm ---------------------------------------------------------
  const std::size_t tries = opt_.autotune ? h.results.size() : 1;
  json algos = json::array();
  int best = -1;
  double best_ms = 0;
  std::optional<core::Timing> first_timing, best_timing;
  const CompareArgs ca{d,
                       spec.d,
                       spec.m,
                       spec.n,
                       spec.ldd_eff(),
                       spec.ldd_eff() * spec.n,
                       spec.batch,
                       1.0f / d_scale,
                       ref_buf.as<float>(),
                       cols_buf.as<std::int64_t>(),
                       nc};
  for (std::size_t i = 0; i < tries; ++i) {
    json aj = algo_json(h.results[i]);
    aj["index"] = i;
    FP8S_CUDA(cudaMemsetAsync(d_buf.get(), 0xFF, d_buf.size(), stream_));  // NaN in every type
    FP8S_CUDA(cudaMemsetAsync(scale_base + 12, 0, sizeof(float), stream_));
    const int st = mm.run(*handle_, h.results[i].algo, stream_);
    FP8S_CUDA(cudaStreamSynchronize(stream_));
    FP8S_CUDA(cudaGetLastError());
    aj["run_status"] = status_name(st);
    if (auto v = run_verdict(st)) {
      aj["outcome"] = std::string(core::to_string(*v));
      if (i == 0 && opt_.lt_log_level > 0) {
        cublas["why"] = explain_refusal([&] { mm.run(*handle_, h.results[i].algo, stream_); }, opt_.lt_log_level);
        FP8S_CUDA(cudaStreamSynchronize(stream_));
      }
      algos.push_back(aj);
      continue;
    }
    FP8S_CUDA(cudaMemsetAsync(res, 0, sizeof(CompareResult), stream_));
    compare(ca, res, stream_);
    float amax_d = 0;
    FP8S_CUDA(cudaMemcpyAsync(&host, res, sizeof host, cudaMemcpyDeviceToHost, stream_));
    FP8S_CUDA(cudaMemcpyAsync(&amax_d, scale_base + 12, sizeof amax_d, cudaMemcpyDeviceToHost, stream_));
    FP8S_CUDA(cudaStreamSynchronize(stream_));
    FP8S_CUDA(cudaGetLastError());
    const double rel = host.ref_sq > 0 ? std::sqrt(host.err_sq / host.ref_sq) : 0.0;
    Outcome o = accuracy_verdict(rel, tol, std::int64_t(host.nonfinite));
    aj["rel_error"] = rel;
    if (ref_src_buf.get()) {
      CompareArgs cs = ca;
      cs.ref = ref_src_buf.as<float>();
      CompareResult h2{};
      FP8S_CUDA(cudaMemsetAsync(res, 0, sizeof(CompareResult), stream_));
      compare(cs, res, stream_);
      FP8S_CUDA(cudaMemcpyAsync(&h2, res, sizeof h2, cudaMemcpyDeviceToHost, stream_));
      FP8S_CUDA(cudaStreamSynchronize(stream_));
      aj["quant_rel_error"] = h2.ref_sq > 0 ? std::sqrt(h2.err_sq / h2.ref_sq) : 0.0;
      if (i == 0) {
        // Rows of D follow A's rows, columns B's: their own relative errors show the rows a
        // coarse scale flushed, which the whole-matrix norm (dominated by the largest) hides.
        const std::int64_t lines = spec.m + nc;
        core::DeviceBuffer sums(std::size_t(2 * lines) * sizeof(double));
        FP8S_CUDA(cudaMemsetAsync(sums.get(), 0, sums.size(), stream_));
        double* base = sums.as<double>();
        line_errors(cs, LineErrors{base, base + spec.m, base + 2 * spec.m, base + 2 * spec.m + nc}, stream_);
        std::vector<double> h(std::size_t(2 * lines));
        FP8S_CUDA(cudaMemcpyAsync(h.data(), base, sums.size(), cudaMemcpyDeviceToHost, stream_));
        FP8S_CUDA(cudaStreamSynchronize(stream_));
        const auto rows = line_error_quantiles(h.data(), h.data() + spec.m, spec.m);
        const auto cols = line_error_quantiles(h.data() + 2 * spec.m, h.data() + 2 * spec.m + nc, nc);
        aj["row_error_p50"] = rows.first, aj["row_error_p90"] = rows.second;
        aj["col_error_p50"] = cols.first, aj["col_error_p90"] = cols.second;
      }
    }
    aj["nonfinite_outputs"] = host.nonfinite;
    std::string why;
    if (is_fp8(spec.d)) {
      // cuBLASLt's amax of D is taken before quantisation, so it must cover every value the
      // reference saw (up to the output's rounding).
      const double amax_unscaled = double(amax_d);
      aj["amax_d"] = amax_unscaled;
      if (o == Outcome::ok && !(amax_unscaled >= ref_amax * (1.0 - 2 * tol) && std::isfinite(amax_unscaled))) {
        o = Outcome::incorrect;
        why = fmt::format("amax_D {:.4g} below the reference's {:.4g}", amax_unscaled, ref_amax);
      }
    }
    if (o == Outcome::incorrect && why.empty()) why = fmt::format("relative error {:.3g} above tolerance {:.3g}", rel, tol);
    if (o == Outcome::nonfinite) why = fmt::format("{} non-finite outputs", host.nonfinite);
    aj["outcome"] = std::string(core::to_string(o));
    if (!why.empty()) aj["reason"] = why;
    if (o == Outcome::ok) {
      const auto& algo = h.results[i].algo;
      core::Timing t = timer_->time([&] { mm.run(*handle_, algo, stream_); }, opt_.timing);
      FP8S_CUDA(cudaGetLastError());
      aj["timing"] = core::to_json(t);
      aj["tflops"] = spec.flops() / (t.stats.median * 1e-3) / 1e12;
      if (i == 0) first_timing = t;
      if (best < 0 || t.stats.median < best_ms) {
        best = int(i);
        best_ms = t.stats.median;
        best_timing = t;
      }
    }
    algos.push_back(aj);
  }

  // The outcome is what a framework gets: the heuristic's first algorithm.
  const json& first = algos[0];
  r.outcome = *core::parse_outcome(first["outcome"].get<std::string>());
  if (r.outcome == Outcome::run_rejected) {
    std::size_t refused = 0;
    for (auto& aj : algos) refused += aj["outcome"] == "run_rejected";
    r.reason = fmt::format("cublasLtMatmul: {} for the heuristic's first algorithm ({} of {} tried refused)",
                           first["run_status"].get<std::string>(), refused, algos.size());
    if (cublas.contains("why") && !cublas["why"].empty()) r.reason += "; " + cublas["why"][0].get<std::string>();
  } else if (first.contains("reason")) {
    r.reason = first["reason"];
  }
  cublas["run_status"] = first["run_status"];
  r.data["algorithms"] = algos;
  if (first.contains("rel_error")) {
    r.data["accuracy"]["rel_error"] = first["rel_error"];
    r.data["accuracy"]["nonfinite_outputs"] = first["nonfinite_outputs"];
    for (const char* k : {"quant_rel_error", "row_error_p50", "row_error_p90", "col_error_p50", "col_error_p90"})
      if (first.contains(k)) r.data["accuracy"][k] = first[k];
    if (first.contains("amax_d")) r.data["accuracy"]["amax_d"] = first["amax_d"];
  }
  if (first_timing) {
    json metrics;
    metrics["ms"] = first_timing->stats.median;
    metrics["tflops"] = spec.flops() / (first_timing->stats.median * 1e-3) / 1e12;
    metrics["gbps"] = spec.min_bytes() / (first_timing->stats.median * 1e-3) / 1e9;
    r.data["timing"] = core::to_json(*first_timing);
    if (best_timing) {
      metrics["best_ms"] = best_timing->stats.median;
      metrics["best_tflops"] = spec.flops() / (best_timing->stats.median * 1e-3) / 1e12;
      metrics["best_algorithm"] = best;
      metrics["autotune_speedup"] = first_timing->stats.median / best_timing->stats.median;
      r.data["timing_best"] = core::to_json(*best_timing);
    }
    r.data["metrics"] = metrics;
    r.data["headline"] = fmt::format("{:.1f} TFLOP/s, autotuned {:.1f}, err {:.2g}", metrics["tflops"].get<double>(),
                                     metrics.value("best_tflops", 0.0), first["rel_error"].get<double>());
    if (first.contains("quant_rel_error"))
      r.data["headline"] = r.data["headline"].get<std::string>() + fmt::format(", vs FP32 {:.2g}", first["quant_rel_error"].get<double>());
  }
  attach_log();
  return r;
}

}  // namespace fp8scope::gemm
