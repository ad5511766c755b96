#pragma once
// One probe_train point: build the model and data a point describes, train it for its steps
// on the CPU reference or the GPU, and record the loss curve, step times, tokens/s, MFU,
// memory and the check that the untrained loss is ln(V).
#include "fp8scope/core/config.hpp"
#include "fp8scope/core/record.hpp"
#include "fp8scope/cpu/trainer.hpp"
#include "fp8scope/fp8/tap.hpp"
#include "fp8scope/model/data.hpp"
#include "fp8scope/model/fp8_plan.hpp"
#include "fp8scope/model/gpt_config.hpp"

#include <memory>
#include <optional>
#include <vector>

namespace fp8scope::train {

// The model, data and schedule axes (shared with probe_recipe).
std::vector<core::ParamSpec> train_axes();
// probe_train's: train_axes() plus precision (bf16 / fp8) and the FP8 fields.
std::vector<core::ParamSpec> probe_train_axes();
std::vector<core::ParamSpec> train_settings();

struct TrainPoint {
  std::string backend;
  model::GptConfig model;
  int batch, seq_len, steps, warmup, seed;
  double lr, min_lr, weight_decay, grad_clip;
  std::string data;
  int ranks = 1;             // data-parallel GPUs (batch is per GPU)
  model::GpuRunOptions gpu;  // GPU: the axes attention, lm_head_chunk and logits
  // FP8 training (probe_train with precision fp8, every probe_recipe run): what runs in FP8 and
  // how, for the GPU model and the CPU emulation alike.
  std::optional<model::Fp8ModelConfig> fp8;
};
TrainPoint train_point_from(const core::json& point);

// The point's data (synthetic or a token file) and its CPU training configuration.
std::unique_ptr<model::TokenSource> data_for(const TrainPoint& p, const std::string& token_dtype = "auto");
cpu::TrainConfig cpu_train_config(const TrainPoint& p);

// "" or one line naming what is wrong (invalid shape, or too large for the GPU in env).
std::string check_train_point(const TrainPoint& p, const core::json& env);
// "" or one line naming the token file and what is wrong with it (missing, unreadable, a bad
// header, tokens >= vocab, fewer tokens than one batch needs), read with the sweep's
// token_dtype; each file is read once however many points name it.
std::string check_train_data(const TrainPoint& p, const core::json& settings);

// The device memory the GPU model will allocate for p trained in FP8 under f (nullptr: BF16):
// model::gpu_training_bytes with what FP8 adds, checked before a run starts.
double gpu_bytes_needed(const TrainPoint& p, const model::Fp8ModelConfig* f);

// What `probe_train --list` says of a GPU point: the device memory it will take (the estimate
// checked before a run), by part, and for FP8 against its BF16 twin; "" for a CPU point.
std::string memory_plan(const TrainPoint& p);

// Model FLOPs of one training step (6 N per token for the matmuls with weights, plus
// attention), as MFU counts them.
double train_flops_per_step(const model::GptConfig& c, int B, int T);

core::Record run_train_point(const TrainPoint& p, const core::json& settings, const core::json& env, int device, const std::string& key,
                             const core::json& params);

// The GPU half (gpt_gpu builds); fills r.data from the run.
void train_on_gpu(const TrainPoint& p, const core::json& settings, const core::json& env, int device, core::Record& r);

// Shared by both backends: the per-step log -> the record's train/metrics/timing sections.
struct StepRow {
  double loss, grad_norm, lr, ms;
};
void fill_train_record(core::Record& r, const TrainPoint& p, const std::vector<StepRow>& steps, int timing_warmup, double peak_flops);

// One GPU training run (BF16 when fp8 is null): the step log, the taps, the profile.
struct GpuRun {
  std::vector<StepRow> rows;
  std::vector<fp8::Tap> taps;
  core::json time_split = core::json::object();
  core::json taps_overhead;    // FP8 runs with settings.taps_overhead_steps > 0
  double device_mib = 0;       // cudaMemGetInfo: memory the model took when built
  double peak_alloc_mib = 0;   // the allocations' high-water mark over the run (DeviceBytes)
  double peak_device_mib = 0;  // cudaMemGetInfo: the most the device had in use after a step (context and cuBLASLt included)
  std::vector<std::vector<fp8::Tap>> rank_taps;  // data-parallel FP8 runs: every rank's own taps
  core::json graphs;                             // GPU: the steps' CUDA graphs (train_step.hpp's graph_use)
  core::json gemm_tuning;                        // GPU, gemm_algos > 1: GpuGpt::gemm_tuning (rank 0's when data-parallel)
  core::json gelu_epilogue;                      // GPU, gelu_cast gemm_epilogue: GpuGpt::gelu_epilogue (where the GELU ran)
  std::string weight_cast;                       // GPU FP8, per-tensor scaling: GpuGpt::weight_cast (where the block weights were cast)
  std::int64_t lm_head_wgrad_columns = 0;  // GPU, FP8 head: GpuGpt::lm_head_wgrad_columns (its gradient's transpose a slice at a time)
  core::json residual_add;                 // GPU: GpuGpt::residual_add (where the residual stream's adds ran)
};
// Trains p on the GPU (on p.ranks GPUs from `device` with NCCL when p.ranks > 1); false when the run could not go on (out of memory, a GEMM
// cuBLASLt refuses, a CUDA error), with r.outcome and r.reason set. Host-only builds: always false, outcome skipped.
bool train_gpu_run(const TrainPoint& p, const model::Fp8ModelConfig* fp8, const core::json& settings, int device, bool stop_at_nonfinite,
                   GpuRun& out, core::Record& r);
// The data-parallel half: one thread and one NCCL rank per GPU (data_parallel.cpp).
bool train_gpu_run_dp(const TrainPoint& p, const model::Fp8ModelConfig* fp8, const core::json& settings, int device, bool stop_at_nonfinite,
                      GpuRun& out, core::Record& r);

}  // namespace fp8scope::train
