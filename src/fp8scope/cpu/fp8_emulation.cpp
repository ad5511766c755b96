#include "fp8scope/cpu/fp8_emulation.hpp"

#include "fp8scope/fp8/block_scale.hpp"

#include <algorithm>
#include <cmath>

namespace fp8scope::cpu {

namespace {
// A tensor's largest finite magnitude and how many of its values are not finite (a tap's and a
// scaler's view of it).
struct FiniteAmax {
  double amax = 0;
  long long nonfinite = 0;
};
FiniteAmax finite_amax(const double* x, std::size_t n) {
  FiniteAmax r;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i]))
      ++r.nonfinite;
    else
      r.amax = std::max(r.amax, std::abs(x[i]));
  }
  return r;
}
}  // namespace

Fp8Emulation::Fp8Emulation(model::Fp8ModelConfig opt) : opt_(std::move(opt)) {}

const double* Fp8Emulation::quantize(int layer, const std::string& tensor, const std::string& role, const double* x, std::size_t n) {
  const auto key = std::make_pair(layer, tensor);
  const fp8::Format f = fp8::format_for(opt_.recipe.format, role == "grad" ? fp8::Pass::backward : fp8::Pass::forward);
  auto it = scalers_.find(key);
  if (it == scalers_.end()) it = scalers_.emplace(key, fp8::TensorScaler(opt_.recipe, f)).first;
  const auto [amax, nonfinite] = finite_amax(x, n);
  // Current scaling measures first and quantises with the scale of this very tensor.
  if (opt_.recipe.scaling == fp8::Scaling::current) it->second.update(nonfinite ? NAN : float(amax));
  float scale = it->second.scale();
  if (auto p = opt_.planted_scale.find(key); p != opt_.planted_scale.end()) scale *= p->second;
  const float fmax = fp8::info(f).max;
  auto& buf = buffers_[key];
  buf.resize(n);
  // Counts describe the FP8 tensor: non-finite includes values the cast itself turned into
  // NaN/inf (overflow without saturation), so the onset points at the cast that made them.
  long long saturated = 0, underflow = 0, nonfinite_out = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const float y = float(x[i]) * scale;  // in float, as the GPU cast
    if (std::isfinite(x[i]) && std::abs(y) > fmax) ++saturated;
    const std::uint8_t q = fp8::encode(y, f, opt_.overflow);
    if (x[i] != 0 && std::isfinite(x[i]) && (q & 0x7F) == 0) ++underflow;
    buf[i] = double(fp8::decode(q, f)) / double(scale);
    if (!std::isfinite(buf[i])) ++nonfinite_out;
  }
  const float prev = amax_this_step_.count(key) ? amax_this_step_[key] : 0.0f;
  amax_this_step_[key] = nonfinite ? NAN : std::max(prev, float(amax));
  taps_.push_back(
      {step_, layer, tensor, role == "grad" ? "backward" : "forward", amax, scale, nonfinite_out, saturated, underflow, (long long)n});
  return buf.data();
}

const double* Fp8Emulation::quantize_operand(int layer, const std::string& tensor, const std::string& role, const double* x, int rows,
                                             int cols, bool k_along_cols) {
  const fp8::Format f = fp8::format_for(opt_.recipe.format, role == "grad" ? fp8::Pass::backward : fp8::Pass::forward);
  const fp8::ScaleMode mode =
      role == "weight" ? model::weight_scale_mode(opt_.recipe.scaling) : model::activation_scale_mode(opt_.recipe.scaling);
  // Logical (outer o, inner k) with k the reduction dimension.
  const std::int64_t outer = k_along_cols ? rows : cols, inner = k_along_cols ? cols : rows;
  auto at = [&](std::int64_t o, std::int64_t k) { return k_along_cols ? o * cols + k : k * cols + o; };
  const fp8::ScaleGeometry g = fp8::scale_geometry(mode, outer, inner);
  std::vector<float> amax(std::size_t(g.blocks()), 0.0f);
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t k = 0; k < inner; ++k) {
      const double v = x[at(o, k)];
      float& a = amax[std::size_t(g.block_of(o, k))];
      if (!std::isfinite(v))
        a = NAN;
      else if (!std::isnan(a))
        a = std::max(a, std::fabs(float(v)));
    }
  // Each block's dequantisation scale, from its own amax (NaN for a block with a non-finite value).
  std::vector<float> dq(amax.size());
  const fp8::BlockScaleRule rule = fp8::block_scale_rule(opt_.recipe);
  for (std::size_t b = 0; b < amax.size(); ++b) dq[b] = fp8::model_block_dequant(mode, amax[b], f, rule);
  auto& buf = buffers_[{layer, tensor}];
  buf.resize(std::size_t(outer * inner));
  const float fmax = fp8::info(f).max;
  long long saturated = 0, underflow = 0, nonfinite_out = 0;
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t k = 0; k < inner; ++k) {
      const std::int64_t i = at(o, k);
      const float d = dq[std::size_t(g.block_of(o, k))], y = float(x[i]) / d;
      if (std::isfinite(x[i]) && std::abs(y) > fmax) ++saturated;
      const std::uint8_t q = fp8::encode(y, f, opt_.overflow);
      if (x[i] != 0 && std::isfinite(x[i]) && (q & 0x7F) == 0) ++underflow;
      buf[std::size_t(i)] = double(fp8::decode(q, f)) * double(d);
      if (!std::isfinite(buf[std::size_t(i)])) ++nonfinite_out;
    }
  double amax_all = 0;
  float min_scale = 0;
  for (std::size_t b = 0; b < amax.size(); ++b) {
    if (!std::isnan(amax[b])) amax_all = std::max(amax_all, double(amax[b]));
    min_scale = b == 0 ? 1.0f / dq[b] : std::min(min_scale, 1.0f / dq[b]);
  }
  std::vector<float> finite;
  for (float a : amax)
    if (!std::isnan(a)) finite.push_back(a);
  std::sort(finite.begin(), finite.end());
  const auto nonzero = std::upper_bound(finite.begin(), finite.end(), 0.0f);
  taps_.push_back({step_, layer, tensor, role == "grad" ? "backward" : "forward", amax_all, min_scale, nonfinite_out, saturated, underflow,
                   (long long)(outer * inner), (long long)amax.size(), nonzero == finite.end() ? 0.0 : double(*nonzero),
                   finite.empty() ? 0.0 : double(finite[finite.size() / 2])});
  return buf.data();
}

void Fp8Emulation::observe(int layer, const std::string& tensor, const std::string& pass, const double* x, std::size_t n) {
  const auto [amax, nonfinite] = finite_amax(x, n);
  taps_.push_back({step_, layer, tensor, pass, amax, 0.0f, nonfinite, 0, 0, (long long)n});
}

void Fp8Emulation::end_step() {
  if (opt_.recipe.scaling == fp8::Scaling::delayed)
    for (auto& [key, scaler] : scalers_) scaler.update(amax_this_step_.count(key) ? amax_this_step_[key] : 0.0f);
  amax_this_step_.clear();
  ++step_;
}

std::optional<Tap> Fp8Emulation::nan_onset() const { return fp8::nan_onset(taps_); }

}  // namespace fp8scope::cpu
