#include "train/recipe_point.hpp"

#include "fp8scope/cpu/trainer.hpp"
#include "fp8scope/model/fp8_fields.hpp"
#include "train/tap_summary.hpp"
#include "train/train_point.hpp"

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <memory>

namespace fp8scope::train {
using core::json;
using K = core::ParamSpec::Kind;

std::vector<core::ParamSpec> recipe_axes() {
  std::vector<core::ParamSpec> axes = model::fp8_axes();
  for (auto& a : train_axes()) axes.push_back(a);
  return axes;
}

std::vector<core::ParamSpec> recipe_settings() {
  return {{"tap_points", K::integer, 50, {}, 2, 100000, "steps kept in each tensor's amax/scale history"},
          {"stop_at_onset", K::boolean, true, {}, 0, 0, "end a run at its first non-finite loss"},
          {"onset_history", K::integer, 5, {}, 0, 1000, "steps of amax/scale kept before the NaN onset"},
          {"timing_warmup", K::integer, 3, {}, 0, 1000, "GPU: steps left out of the tokens/s statistics"}};
}

namespace {
TrainPoint recipe_train_point(const json& p) {
  TrainPoint tp = train_point_from(p);
  tp.fp8 = model::fp8_config_from(p);
  return tp;
}

struct Twin {
  std::vector<double> loss;
  double tokens_per_s = 0;
  core::Record failure;  // the twin's own failure, if it had one
  bool ok = false;
};
}  // namespace

std::string check_recipe_point(const json& p, const json& settings, const json& env) {
  if (auto e = model::check_fp8_point(p); !e.empty()) return e;
  const TrainPoint tp = recipe_train_point(p);
  if (auto e = check_train_point(tp, env); !e.empty()) return e;
  return check_train_data(tp, settings);
}

std::function<core::Record(const json&, const std::string&)> make_recipe_point_fn(const core::ProbeContext& ctx) {
  auto twins = std::make_shared<std::map<std::string, Twin>>();
  return [ctx, twins](const json& p, const std::string& key) {
    const json& settings = ctx.settings;
    core::Record r = core::make_record(key, p, core::Outcome::ok);
    const TrainPoint tp = recipe_train_point(p);
    const bool gpu = tp.backend == "gpu";
    if (gpu && !core::env_has_gpu(ctx.env))
      return core::make_record(key, p, core::Outcome::skipped, "no GPU: " + ctx.env.value("gpu_reason", std::string("?")));
    const int warm = settings.value("timing_warmup", 3);
    // The high-precision twin: once per backend, model, data, schedule and seed.
    const std::string twin_key =
        fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}", tp.backend, tp.model.vocab, tp.model.pad_vocab_to, tp.model.d_model,
                    tp.model.n_layer, tp.model.n_head, tp.model.tied, tp.seq_len, tp.batch, tp.steps, tp.lr, tp.seed, tp.data);
    Twin& twin = (*twins)[twin_key];
    if (twin.loss.empty() && !twin.ok) {
      if (gpu) {
        GpuRun run;
        core::Record tr = core::make_record(key, p, core::Outcome::ok);
        json quiet = settings;
        quiet["profile"] = false;
        if (train_gpu_run(tp, nullptr, quiet, ctx.device, false, run, tr)) {
          for (auto& s : run.rows) twin.loss.push_back(s.loss);
          fill_train_record(tr, tp, run.rows, warm, 0.0);
          twin.tokens_per_s = tr.data["metrics"]["tokens_per_s"];
        }
        twin.failure = tr;
      } else {
        auto data = data_for(tp);
        for (auto& s : cpu::train_cpu(cpu_train_config(tp), *data)) twin.loss.push_back(s.loss);
      }
      twin.ok = !twin.loss.empty();
    }
    if (!twin.ok) {  // without a twin there is nothing to compare against: the twin's failure is the point's
      r.outcome = twin.failure.outcome;
      r.reason = "BF16 twin: " + twin.failure.reason;
      return r;
    }

    std::vector<StepRow> rows;
    std::vector<fp8::Tap> taps;
    const bool stop = settings.value("stop_at_onset", true);
    if (gpu) {
      GpuRun run;
      json quiet = settings;
      quiet["profile"] = false;
      if (!train_gpu_run(tp, &*tp.fp8, quiet, ctx.device, stop, run, r)) return r;
      rows = std::move(run.rows);
      taps = std::move(run.taps);
    } else {
      cpu::Fp8Emulation fp8(*tp.fp8);
      auto data = data_for(tp);
      for (auto& s : cpu::train_cpu(cpu_train_config(tp), *data, &fp8, stop)) rows.push_back({s.loss, s.grad_norm, s.lr, s.ms});
      taps = fp8.taps();
    }
    fill_train_record(r, tp, rows, gpu ? warm : 1, 0.0);
    r.data.erase("init_loss_check");
    r.data["twin_loss"] = twin.loss;
    if (gpu && twin.tokens_per_s > 0) {
      r.data["metrics"]["twin_tokens_per_s"] = twin.tokens_per_s;
      r.data["metrics"]["speedup_vs_twin"] = r.data["metrics"]["tokens_per_s"].get<double>() / twin.tokens_per_s;
    }
    // Loss gap to the twin over the steps both have finite losses.
    double gap_max = 0, gap_final = NAN;
    for (std::size_t i = 0; i < rows.size() && i < twin.loss.size(); ++i) {
      if (!std::isfinite(rows[i].loss)) break;
      const double g = rows[i].loss - twin.loss[i];
      gap_final = g;
      if (std::abs(g) > std::abs(gap_max)) gap_max = g;
    }
    r.data["metrics"]["loss_gap_final"] = gap_final;
    r.data["metrics"]["loss_gap_max"] = gap_max;
    r.data["metrics"]["twin_loss_last"] = twin.loss.back();
    r.data["taps"] = summarize_taps(taps, settings.value("tap_points", 50));
    // Without a tapped origin (a GPU step whose observed tensors were not copied), the onset
    // stays the one the loss gave.
    record_nan_onset(r, taps, settings.value("onset_history", 5));
    return r;
  };
}

}  // namespace fp8scope::train
