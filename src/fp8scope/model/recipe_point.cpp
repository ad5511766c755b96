#include "fp8scope/model/recipe_point.hpp"

#include "fp8scope/cpu/trainer.hpp"
#include "fp8scope/model/train_point.hpp"

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <memory>

namespace fp8scope::model {
using core::json;
using K = core::ParamSpec::Kind;

std::vector<core::ParamSpec> recipe_axes() {
  std::vector<core::ParamSpec> axes = {
      {"format", K::string, "hybrid", {"e4m3", "hybrid"}, 0, 0, "hybrid: E4M3 forward, E5M2 gradients"},
      {"margin", K::integer, 0, {}, -32, 32, "scale = fp8_max / amax / 2^margin"},
      {"amax_history_len", K::integer, 16, {}, 1, 1 << 16, ""},
      {"amax_compute_algo", K::string, "max", {"max", "most_recent"}, 0, 0, ""},
      {"scaling", K::string, "delayed", {"delayed", "current"}, 0, 0, ""},
      {"saturation", K::string, "satfinite", {"satfinite", "nosat"}, 0, 0, "overflow clamps, or becomes NaN/inf"},
      {"variant", K::string, "custom", {"custom", "fused", "fp8_attention"}, 0, 0,
       "custom: BF16 LayerNorm then FP8 linear; fused: LayerNorm/GELU write FP8 (same numerics on the CPU); "
       "fp8_attention: also Q, K, V, probabilities and the attention gradient in FP8"},
  };
  for (auto& a : train_axes()) axes.push_back(a);
  return axes;
}

std::vector<core::ParamSpec> recipe_settings() {
  return {{"tap_points", K::integer, 50, {}, 2, 100000, "steps kept in each tensor's amax/scale history"},
          {"stop_at_onset", K::boolean, true, {}, 0, 0, "end a run at its first non-finite loss"},
          {"onset_history", K::integer, 5, {}, 0, 1000, "steps of amax/scale kept before the NaN onset"}};
}

std::string check_recipe_point(const json& p, const json& env) {
  if (p["backend"] != "cpu")
    return "backend gpu needs the GPU FP8 model, which is not built yet; use backend cpu (the FP8-emulating reference)";
  return check_train_point(train_point_from(p), env);
}

namespace {

json downsample(const std::vector<double>& v, int points) {
  json out = json::array();
  const std::size_t stride = std::max<std::size_t>(1, (v.size() + std::size_t(points) - 1) / std::size_t(points));
  for (std::size_t i = 0; i < v.size(); i += stride) out.push_back(v[i]);
  return out;
}

}  // namespace

std::function<core::Record(const json&, const std::string&)> make_recipe_point_fn(const json& settings) {
  auto twins = std::make_shared<std::map<std::string, std::vector<double>>>();
  return [settings, twins](const json& p, const std::string& key) {
    core::Record r = core::make_record(key, p, core::Outcome::ok);
    const TrainPoint tp = train_point_from(p);
    const cpu::TrainConfig cfg = cpu_train_config(tp);
    // The high-precision twin: once per model, data, schedule and seed.
    const std::string twin_key = fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}", tp.model.vocab, tp.model.pad_vocab_to, tp.model.d_model,
                                             tp.model.n_layer, tp.model.n_head, tp.model.tied, tp.seq_len, tp.batch, tp.steps, tp.lr,
                                             tp.seed, tp.data);
    auto& twin = (*twins)[twin_key];
    if (twin.empty()) {
      auto data = data_for(tp);
      for (auto& s : cpu::train_cpu(cfg, *data)) twin.push_back(s.loss);
    }
    cpu::Fp8Options opt;
    opt.recipe.format = p["format"] == "e4m3" ? fp8::RecipeFormat::e4m3 : fp8::RecipeFormat::hybrid;
    opt.recipe.margin = p["margin"];
    opt.recipe.amax_history_len = p["amax_history_len"];
    opt.recipe.amax_algo = p["amax_compute_algo"] == "max" ? fp8::AmaxAlgo::max : fp8::AmaxAlgo::most_recent;
    opt.recipe.scaling = p["scaling"] == "delayed" ? fp8::Scaling::delayed : fp8::Scaling::current;
    opt.overflow = p["saturation"] == "satfinite" ? fp8::Overflow::satfinite : fp8::Overflow::nosat;
    opt.attention = p["variant"] == "fp8_attention";
    cpu::Fp8Emulation fp8(opt);
    auto data = data_for(tp);
    const auto log = cpu::train_cpu(cfg, *data, &fp8, settings.value("stop_at_onset", true));

