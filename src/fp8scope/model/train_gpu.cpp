// probe_train's GPU backend: the CUDA model on the same data and schedule as the CPU one.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/core/runner.hpp"
#include "fp8scope/model/data.hpp"
#include "fp8scope/model/gpt_gpu.hpp"
#include "fp8scope/model/schedule.hpp"
#include "fp8scope/model/train_point.hpp"

#include <fmt/format.h>

#include <chrono>
#include <memory>

namespace fp8scope::model {
using core::json;

namespace {
// Dense BF16 tensor-core peak (no sparsity), for MFU.
double peak_bf16_flops(const json& env) {
  const std::string name = env.contains("gpu") && env["gpu"].is_object() ? env["gpu"].value("name", std::string()) : "";
  if (name.find("H200") != std::string::npos || name.find("H100") != std::string::npos) return 989.4e12;
  return 0.0;
}
}  // namespace

void train_on_gpu(const TrainPoint& p, const json& settings, const json& env, int device, core::Record& r) {
  try {
    FP8S_CUDA(cudaSetDevice(device));
    std::size_t free0 = 0, total = 0;
    FP8S_CUDA(cudaMemGetInfo(&free0, &total));
    const double need = gpu_training_bytes(p.model, p.batch, p.seq_len);
    if (need > 0.95 * double(free0)) {
      r.outcome = core::Outcome::oom;
      r.reason = fmt::format("needs about {:.1f} GiB, {:.1f} GiB free", need / (1 << 30), double(free0) / (1 << 30));
      return;
    }
    cudaStream_t stream;
    FP8S_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    auto data = data_for(p, settings.value("token_dtype", std::string("auto")));
    r.data["data"] = data->describe();
    {
      GpuGpt gpt(p.model, p.batch, p.seq_len, stream);
      gpt.set_params(init_params(p.model, std::uint64_t(p.seed)));
      std::size_t free1 = 0;
      FP8S_CUDA(cudaMemGetInfo(&free1, &total));
      const LrSchedule lr{p.lr, p.min_lr, p.warmup, p.steps};
      AdamWSettings adam;
      adam.weight_decay = float(p.weight_decay);
      std::vector<int> in, tg;
      std::vector<StepRow> rows;
      for (int step = 0; step < p.steps; ++step) {
        data->next_batch(p.batch, p.seq_len, in, tg);
        const auto t0 = std::chrono::steady_clock::now();
        const float loss = gpt.forward(in.data(), tg.data());
        gpt.backward();
        const float norm = gpt.step(float(lr.at(step)), float(p.grad_clip), adam);
        FP8S_CUDA(cudaStreamSynchronize(stream));
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        rows.push_back({loss, norm, lr.at(step), ms});
      }
      fill_train_record(r, p, rows, settings.value("timing_warmup", 3), peak_bf16_flops(env));
      r.data["metrics"]["device_mib"] = double(free0 - free1) / (1 << 20);
      if (settings.value("profile", true)) {
        // One more step with events between the phases: where the time goes, per layer type.
        gpt.set_profiling(true);
        data->next_batch(p.batch, p.seq_len, in, tg);
        gpt.forward(in.data(), tg.data());
        gpt.backward();
        gpt.step(float(lr.at(p.steps)), float(p.grad_clip), adam);
        json split = json::object();
        for (auto& [phase, ms] : gpt.last_profile()) split[phase] = ms;
        r.data["time_split_ms"] = split;
      }
    }
    FP8S_CUDA(cudaStreamDestroy(stream));
  } catch (const core::CudaError& e) {
    r.outcome = e.is_oom() ? core::Outcome::oom : core::Outcome::crashed;
    r.reason = e.what();
    if (!e.is_oom()) core::request_worker_restart();
  } catch (const std::runtime_error& e) {
    r.outcome = core::Outcome::crashed;
    r.reason = e.what();
    core::request_worker_restart();
  }
}

}  // namespace fp8scope::model
