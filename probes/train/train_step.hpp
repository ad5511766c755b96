#pragma once
// One timed training step of the GPU model (forward, backward, clipping + AdamW at the
// schedule's LR), shared by the single-GPU and the data-parallel trainers. CUDA builds only.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/gpu_model/gpt_gpu.hpp"
#include "fp8scope/model/schedule.hpp"
#include "train/train_point.hpp"

#include <chrono>

namespace fp8scope::train {

// inputs/targets: this GPU's B x T tokens. Wall time from the tokens handed over to the step
// done (GpuGpt::train_step: one CUDA graph launch once captured, else kernel by kernel).
inline StepRow timed_step(gpu_model::GpuGpt& gpt, const int* inputs, const int* targets, const TrainPoint& p, const model::LrSchedule& lr,
                          const gpu_model::AdamWSettings& adam, int step) {
  const auto t0 = std::chrono::steady_clock::now();
  const gpu_model::GpuGpt::StepValues v = gpt.train_step(inputs, targets, float(lr.at(step)), float(p.grad_clip), adam);  // returns done
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return {v.loss, v.norm, lr.at(step), ms};
}

// What the run's record says of its CUDA graphs: replayed steps and captures, or why its steps
// ran uncaptured.
inline core::json graph_use(const gpu_model::GpuGpt& gpt) {
  core::json j = {{"replayed_steps", gpt.graph_replays()}, {"captures", gpt.graph_captures()}};
  if (const std::string why = gpt.graphs_off_reason(); !why.empty()) j["uncaptured_because"] = why;
  return j;
}

inline gpu_model::AdamWSettings adamw_for(const TrainPoint& p) {
  gpu_model::AdamWSettings a;
  a.weight_decay = float(p.weight_decay);
  return a;
}

}  // namespace fp8scope::train
