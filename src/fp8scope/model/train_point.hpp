#pragma once
// One probe_train point: build the model and data a point describes, train it for its steps
// on the CPU reference or the GPU, and record the loss curve, step times, tokens/s, MFU,
// memory and the check that the untrained loss is ln(V).
#include "fp8scope/core/config.hpp"
#include "fp8scope/core/record.hpp"
#include "fp8scope/cpu/trainer.hpp"
#include "fp8scope/model/data.hpp"
#include "fp8scope/model/gpt_config.hpp"

#include <memory>
#include <vector>

namespace fp8scope::model {

std::vector<core::ParamSpec> train_axes();
std::vector<core::ParamSpec> train_settings();

struct TrainPoint {
  std::string backend;
  GptConfig model;
  int batch, seq_len, steps, warmup, seed;
  double lr, min_lr, weight_decay, grad_clip;
  std::string data;
};
TrainPoint train_point_from(const core::json& point);

// The point's data (synthetic or a token file) and its CPU training configuration.
std::unique_ptr<TokenSource> data_for(const TrainPoint& p, const std::string& token_dtype = "auto");
cpu::TrainConfig cpu_train_config(const TrainPoint& p);

// "" or one line naming what is wrong (invalid shape, or too large for the GPU in env).
std::string check_train_point(const TrainPoint& p, const core::json& env);

// Model FLOPs of one training step (6 N per token for the matmuls with weights, plus
// attention), as MFU counts them.
double train_flops_per_step(const GptConfig& c, int B, int T);

core::Record run_train_point(const TrainPoint& p, const core::json& settings, const core::json& env, int device,
                             const std::string& key, const core::json& params);

// The GPU half (gpt_gpu builds); fills r.data from the run.
void train_on_gpu(const TrainPoint& p, const core::json& settings, const core::json& env, int device, core::Record& r);

// Shared by both backends: the per-step log -> the record's train/metrics/timing sections.
struct StepRow {
  double loss, grad_norm, lr, ms;
};
void fill_train_record(core::Record& r, const TrainPoint& p, const std::vector<StepRow>& steps, int timing_warmup,
                       double peak_flops);

}  // namespace fp8scope::model
