#include "fp8scope/fp8/recipe.hpp"

#include <cfloat>
#include <cmath>

namespace fp8scope::fp8 {

Format format_for(RecipeFormat rf, Pass pass) { return rf == RecipeFormat::hybrid && pass == Pass::backward ? Format::e5m2 : Format::e4m3; }

std::optional<float> scale_from_amax(float amax, float fp8_max, int margin) {
  if (!(amax > 0.0f) || !std::isfinite(amax)) return std::nullopt;  // also catches NaN
  // In float, as the GPU computes it: one rounded division, then an exact power-of-two step.
  float s = std::ldexp(fp8_max / amax, -margin);
  if (std::isinf(s)) s = FLT_MAX;
  return s;
}

TensorScaler::TensorScaler(const RecipeConfig& cfg, Format fmt) : cfg_(cfg), fp8_max_(info(fmt).max) {
  if (cfg_.scaling == Scaling::current) cfg_.amax_history_len = 1;
}

void TensorScaler::update(float amax) {
  history_.push_front(amax);
  if (int(history_.size()) > cfg_.amax_history_len) history_.pop_back();
  float a = amax;
  if (cfg_.amax_algo == AmaxAlgo::max && cfg_.scaling == Scaling::delayed) {
    for (float h : history_) {
      if (std::isnan(h)) {
        a = h;
        break;
      }
      a = std::max(a, h);
    }
  }
  reduced_ = a;
  if (auto s = scale_from_amax(a, fp8_max_, cfg_.margin)) scale_ = *s;
}

std::string to_string(RecipeFormat f) { return f == RecipeFormat::e4m3 ? "e4m3" : "hybrid"; }
std::string to_string(AmaxAlgo a) { return a == AmaxAlgo::max ? "max" : "most_recent"; }
std::string to_string(Scaling s) {
  switch (s) {
    case Scaling::delayed: return "delayed";
    case Scaling::current: return "current";
    case Scaling::rowwise: return "rowwise";
    case Scaling::block: return "block";
  }
  return "?";
}

}  // namespace fp8scope::fp8
