#pragma once
// Training on the CPU reference: the CPU backend of probe_train, for tiny configs. Records
// what the GPU trainer records (per-step loss, grad norm, LR, step time).
#include "fp8scope/cpu/adamw.hpp"
#include "fp8scope/cpu/fp8_emulation.hpp"
#include "fp8scope/model/data.hpp"
#include "fp8scope/model/gpt_config.hpp"
#include "fp8scope/model/schedule.hpp"

#include <cstdint>
#include <memory>
#include <vector>

namespace fp8scope::cpu {

struct TrainConfig {
  model::GptConfig model;
  int batch = 4, seq_len = 32, steps = 10;
  model::LrSchedule lr;
  AdamWConfig adamw;
  double grad_clip = 1.0;
  std::uint64_t seed = 1;
};

struct StepLog {
  int step;
  double loss, grad_norm, lr, ms;
};

// Trains from GPT-2 initialisation (seeded) on the given data; one forward/backward/update
// per step. With fp8, every linear runs through the FP8 emulation (its end_step() is called
// after each backward). Non-finite losses are recorded as they come; with
// stop_at_nonfinite the run ends at the first one.
std::vector<StepLog> train_cpu(const TrainConfig& cfg, model::TokenSource& data, Fp8Emulation* fp8 = nullptr,
                               bool stop_at_nonfinite = false);

}  // namespace fp8scope::cpu
