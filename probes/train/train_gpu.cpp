// probe_train's and probe_recipe's GPU backend: the CUDA model on the same data and schedule
// as the CPU one, in BF16 or FP8.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/core/runner.hpp"
#include "fp8scope/core/stats.hpp"
#include "fp8scope/gpu_model/gpt_gpu.hpp"
#include "fp8scope/model/data.hpp"
#include "fp8scope/model/schedule.hpp"
#include "train/tap_summary.hpp"
#include "train/train_point.hpp"
#include "train/train_step.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>

namespace fp8scope::train {
using core::json;

namespace {
// Dense BF16 tensor-core peak (no sparsity), for MFU.
double peak_bf16_flops(const json& env) {
  const std::string name = env.contains("gpu") && env["gpu"].is_object() ? env["gpu"].value("name", std::string()) : "";
  if (name.find("H200") != std::string::npos || name.find("H100") != std::string::npos) return 989.4e12;
  return 0.0;
}

struct Trainer {
  Trainer(gpu_model::GpuGpt& g, model::TokenSource& d, const TrainPoint& pt) : gpt(g), data(d), p(pt) {}
  gpu_model::GpuGpt& gpt;
  model::TokenSource& data;
  const TrainPoint& p;
  model::LrSchedule lr{p.lr, p.min_lr, p.warmup, p.steps};
  gpu_model::AdamWSettings adam = adamw_for(p);
  std::vector<int> in, tg;

