#include "fp8scope/model/gpt_config.hpp"

#include <fmt/format.h>

#include <algorithm>

#include <cmath>
#include <random>

namespace fp8scope::model {

std::optional<Arch> parse_arch(const std::string& s) {
  if (s == "gpt2") return Arch::gpt2;
  if (s == "llama") return Arch::llama;
  return std::nullopt;
}

const char* to_string(Arch a) { return a == Arch::llama ? "llama" : "gpt2"; }

GptConfig gpt_config_from(const nlohmann::json& p) {
  GptConfig c;
  c.vocab = p.value("vocab", c.vocab);
  c.pad_vocab_to = p.value("pad_vocab_to", c.pad_vocab_to);
  c.d_model = p.value("d_model", c.d_model);
  c.n_layer = p.value("n_layer", c.n_layer);
  c.n_head = p.value("n_head", c.n_head);
  c.arch = parse_arch(p.value("arch", std::string(to_string(c.arch)))).value_or(Arch::gpt2);
  c.n_kv_head = p.value("n_kv_head", c.n_kv_head);
  c.ffn = p.value("ffn", c.ffn);
  c.max_seq = p.value("max_seq", c.max_seq);
  c.tied = p.value("tied", c.tied);
  return c;
}

std::string validate(const GptConfig& c, int seq_len, int batch) {
  if (c.vocab < 2) return fmt::format("vocab={} must be at least 2", c.vocab);
  if (c.pad_vocab_to < 1) return fmt::format("pad_vocab_to={} must be at least 1", c.pad_vocab_to);
  if (c.d_model < 1 || c.n_layer < 1 || c.n_head < 1) return "d_model, n_layer and n_head must be positive";
  if (c.d_model % c.n_head != 0) return fmt::format("n_head={} does not divide d_model={}", c.n_head, c.d_model);
  if (c.n_kv_head < 0 || c.kv_heads() > c.n_head || c.n_head % c.kv_heads() != 0)
    return fmt::format("n_kv_head={} does not divide n_head={}", c.n_kv_head, c.n_head);
  if (c.arch == Arch::gpt2 && c.n_kv_head != 0 && c.n_kv_head != c.n_head)
    return fmt::format("n_kv_head={}: grouped-query attention is for arch llama (gpt2 has n_kv_head = n_head)", c.n_kv_head);
  if (c.llama() && c.head_dim() % 2 != 0)
    return fmt::format("head size {} is odd: rotary positions rotate pairs of channels", c.head_dim());
  if (c.ffn < 0) return fmt::format("ffn={} must be positive (0: the architecture's default)", c.ffn);
  if (!c.llama() && c.ffn != 0 && c.ffn != 4 * c.d_model)
    return fmt::format("ffn={}: GPT-2's MLP is 4 d_model = {} wide (other widths are for arch llama)", c.ffn, 4 * c.d_model);
  if (seq_len < 1 || batch < 1) return "seq_len and batch must be positive";
  if (seq_len > c.max_seq) return fmt::format("seq_len={} is larger than the position table (max_seq={})", seq_len, c.max_seq);
  return {};
}

double gpu_training_bytes(const GptConfig& c, int B, int T, bool flash_attention, std::int64_t logits_rows, bool bf16_logits) {
  return gpu_training_bytes_by_part(c, B, T, flash_attention, logits_rows, bf16_logits).total();
}

TrainingBytes gpu_training_bytes_by_part(const GptConfig& c, int B, int T, bool flash_attention, std::int64_t logits_rows,
                                         bool bf16_logits) {
  const double P = double(param_count(c)), N = double(B) * T, C = c.d_model, L = c.n_layer, Vp = c.padded_vocab();
  const double att = flash_attention ? 0.0 : double(B) * c.n_head * T * T;
  const double lse = flash_attention ? double(B) * c.n_head * T * 4 : 0.0;
  const double params = P * (4 + 2 + 4 + 4 + 4);  // master, bf16, grad, m, v
  // The linears' widths beyond GPT-2's 3C (qkv) and 4C (fc1's output, fc2's input): Llama's q
  // with fewer k/v heads, gate and up, its hidden width (GpuGpt allocates by them).
  const double QW = c.qkv_width(), F = c.ffn_width(), FW = c.fc1_width();
  const double per_layer = N * C * 2 * (1 + 3 + 1 + 1 + 1 + 4 + 4 + 1) + N * 2 * ((QW - 3 * C) + (FW - 4 * C) + (F - 4 * C)) + att * 2 +
                           N * 4 * 4 + lse;  // kept activations
  // Llama also keeps fc1's output gradient beside the activation's, and the rotary table.
  const double llama = c.llama() ? N * FW * 2 + double(T) * c.head_dim() * 4 : 0.0;
  // (11 BF16 [N][C] buffers: 12 before the residual adds moved into the GEMMs' epilogue)
  const double scratch = att * (4 + 2) + N * C * 2 * 11 + N * 4 * C * 2 + N * 2 * ((F - 4 * C) + (QW - 3 * C)) + llama + lse;
  TrainingBytes b;
  b.parameters = params;
  b.activations = L * per_layer;
  b.logits = (logits_rows > 0 ? double(logits_rows) : N) * Vp * ((bf16_logits ? 2 : 4) + 2);
  b.scratch = scratch + N * C * 2 * 2 + double(32u << 20);  // the final norm's output and its gradient
  return b;
}

std::vector<ParamTensor> param_layout(const GptConfig& c) {
  using I = ParamTensor::Init;
  const std::int64_t C = c.d_model, V = c.padded_vocab();
  std::vector<ParamTensor> t;
  auto add = [&](std::string name, std::vector<std::int64_t> shape, I init, bool decay) {
    ParamTensor p{std::move(name), std::move(shape), 0, 1, init, decay};
    for (auto s : p.shape) p.size *= s;
    p.offset = t.empty() ? 0 : t.back().offset + t.back().size;
    t.push_back(std::move(p));
  };
  add("wte", {V, C}, I::normal, true);
  if (c.llama()) {
    // Llama: no position table (rotary), RMSNorm weights only, q/k/v fused (k and v of the
    // kv heads), gate and up fused into fc (2 ffn rows: gate first), no biases, own head.
    const std::int64_t F = c.ffn_width();
    for (int l = 0; l < c.n_layer; ++l) {
      const std::string h = fmt::format("h{}.", l);
      add(h + "ln1_w", {C}, I::ones, false);
      add(h + "qkv_w", {c.qkv_width(), C}, I::normal, true);
      add(h + "proj_w", {C, C}, I::residual_normal, true);
      add(h + "ln2_w", {C}, I::ones, false);
      add(h + "fc_w", {2 * F, C}, I::normal, true);
      add(h + "fcproj_w", {C, F}, I::residual_normal, true);
    }
    add("lnf_w", {C}, I::ones, false);
    if (!c.tied) add("lm_head", {V, C}, I::normal, true);
    return t;
  }
  add("wpe", {c.max_seq, C}, I::normal, true);
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string h = fmt::format("h{}.", l);
    add(h + "ln1_w", {C}, I::ones, false);
    add(h + "ln1_b", {C}, I::zeros, false);
    add(h + "qkv_w", {3 * C, C}, I::normal, true);
    add(h + "qkv_b", {3 * C}, I::zeros, false);
    add(h + "proj_w", {C, C}, I::residual_normal, true);
    add(h + "proj_b", {C}, I::zeros, false);
    add(h + "ln2_w", {C}, I::ones, false);
    add(h + "ln2_b", {C}, I::zeros, false);
    add(h + "fc_w", {4 * C, C}, I::normal, true);
    add(h + "fc_b", {4 * C}, I::zeros, false);
    add(h + "fcproj_w", {C, 4 * C}, I::residual_normal, true);
    add(h + "fcproj_b", {C}, I::zeros, false);
  }
  add("lnf_w", {C}, I::ones, false);
  add("lnf_b", {C}, I::zeros, false);
  if (!c.tied) add("lm_head", {V, C}, I::normal, true);
  return t;
}

