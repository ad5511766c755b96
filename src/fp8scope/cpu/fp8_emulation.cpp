#include "fp8scope/cpu/fp8_emulation.hpp"

#include <cmath>

namespace fp8scope::cpu {

Fp8Emulation::Fp8Emulation(model::Fp8ModelConfig opt) : opt_(std::move(opt)) {}

const double* Fp8Emulation::quantize(int layer, const std::string& tensor, const std::string& role, const double* x, std::size_t n) {
  const auto key = std::make_pair(layer, tensor);
  const fp8::Format f = fp8::format_for(opt_.recipe.format, role == "grad" ? fp8::Pass::backward : fp8::Pass::forward);
  auto it = scalers_.find(key);
  if (it == scalers_.end()) it = scalers_.emplace(key, fp8::TensorScaler(opt_.recipe, f)).first;
  double amax = 0;
  long long nonfinite = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i]))
      ++nonfinite;
    else
      amax = std::max(amax, std::abs(x[i]));
  }
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

void Fp8Emulation::observe(int layer, const std::string& tensor, const std::string& pass, const double* x, std::size_t n) {
  double amax = 0;
  long long nonfinite = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i]))
      ++nonfinite;
    else
      amax = std::max(amax, std::abs(x[i]));
  }
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