    std::vector<StepRow> rows;
    for (auto& s : log) rows.push_back({s.loss, s.grad_norm, s.lr, s.ms});
    fill_train_record(r, tp, rows, 1, 0.0);
    r.data.erase("init_loss_check");
    r.data["twin_loss"] = twin;
    // Loss gap to the twin over the steps both have finite losses.
    double gap_max = 0, gap_final = NAN;
    for (std::size_t i = 0; i < log.size() && i < twin.size(); ++i) {
      if (!std::isfinite(log[i].loss)) break;
      const double g = log[i].loss - twin[i];
      gap_final = g;
      if (std::abs(g) > std::abs(gap_max)) gap_max = g;
    }
    r.data["metrics"]["loss_gap_final"] = gap_final;
    r.data["metrics"]["loss_gap_max"] = gap_max;
    r.data["metrics"]["twin_loss_last"] = twin.back();

    // Per tensor: amax and scale histories (downsampled) and saturation/underflow rates.
    struct Hist {
      std::vector<double> amax, scale, saturated;  // per step; saturated as a fraction
      long long sat = 0, under = 0, n = 0;
    };
    std::map<std::string, Hist> hist;
    for (const auto& t : fp8.taps()) {
      if (t.scale == 0.0f) continue;  // only the quantised tensors have a recipe
      auto& h = hist[fmt::format("{}.{}", t.layer, t.tensor)];
      h.amax.push_back(t.amax);
      h.scale.push_back(t.scale);
      h.saturated.push_back(t.elements ? double(t.saturated) / double(t.elements) : 0.0);
      h.sat += t.saturated, h.under += t.underflow, h.n += t.elements;
    }
    json taps = json::object();
    const int points = settings.value("tap_points", 50);
    for (auto& [name, h] : hist)
      taps[name] = {{"amax", downsample(h.amax, points)},
                    {"scale", downsample(h.scale, points)},
                    {"saturated", downsample(h.saturated, points)},
                    {"saturated_rate", h.n ? double(h.sat) / double(h.n) : 0.0},
                    {"underflow_rate", h.n ? double(h.under) / double(h.n) : 0.0}};
    r.data["taps"] = taps;

    if (auto onset = fp8.nan_onset()) {
      r.outcome = core::Outcome::nonfinite;
      json before = json::array();
      const int keep = settings.value("onset_history", 5);
      for (const auto& t : fp8.taps())
        if (t.layer == onset->layer && t.tensor == onset->tensor && t.step < onset->step && t.step >= onset->step - keep)
          before.push_back({{"step", t.step}, {"amax", t.amax}, {"scale", t.scale}});
      r.data["nan_onset"] = {{"step", onset->step}, {"layer", onset->layer},   {"tensor", onset->tensor},
                             {"pass", onset->pass}, {"amax", onset->amax},     {"scale", onset->scale},
                             {"saturated", onset->saturated}, {"before", before}};
      r.reason = fmt::format("NaN at step {}, layer {}, {} ({})", onset->step, onset->layer, onset->tensor, onset->pass);
    } else if (r.outcome == core::Outcome::nonfinite) {
      r.data.erase("nan_onset");  // a non-finite loss without a tapped origin cannot happen; keep the loss's word
    }
    return r;
  };
}

}  // namespace fp8scope::model
