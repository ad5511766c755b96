#include "fp8scope/model/fp8_plan.hpp"

#include <fmt/format.h>

#include <sstream>

namespace fp8scope::model {

std::optional<Fp8Variant> parse_variant(const std::string& s) {
  if (s == "custom") return Fp8Variant::custom;
  if (s == "fused") return Fp8Variant::fused;
  if (s == "fp8_attention") return Fp8Variant::fp8_attention;
  return std::nullopt;
}

std::string to_string(Fp8Variant v) { return v == Fp8Variant::custom ? "custom" : v == Fp8Variant::fused ? "fused" : "fp8_attention"; }

std::string parse_linears(const std::string& s, std::set<std::string>& out) {
  out.clear();
  if (s == "none") return "";
  if (s == "all") {
    out.insert(linear_names().begin(), linear_names().end());
    return "";
  }
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    bool known = false;
    for (const auto& n : linear_names()) known |= n == item;
    if (!known) return fmt::format("unknown linear '{}' (allowed: qkv, proj, fc1, fc2, lm_head, or all / none)", item);
    out.insert(item);
  }
  return "";
}

void TapPlan::add(int layer, const std::string& tensor, const std::string& pass, std::optional<fp8::Format> f, std::int64_t n) {
  index_[{layer, tensor}] = int(slots_.size());
  slots_.push_back({layer, tensor, pass, f, n});
}

int TapPlan::index(int layer, const std::string& tensor) const {
  auto it = index_.find({layer, tensor});
  return it == index_.end() ? -1 : it->second;
}

// The order is the order the model runs them, forward then backward, so the first slot with
// a non-finite value is the NaN onset.
TapPlan::TapPlan(const GptConfig& cfg, int B, int T, const Fp8ModelConfig& f, bool flash_attention) {
  const std::int64_t N = std::int64_t(B) * T, C = cfg.d_model, Vp = cfg.padded_vocab(), BH = std::int64_t(B) * cfg.n_head;
  const auto fwd = fp8::format_for(f.recipe.format, fp8::Pass::forward);
  const auto bwd = fp8::format_for(f.recipe.format, fp8::Pass::backward);
  auto linear = [&](int l, const std::string& name, std::int64_t IC, std::int64_t OC) {
    if (!f.fp8(name)) return;
    add(l, name + ".input", "forward", fwd, N * IC);
    add(l, name + ".weight", "forward", fwd, OC * IC);
  };
  for (int l = 0; l < cfg.n_layer; ++l) {
    linear(l, "qkv", C, 3 * C);
    add(l, "qkv", "forward", std::nullopt, N * 3 * C);
    if (f.attention()) {
      add(l, "q.input", "forward", fwd, N * C);
      add(l, "k.input", "forward", fwd, N * C);
      add(l, "v.input", "forward", fwd, N * C);
    }
    if (!flash_attention) add(l, "scores", "forward", std::nullopt, BH * T * T);
    if (f.attention()) add(l, "probs.input", "forward", fwd, BH * T * T);
    if (!flash_attention) add(l, "probs", "forward", std::nullopt, BH * T * T);
    add(l, "attention_out", "forward", std::nullopt, N * C);
    linear(l, "proj", C, C);
    add(l, "proj_out", "forward", std::nullopt, N * C);
    add(l, "residual", "forward", std::nullopt, N * C);
    linear(l, "fc1", C, 4 * C);
    add(l, "fc1_out", "forward", std::nullopt, N * 4 * C);
    // The fused GELU writes only the FP8 tensor; its tap is fc2.input.
    if (!f.fuse_into("fc2")) add(l, "gelu_out", "forward", std::nullopt, N * 4 * C);
    linear(l, "fc2", 4 * C, C);
    add(l, "fc2_out", "forward", std::nullopt, N * C);
  }
  linear(-1, "lm_head", C, Vp);
  add(-1, "logits", "forward", std::nullopt, N * Vp);
  add(-1, "loss", "forward", std::nullopt, N);
  if (f.fp8("lm_head")) add(-1, "lm_head.grad", "backward", bwd, N * Vp);
  for (int l = cfg.n_layer - 1; l >= 0; --l) {
    if (f.fp8("fc2")) add(l, "fc2.grad", "backward", bwd, N * C);
    if (f.fp8("fc1")) add(l, "fc1.grad", "backward", bwd, N * 4 * C);
    add(l, "residual_grad", "backward", std::nullopt, N * C);
    if (f.fp8("proj")) add(l, "proj.grad", "backward", bwd, N * C);
    if (f.attention()) add(l, "attention_out.grad", "backward", bwd, N * C);
    if (f.fp8("qkv")) add(l, "qkv.grad", "backward", bwd, N * 3 * C);
  }
}

}  // namespace fp8scope::model
