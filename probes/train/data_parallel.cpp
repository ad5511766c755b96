// Data-parallel training on several GPUs of one host: one thread and one NCCL rank per GPU.
// Every rank starts from the same initialisation; the host draws the global batch of
// ranks x B sequences each step and rank r trains rows [r B, (r+1) B), so that the run is the
// single-GPU run of batch ranks x B up to the order of the reductions. Gradients are averaged
// across ranks (ncclAvg) before clipping and AdamW, so every rank takes the same step; FP8
// amaxes are max-reduced before the recipe update when reduce_amax is on, so every rank casts
// with the same scales; each rank keeps its own taps (and its own NaN onset).
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/core/nccl.hpp"
#include "fp8scope/core/runner.hpp"
#include "fp8scope/gpu_model/gpt_gpu.hpp"
#include "fp8scope/model/data.hpp"
#include "fp8scope/model/schedule.hpp"
#include "train/train_point.hpp"
#include "train/train_step.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <numeric>
#include <thread>

namespace fp8scope::train {
using core::json;
using core::Nccl;

namespace {
struct RankResult {
  std::vector<StepRow> rows;
  std::vector<fp8::Tap> taps;
  core::Outcome outcome = core::Outcome::ok;
  std::string reason;
  double device_mib = 0;
  json graphs, gemm_tuning, gelu_epilogue;
  std::string weight_cast;
  std::int64_t lm_head_wgrad_columns = 0;
  json residual_add;
};

void train_rank(const Nccl& nccl, Nccl::Comm comm, int rank, int device, const TrainPoint& p, const model::Fp8ModelConfig* fp8,
                const std::vector<std::vector<int>>& inputs, const std::vector<std::vector<int>>& targets, bool stop, RankResult& out) {
  cudaStream_t stream = nullptr;
  try {
    FP8S_CUDA(cudaSetDevice(device));
    FP8S_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    std::size_t free0 = 0, free1 = 0, total = 0;
    FP8S_CUDA(cudaMemGetInfo(&free0, &total));
    {
      gpu_model::GpuGpt gpt(p.model, p.batch, p.seq_len, stream, fp8, p.gpu);
      gpt.set_params(model::init_params(p.model, std::uint64_t(p.seed)));
      FP8S_CUDA(cudaMemGetInfo(&free1, &total));
      out.device_mib = double(free0 - free1) / (1 << 20);
      gpt.set_grad_reducer(
          [&](float* g, std::int64_t n, cudaStream_t s) { nccl.all_reduce(g, g, std::size_t(n), Nccl::kFloat32, Nccl::kAvg, comm, s); });
      if (fp8 && fp8->reduce_amax)
        gpt.set_amax_reducer([&](float* amax, unsigned long long* nonfinite, int n, cudaStream_t s) {
          nccl.all_reduce(amax, amax, std::size_t(n), Nccl::kFloat32, Nccl::kMax, comm, s);
          nccl.all_reduce(nonfinite, nonfinite, std::size_t(n), Nccl::kUint64, Nccl::kSum, comm, s);
        });
      const model::LrSchedule lr{p.lr, p.min_lr, p.warmup, p.steps};
      const gpu_model::AdamWSettings adam = adamw_for(p);
      const std::size_t offset = std::size_t(p.batch) * p.seq_len * std::size_t(rank);
      for (int step = 0; step < p.steps; ++step) {
        out.rows.push_back(
            timed_step(gpt, inputs[std::size_t(step)].data() + offset, targets[std::size_t(step)].data() + offset, p, lr, adam, step));
        // The averaged gradient's norm is the same on every rank: all ranks stop together.
        if (stop && !std::isfinite(out.rows.back().grad_norm)) break;
      }
      if (gpt.fp8()) out.taps = gpt.fp8()->taps();
      out.graphs = graph_use(gpt);
      out.gemm_tuning = gpt.gemm_tuning();  // each rank times its own (its choices may differ)
      out.gelu_epilogue = gpt.gelu_epilogue();
      out.weight_cast = gpt.weight_cast();
      out.lm_head_wgrad_columns = gpt.lm_head_wgrad_columns();
      out.residual_add = gpt.residual_add();
    }
  } catch (const core::CudaError& e) {
    out.outcome = e.is_oom() ? core::Outcome::oom : core::Outcome::crashed;
    out.reason = e.what();
  } catch (const gpu_model::GemmRefused& e) {
    out.outcome = e.outcome;
    out.reason = e.what();
  } catch (const std::exception& e) {
    out.outcome = core::Outcome::crashed;
    out.reason = e.what();
  }
  if (stream) cudaStreamDestroy(stream);
}
}  // namespace

bool train_gpu_run_dp(const TrainPoint& p, const model::Fp8ModelConfig* fp8, const json& settings, int device, bool stop, GpuRun& out,
                      core::Record& r) {
  const int R = p.ranks;
  std::string why;
  const Nccl* nccl = Nccl::get(&why);
  if (!nccl) {
    r.outcome = core::Outcome::skipped;
    r.reason = "data-parallel training needs NCCL: " + why;
    return false;
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device + R > count) {
    cudaGetLastError();
    r.outcome = core::Outcome::skipped;
    r.reason = fmt::format("ranks={} from device {} needs {} GPUs; this machine has {}", R, device, device + R, count);
    return false;
  }
  // NVLink multicast (NVLS) stays off unless the user chose otherwise: it needs fabric
  // resources a shared machine may not grant.
  ::setenv("NCCL_NVLS_ENABLE", "0", 0);
  std::vector<int> devices(static_cast<std::size_t>(R));
  std::iota(devices.begin(), devices.end(), device);
  std::vector<Nccl::Comm> comms(static_cast<std::size_t>(R), nullptr);
  try {
    nccl->comm_init_all(comms.data(), R, devices.data());
  } catch (const std::exception& e) {
    r.outcome = core::Outcome::crashed;
    r.reason = e.what();
    core::request_worker_restart();
    return false;
  }
  // The global batches, drawn once on the host in the single-GPU order.
  auto data = data_for(p, settings.value("token_dtype", std::string("auto")));
  r.data["data"] = data->describe();
  std::vector<std::vector<int>> inputs(static_cast<std::size_t>(p.steps)), targets(static_cast<std::size_t>(p.steps));
  for (int s = 0; s < p.steps; ++s) data->next_batch(R * p.batch, p.seq_len, inputs[std::size_t(s)], targets[std::size_t(s)]);
  std::vector<RankResult> results(static_cast<std::size_t>(R));
  {
    std::vector<std::thread> threads;
    for (int k = 0; k < R; ++k)
      threads.emplace_back(train_rank, std::cref(*nccl), comms[std::size_t(k)], k, devices[std::size_t(k)], std::cref(p), fp8,
                           std::cref(inputs), std::cref(targets), stop, std::ref(results[std::size_t(k)]));
    for (auto& t : threads) t.join();
  }
  for (auto c : comms) nccl->comm_destroy(c);
  for (auto& res : results)
    if (res.outcome != core::Outcome::ok) {
      r.outcome = res.outcome;
      r.reason = res.reason;
      if (res.outcome == core::Outcome::crashed) core::request_worker_restart();
      return false;
    }
  // The global step: the mean of the ranks' losses (each the mean over its shard), the norm
  // of the averaged gradient, the slowest rank's time.
  const std::size_t steps = results[0].rows.size();
  for (std::size_t s = 0; s < steps; ++s) {
    StepRow row = results[0].rows[s];
    double loss = 0, ms = 0;
    for (auto& res : results) loss += res.rows[s].loss, ms = std::max(ms, res.rows[s].ms);
    row.loss = loss / R;
    row.ms = ms;
    out.rows.push_back(row);
  }
  out.taps = results[0].taps;
  for (auto& res : results) out.rank_taps.push_back(std::move(res.taps));
  out.device_mib = results[0].device_mib;
  out.graphs = results[0].graphs;
  out.gemm_tuning = results[0].gemm_tuning;
  out.gelu_epilogue = results[0].gelu_epilogue;
  out.weight_cast = results[0].weight_cast;
  out.lm_head_wgrad_columns = results[0].lm_head_wgrad_columns;
  out.residual_add = results[0].residual_add;
  json ranks = json::array();
  for (int k = 0; k < R; ++k)
    ranks.push_back({{"rank", k},
                     {"device", devices[std::size_t(k)]},
                     {"loss_last", results[std::size_t(k)].rows.back().loss},
                     {"device_mib", results[std::size_t(k)].device_mib}});
  r.data["data_parallel"] = {
      {"ranks", R}, {"nccl_version", nccl->version()}, {"reduce_amax", fp8 ? json(fp8->reduce_amax) : json()}, {"per_rank", ranks}};
  return true;
}

}  // namespace fp8scope::train