  StepRow step(int i) {
    data.next_batch(p.batch, p.seq_len, in, tg);
    return timed_step(gpt, in.data(), tg.data(), p, lr, adam, i);
  }
};
// Taps every step against taps off (alternating steps), and at the run's own interval against
// off (alternating blocks of `interval` steps, each block holding one recorded step), so that
// clocks and data drift alike on both sides.
json measure_taps_overhead(gpu_model::GpuGpt& gpt, Trainer& tr, int interval, int k) {
  std::vector<double> on, off;
  for (int i = 0; i < 2 * k; ++i) {
    gpt.set_tap_interval(i % 2 == 0 ? 1 : 0);
    (i % 2 == 0 ? on : off).push_back(tr.step(tr.p.steps - 1).ms);
  }
  const auto son = core::compute_stats(on), soff = core::compute_stats(off);
  json o = {{"steps_each", k},
            {"ms_taps_every_step", son.median},
            {"ms_taps_off", soff.median},
            {"overhead_every_step", son.median / soff.median - 1.0},
            {"rel_iqr_on", son.rel_iqr},
            {"rel_iqr_off", soff.rel_iqr}};
  if (interval > 1) {
    std::vector<double> bon, boff;
    const int blocks = std::max(2, k / interval);
    for (int b = 0; b < 2 * blocks; ++b) {
      gpt.set_tap_interval(b % 2 == 0 ? interval : 0);
      double ms = 0;
      for (int i = 0; i < interval; ++i) ms += tr.step(tr.p.steps - 1).ms;
      (b % 2 == 0 ? bon : boff).push_back(ms / interval);
    }
    const auto a = core::compute_stats(bon), b = core::compute_stats(boff);
    o["interval"] = interval;
    o["blocks_each"] = blocks;
    o["ms_taps_at_interval"] = a.median;
    o["ms_taps_off_blocks"] = b.median;
    o["overhead_at_interval"] = a.median / b.median - 1.0;
  }
  gpt.set_tap_interval(interval);
  return o;
}
}  // namespace

bool train_gpu_run(const TrainPoint& p, const model::Fp8ModelConfig* fp8, const json& settings, int device, bool stop_at_nonfinite,
                   GpuRun& out, core::Record& r) {
  if (p.ranks > 1) return train_gpu_run_dp(p, fp8, settings, device, stop_at_nonfinite, out, r);
  cudaStream_t stream = nullptr;
  try {
    FP8S_CUDA(cudaSetDevice(device));
    std::size_t free0 = 0, total = 0;
    FP8S_CUDA(cudaMemGetInfo(&free0, &total));
    const double need = gpu_bytes_needed(p, fp8);
    if (need > 0.95 * double(free0)) {
      r.outcome = core::Outcome::oom;
      r.reason = fmt::format("needs about {:.1f} GiB, {:.1f} GiB free", need / (1 << 30), double(free0) / (1 << 30));
      return false;
    }
    FP8S_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    core::DeviceBytes::reset_peak();
    const std::size_t held_before = core::DeviceBytes::now.load();
    auto device_in_use = [&] {
      std::size_t f = 0, t = 0;
      FP8S_CUDA(cudaMemGetInfo(&f, &t));
      return double(t - f) / (1 << 20);
    };
    auto data = data_for(p, settings.value("token_dtype", std::string("auto")));
    r.data["data"] = data->describe();
    {
      gpu_model::GpuGpt gpt(p.model, p.batch, p.seq_len, stream, fp8, p.gpu);
      gpt.set_params(model::init_params(p.model, std::uint64_t(p.seed)));
      std::size_t free1 = 0;
      FP8S_CUDA(cudaMemGetInfo(&free1, &total));
      out.device_mib = double(free0 - free1) / (1 << 20);
      Trainer tr{gpt, *data, p};
      for (int step = 0; step < p.steps; ++step) {
        out.rows.push_back(tr.step(step));
        // Every buffer exists after the first step; later steps allocate nothing new.
        if (step < 2) out.peak_device_mib = std::max(out.peak_device_mib, device_in_use());
        if (stop_at_nonfinite && !std::isfinite(out.rows.back().loss)) break;
      }
      out.peak_alloc_mib = double(core::DeviceBytes::peak.load() - held_before) / (1 << 20);
      out.graphs = graph_use(gpt);  // before the profiled step (uncaptured by design)
      out.gemm_tuning = gpt.gemm_tuning();
      out.gelu_epilogue = gpt.gelu_epilogue();
      out.weight_cast = gpt.weight_cast();
      out.lm_head_wgrad_columns = gpt.lm_head_wgrad_columns();
      out.residual_add = gpt.residual_add();
      if (gpt.fp8()) out.taps = gpt.fp8()->taps();
      const bool finished = std::isfinite(out.rows.back().loss);
      if (finished && settings.value("profile", true)) {
        // One more step with events between the phases: where the time goes, per layer type
        // (taps off: a step without the copies, as most steps are).
        gpt.set_profiling(true);
        gpt.set_tap_interval(0);
        tr.step(p.steps - 1);
        for (auto& [phase, ms] : gpt.last_profile()) out.time_split[phase] = ms;
        gpt.set_profiling(false);
      }
      const int k = settings.value("taps_overhead_steps", 0);
      if (fp8 && finished && k > 0) out.taps_overhead = measure_taps_overhead(gpt, tr, fp8->tap_interval, k);
    }
    FP8S_CUDA(cudaStreamDestroy(stream));
    return true;
  } catch (const core::CudaError& e) {
    r.outcome = e.is_oom() ? core::Outcome::oom : core::Outcome::crashed;
    r.reason = e.what();
    if (!e.is_oom()) core::request_worker_restart();
  } catch (const gpu_model::GemmRefused& e) {
    // An availability finding, not a crash: e.g. the FP8 LM head's dgrad for a vocabulary
    // that is not a multiple of 16.
    r.outcome = e.outcome;
    r.reason = e.what();
    r.data["failed_at_step"] = int(out.rows.size());
  } catch (const std::runtime_error& e) {
    r.outcome = core::Outcome::crashed;
    r.reason = e.what();
    core::request_worker_restart();
  }
  if (stream) cudaStreamDestroy(stream);
  return false;
}

void train_on_gpu(const TrainPoint& p, const json& settings, const json& env, int device, core::Record& r) {
  GpuRun run;
  if (!train_gpu_run(p, p.fp8 ? &*p.fp8 : nullptr, settings, device, false, run, r)) return;
  fill_train_record(r, p, run.rows, settings.value("timing_warmup", 3), peak_bf16_flops(env));
  r.data["metrics"]["device_mib"] = run.device_mib;
  if (run.peak_alloc_mib > 0) r.data["metrics"]["peak_alloc_mib"] = run.peak_alloc_mib;
  if (run.peak_device_mib > 0) r.data["metrics"]["peak_device_mib"] = run.peak_device_mib;
  if (!run.time_split.empty()) r.data["time_split_ms"] = run.time_split;
  if (!run.graphs.is_null()) r.data["cuda_graph"] = run.graphs;
  if (!run.gemm_tuning.is_null()) r.data["gemm_tuning"] = run.gemm_tuning;
  if (!run.gelu_epilogue.is_null()) r.data["gelu_epilogue"] = run.gelu_epilogue;
  if (!run.weight_cast.empty()) r.data["weight_cast"] = run.weight_cast;
  if (run.lm_head_wgrad_columns > 0) r.data["lm_head_wgrad_columns"] = run.lm_head_wgrad_columns;
  if (!run.residual_add.is_null()) r.data["residual_add"] = run.residual_add;
  if (p.fp8) {
    r.data["taps"] = summarize_taps(run.taps, settings.value("tap_points", 50));
    record_nan_onset(r, run.taps, settings.value("onset_history", 5));
    if (!run.taps_overhead.is_null()) r.data["taps_overhead"] = run.taps_overhead;
  }
  // Data-parallel FP8: every rank's own NaN onset and its scales' agreement with rank 0's
  // (equal when the amaxes are reduced).
  for (std::size_t k = 0; k < run.rank_taps.size() && r.data.contains("data_parallel"); ++k) {
    core::Record rk = core::make_record(r.key, r.params, core::Outcome::ok);
    json& pr = r.data["data_parallel"]["per_rank"][k];
    if (record_nan_onset(rk, run.rank_taps[k], settings.value("onset_history", 5))) pr["nan_onset"] = rk.data["nan_onset"];
    long long differ = 0, total = 0;
    for (std::size_t i = 0; i < run.rank_taps[k].size() && i < run.rank_taps[0].size(); ++i)
      if (run.rank_taps[k][i].scale != 0.0f) {
        ++total;
        differ += run.rank_taps[k][i].scale != run.rank_taps[0][i].scale;
      }
    pr["scales_differing_from_rank0"] = differ;
    pr["scales_compared"] = total;
  }
}

}  // namespace fp8scope::train
