// probe_train: trains a GPT for N steps on the CPU reference or the GPU and records per step
// loss, grad norm, LR and step time; per run tokens/s, ms/step with spread, MFU, memory, the
// time per layer type, and whether the untrained loss was ln(V).
#include "fp8scope/core/error.hpp"
#include "fp8scope/core/probe_main.hpp"
#include "train/train_point.hpp"

#include <fmt/format.h>

using namespace fp8scope;

int main(int argc, char** argv) {
  core::ProbeDef def;
  def.schema.probe = "train";
  def.summary = "train a hand-written GPT (CPU reference or CUDA) and record loss, speed and memory";
  def.schema.axes = train::probe_train_axes();
  def.schema.settings = train::train_settings();
  def.needs_gpu = false;  // the cpu backend runs anywhere; gpu points skip themselves without a GPU
  def.check_point = [](const core::json& p, const core::json& settings, const core::json& env) {
    const auto tp = train::train_point_from(p);
    if (auto e = train::check_train_point(tp, env); !e.empty()) return e;
    return train::check_train_data(tp, settings);
  };
  def.describe_point = [](const core::json& p) { return train::memory_plan(train::train_point_from(p)); };
  def.make_point_fn = [](const core::ProbeContext& ctx) {
    return [ctx](const core::json& p, const std::string& key) {
      const auto tp = train::train_point_from(p);
      if (tp.backend == "gpu" && !core::env_has_gpu(ctx.env))
        return core::make_record(key, p, core::Outcome::skipped, "no GPU: " + ctx.env.value("gpu_reason", std::string("?")));
      return train::run_train_point(tp, ctx.settings, ctx.env, ctx.device, key, p);
    };
  };
  return core::probe_main(argc, argv, def);
}
