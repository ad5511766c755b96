#include "train/tap_summary.hpp"

#include <fmt/format.h>

#include <map>

namespace fp8scope::train {
using core::json;

namespace {
json downsample(const std::vector<double>& v, int points) {
  json out = json::array();
  const std::size_t stride = std::max<std::size_t>(1, (v.size() + std::size_t(points) - 1) / std::size_t(points));
  for (std::size_t i = 0; i < v.size(); i += stride) out.push_back(v[i]);
  return out;
}
}  // namespace

json summarize_taps(const std::vector<fp8::Tap>& taps, int points) {
  struct Hist {
    std::vector<double> amax, scale, saturated;   // per step; saturated as a fraction
    std::vector<double> block_min, block_median;  // per step, per-row/per-block scaling only
    long long sat = 0, under = 0, n = 0, blocks = 0;
  };
  std::map<std::string, Hist> hist;
  for (const auto& t : taps) {
    if (t.scale == 0.0f) continue;  // only the quantised tensors have a recipe
    auto& h = hist[fmt::format("{}.{}", t.layer, t.tensor)];
    h.amax.push_back(t.amax);
    h.scale.push_back(t.scale);
    h.saturated.push_back(t.elements ? double(t.saturated) / double(t.elements) : 0.0);
    h.sat += t.saturated, h.under += t.underflow, h.n += t.elements;
    if (t.blocks > 0) h.blocks = t.blocks, h.block_min.push_back(t.block_amax_min), h.block_median.push_back(t.block_amax_median);
  }
  json out = json::object();
  for (auto& [name, h] : hist) {
    out[name] = {{"amax", downsample(h.amax, points)},
                 {"scale", downsample(h.scale, points)},
                 {"saturated", downsample(h.saturated, points)},
                 {"saturated_rate", h.n ? double(h.sat) / double(h.n) : 0.0},
                 {"underflow_rate", h.n ? double(h.under) / double(h.n) : 0.0}};
    if (h.blocks > 0)
      out[name]["blocks"] = {
          {"count", h.blocks}, {"amax_min", downsample(h.block_min, points)}, {"amax_median", downsample(h.block_median, points)}};
  }
  return out;
}

bool record_nan_onset(core::Record& r, const std::vector<fp8::Tap>& taps, int keep) {
  const auto onset = fp8::nan_onset(taps);
  if (!onset) return false;
  r.outcome = core::Outcome::nonfinite;
  json before = json::array();
  for (const auto& t : taps)
    if (t.layer == onset->layer && t.tensor == onset->tensor && t.step < onset->step && t.step >= onset->step - keep)
      before.push_back({{"step", t.step}, {"amax", t.amax}, {"scale", t.scale}});
  r.data["nan_onset"] = {{"step", onset->step},           {"layer", onset->layer},         {"tensor", onset->tensor},
                         {"pass", onset->pass},           {"amax", onset->amax},           {"scale", onset->scale},
                         {"saturated", onset->saturated}, {"nonfinite", onset->nonfinite}, {"before", before}};
  r.reason = fmt::format("NaN at step {}, layer {}, {} ({})", onset->step, onset->layer, onset->tensor, onset->pass);
  return true;
}

}  // namespace fp8scope::train