std::int64_t param_count(const GptConfig& c) {
  auto t = param_layout(c);
  return t.back().offset + t.back().size;
}

std::vector<float> init_params(const GptConfig& c, std::uint64_t seed) {
  std::vector<float> p(std::size_t(param_count(c)), 0.0f);
  std::mt19937_64 rng(seed);
  const double res_std = 0.02 / std::sqrt(2.0 * c.n_layer);
  for (const auto& t : param_layout(c)) {
    std::normal_distribution<double> normal(0.0, t.init == ParamTensor::Init::residual_normal ? res_std : 0.02);
    for (std::int64_t i = 0; i < t.size; ++i) {
      float v = 0.0f;
      switch (t.init) {
        case ParamTensor::Init::normal:
        case ParamTensor::Init::residual_normal: v = float(normal(rng)); break;
        case ParamTensor::Init::zeros: v = 0.0f; break;
        case ParamTensor::Init::ones: v = 1.0f; break;
      }
      p[std::size_t(t.offset + i)] = v;
    }
    // Padded vocabulary rows stay zero: they never receive a gradient either.
    if (t.name == "wte" || t.name == "lm_head")
      for (std::int64_t i = std::int64_t(c.vocab) * c.d_model; i < t.size; ++i) p[std::size_t(t.offset + i)] = 0.0f;
  }
  return p;
}

}  // namespace fp8scope::model
