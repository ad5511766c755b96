#include "fp8scope/model/fp8_plan.hpp"

#include <fmt/format.h>

#include <algorithm>

#include <sstream>
#include <tuple>

namespace fp8scope::model {

std::optional<Fp8Variant> parse_variant(const std::string& s) {
  if (s == "custom") return Fp8Variant::custom;
  if (s == "fused") return Fp8Variant::fused;
  if (s == "fp8_attention") return Fp8Variant::fp8_attention;
  return std::nullopt;
}

std::string to_string(Fp8Variant v) { return v == Fp8Variant::custom ? "custom" : v == Fp8Variant::fused ? "fused" : "fp8_attention"; }

std::int64_t lm_head_rows(int B, int T, int chunk, const Fp8ModelConfig* f) {
  const std::int64_t N = std::int64_t(B) * T;
  const bool chunkable = !f || !f->fp8("lm_head") || f->recipe.scaling == fp8::Scaling::delayed;
  return chunk > 0 && chunk < N && chunkable ? chunk : N;
}

std::string check_gelu_epilogue(const GptConfig& c, int B, int T, const Fp8ModelConfig* fp8) {
  if (c.llama()) return "gelu_cast gemm_epilogue applies GPT-2's GELU; arch llama has a SwiGLU";
  if (!fp8) return "";
  const Fp8ModelConfig& f = *fp8;
  if (!f.fp8("fc1") || !f.fuse_into("fc2"))
    return "gelu_cast gemm_epilogue writes fc2's FP8 input from fc1's GEMM: it needs variant fused (or fp8_attention), scaling "
           "delayed and fc1, fc2 in FP8";
  if (!f.gelu_input_e4m3) return "gelu_cast gemm_epilogue keeps the GELU's input as the GEMM's E4M3 aux output: it needs gelu_input e4m3";
  if (f.overflow != fp8::Overflow::satfinite)
    return "gelu_cast gemm_epilogue converts to FP8 in cuBLASLt, which saturates: saturation nosat cannot hold there";
  if ((std::int64_t(B) * T) % 16 != 0 || c.ffn_width() % 16 != 0)
    return fmt::format(
        "gelu_cast gemm_epilogue transposes fc2's FP8 input in 16-byte pieces: B*T={} and the hidden width {} must be "
        "multiples of 16",
        std::int64_t(B) * T, c.ffn_width());
  return "";
}

// A multiple of 16 keeps every chunk's FP8 copies 16-byte aligned (the GEMMs' rule) with the
// transposed ones' rows a multiple of 16 bytes long.
std::string check_lm_head_chunk(int chunk) {
  if (chunk < 0 || chunk % 16 != 0) return fmt::format("lm_head_chunk={} must be 0 (the whole batch) or a multiple of 16 tokens", chunk);
  return {};
}

namespace {
// The loss writes the FP8 head's gradient itself (GpuGpt::fuses_loss_cast, assuming the Hopper
// GPU its fast path needs).
bool loss_casts_head_gradient(const GptConfig& c, const Fp8ModelConfig& f) {
  return f.fp8("lm_head") && f.recipe.scaling == fp8::Scaling::delayed && cross_entropy_parts_shape_fits(c.padded_vocab());
}
}  // namespace

std::int64_t lm_head_wgrad_columns(const GptConfig& c, int B, int T, int lm_head_chunk, const Fp8ModelConfig& f) {
  const std::int64_t Vp = c.padded_vocab(), R = lm_head_rows(B, T, lm_head_chunk, &f);
  const std::int64_t cap = std::int64_t(B) * T * std::max(c.qkv_width(), c.fc1_width());
  if (!loss_casts_head_gradient(c, f) || R * Vp <= cap || R % 16 || Vp % 16) return Vp;
  auto round_up = [](std::int64_t x, std::int64_t m) { return (x + m - 1) / m * m; };
  for (std::int64_t k = (R * Vp + cap - 1) / cap;; ++k) {
    const std::int64_t even = (Vp + k - 1) / k;
    for (std::int64_t granule : {128, 16})
      if (R * round_up(even, granule) <= cap) return std::min(Vp, round_up(even, granule));
    if (R * 16 > cap) return Vp;  // (not for any model the config checks let through)
  }
}

Fp8Bytes gpu_fp8_bytes_by_part(const GptConfig& c, int B, int T, const Fp8ModelConfig& f, int lm_head_chunk, WeightCopies weights,
                               bool head_sliced) {
  const bool weights_kept_per_layer = weights == WeightCopies::kept_per_layer;
  // AdamW writes the codes only under delayed scaling (the scale known before the step).
  const bool codes_kept = weights == WeightCopies::codes_kept && f.recipe.scaling == fp8::Scaling::delayed;
  const double N = double(B) * T, C = c.d_model, L = c.n_layer, Vp = c.padded_vocab(), F = c.ffn_width();
  const double R = double(lm_head_rows(B, T, lm_head_chunk, &f));  // rows of logits at once
  Fp8Bytes b;
  // Cast input, weight, and the gradient with its transpose (the head's: one chunk of rows; its
  // transpose a slice of columns, lm_head_wgrad_columns), as wide as the widest FP8 linear needs
  // (GpuGpt's f8_x_, f8_w_, f8_dy_, f8_dy_t_); f8_w_ also holds a layer's FP8 block weights (or,
  // codes_kept, their transposes) at once.
  const bool head = f.fp8("lm_head");
  const double widest = std::max({double(c.qkv_width()), double(c.fc1_width()), head ? Vp : 0.0});
  double layer_weights = 0;
  for (const auto& l : linear_shapes(c))
    if (std::string(l.name) != "lm_head" && f.fp8(l.name) && casts_weights_from_master(f) && !weights_kept_per_layer)
      layer_weights += double(l.in) * double(l.out);
  const double layer_grad = N * std::max(c.qkv_width(), c.fc1_width());
  const double head_t_cols = head_sliced ? double(lm_head_wgrad_columns(c, B, T, lm_head_chunk, f)) : Vp;
  b.scratch = N * std::max(C, F) + std::max(widest * C, layer_weights) + std::max(layer_grad, head ? R * Vp : 0.0) +
              std::max(layer_grad, head ? R * head_t_cols : 0.0);
  // Per linear, the input's FP8 transpose kept for wgrad; the weight's transpose kept for dgrad
  // under per-row / per-block scaling; under per-tensor scaling no BF16 copy of a block linear's
  // weight: its FP8 weight and transpose made in f8_w_ a layer at a time, or (codes_kept) its FP8
  // codes kept for AdamW to write and its transpose made in f8_w_.
  for (const auto& l : linear_shapes(c)) {
    if (std::string(l.name) == "lm_head" || !f.fp8(l.name)) continue;  // the head below
    b.kept += L * N * double(l.in);
    if (weights_kept_per_layer)  // the transpose, and under delayed scaling the weight too (cast once a step)
      b.kept += L * double(l.in) * double(l.out) * (f.recipe.scaling == fp8::Scaling::delayed ? 2 : 1);
    else if (fp8::per_block(f.recipe.scaling))
      b.kept += L * double(l.in) * double(l.out);
    if (casts_weights_from_master(f) && !weights_kept_per_layer) b.bf16_weights -= L * 2 * double(l.in) * double(l.out);
    if (casts_weights_from_master(f) && codes_kept) b.kept += L * double(l.in) * double(l.out);
  }
  if (f.fp8("lm_head")) b.kept += N * C + Vp * C;
  // LayerActs: an FP8 linear's BF16 input lives in one shared scratch instead of per layer.
  if (f.fp8("qkv")) b.bf16_inputs -= L * N * C * 2;
  if (f.fp8("fc1")) b.bf16_inputs -= L * N * C * 2;
  if (f.fp8("fc2")) b.bf16_inputs -= L * N * F * 2;
  if (f.fp8("qkv") || f.fp8("fc1")) b.scratch += N * C * 2;
  // The GELU's input kept in E4M3 instead of BF16; fc1's BF16 output (and the GELU's, in
  // place) then lives in the backward's scratch.
  const bool pre8 = keeps_gelu_input_e4m3(c, &f);
  b.gelu_input = pre8 ? -L * N * F : 0.0;
  if (f.fp8("fc2") && !pre8) b.scratch += N * F * 2;
  if (f.attention()) b.scratch += 3 * N * C + double(B) * c.n_head * T * T;
  // The loss writes the FP8 head's gradient itself: no BF16 gradient of the logits.
  b.logits_grad = loss_casts_head_gradient(c, f) ? -R * Vp * 2 : 0.0;
  b.scales = per_block_bytes(c, B, T, f);
  return b;
}

double gpu_fp8_bytes_delta(const GptConfig& c, int B, int T, const Fp8ModelConfig& f, int lm_head_chunk, WeightCopies weights,
                           bool head_sliced) {
  return gpu_fp8_bytes_by_part(c, B, T, f, lm_head_chunk, weights, head_sliced).total();
}

std::vector<LinearShape> linear_shapes(const GptConfig& c) {
  const std::int64_t C = c.d_model;
  const int L = c.n_layer;
  return {{"qkv", C, c.qkv_width(), L},
          {"proj", C, C, L},
          {"fc1", C, c.fc1_width(), L},
          {"fc2", c.ffn_width(), C, L},
          {"lm_head", C, c.padded_vocab(), 1}};
}

namespace {
std::int64_t lt_elements(fp8::ScaleMode m, std::int64_t outer, std::int64_t inner) {
  return fp8::scale_geometry(m, outer, inner).lt_elements();
}
}  // namespace

PerBlockScratch per_block_scratch(const GptConfig& c, int B, int T, const Fp8ModelConfig& f) {
  PerBlockScratch s;
  const std::int64_t N = std::int64_t(B) * T;
  const fp8::ScaleMode am = activation_scale_mode(f.recipe.scaling), wm = weight_scale_mode(f.recipe.scaling);
  s.widest_rows = std::max<std::int64_t>(N, c.d_model);
  s.widest_cols = std::max<std::int64_t>({c.qkv_width(), c.fc1_width(), c.ffn_width(), c.padded_vocab()});
  for (const auto& l : linear_shapes(c)) {
    if (!f.fp8(l.name)) continue;
    s.x_lt = std::max(s.x_lt, lt_elements(am, N, l.in));
    s.w_lt = std::max(s.w_lt, lt_elements(wm, l.out, l.in));
    s.dy_lt = std::max(s.dy_lt, lt_elements(am, N, l.out));
    s.dy_t_lt = std::max(s.dy_t_lt, lt_elements(am, l.out, N));
    for (auto [m, o, k] : {std::tuple{am, N, l.in}, {am, l.in, N}, {wm, l.out, l.in}, {wm, l.in, l.out}, {am, N, l.out}, {am, l.out, N}})
      s.blocks = std::max(s.blocks, fp8::scale_geometry(m, o, k).blocks());
  }
  return s;
}

double per_block_bytes(const GptConfig& c, int B, int T, const Fp8ModelConfig& f) {
  if (!fp8::per_block(f.recipe.scaling)) return 0.0;
  const std::int64_t N = std::int64_t(B) * T;
  const fp8::ScaleMode am = activation_scale_mode(f.recipe.scaling), wm = weight_scale_mode(f.recipe.scaling);
  // Per FP8 linear, the scale tensors of the copies kept for backward (the input's transpose
  // for wgrad, the weight's for dgrad); the scratch scale tensors; the widest cast's row-wise
  // amaxes; the block amaxes of a cast's two copies, their sorted copy and the radix sort's own
  // buffer (taps).
  double saved = 0;
  for (const auto& l : linear_shapes(c))
    if (f.fp8(l.name)) saved += l.layers * 4.0 * double(lt_elements(am, l.in, N) + lt_elements(wm, l.in, l.out));
  const PerBlockScratch s = per_block_scratch(c, B, T, f);
  const double scratch = 4.0 * double(s.x_lt + s.w_lt + s.dy_lt + s.dy_t_lt + s.widest_rows + s.widest_cols);
  return saved + scratch + 4 * 4.0 * double(s.blocks);
}

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

fp8::ScaleMode activation_scale_mode(fp8::Scaling s) {
  return s == fp8::Scaling::rowwise ? fp8::ScaleMode::outer_vec
         : s == fp8::Scaling::block ? fp8::ScaleMode::vec128
                                    : fp8::ScaleMode::tensor;
}
fp8::ScaleMode weight_scale_mode(fp8::Scaling s) {
  return s == fp8::Scaling::rowwise ? fp8::ScaleMode::outer_vec
         : s == fp8::Scaling::block ? fp8::ScaleMode::blk128
                                    : fp8::ScaleMode::tensor;
}

void TapPlan::add(int layer, const std::string& tensor, const std::string& pass, std::optional<fp8::Format> f, std::int64_t n,
                  fp8::ScaleGeometry g) {
  index_[{layer, tensor}] = int(slots_.size());
  slots_.push_back({layer, tensor, pass, f, n, g});
}

int TapPlan::index(int layer, const std::string& tensor) const {
  auto it = index_.find({layer, tensor});
  return it == index_.end() ? -1 : it->second;
}

// The order is the order the model runs them, forward then backward, so the first slot with
// a non-finite value is the NaN onset.
TapPlan::TapPlan(const GptConfig& cfg, int B, int T, const Fp8ModelConfig& f, bool flash_attention) {
  const std::int64_t N = std::int64_t(B) * T, C = cfg.d_model, Vp = cfg.padded_vocab(), BH = std::int64_t(B) * cfg.n_head;
  const std::int64_t QW = cfg.qkv_width(), FW = cfg.fc1_width(), F = cfg.ffn_width();
  const auto fwd = fp8::format_for(f.recipe.format, fp8::Pass::forward);
  const auto bwd = fp8::format_for(f.recipe.format, fp8::Pass::backward);
  // Per-row / per-block scaling quantises each operand once per GEMM that reads it, along that
  // GEMM's reduction: the input along its features (fprop) and along the tokens (input_t,
  // wgrad), the weight along its input features (fprop) and, row-wise, along its output
  // features (weight_t, dgrad; 128x128 blocks serve both), the gradient along the output
  // features (dgrad) and along the tokens (grad_t, wgrad). The names are the CPU emulation's.
  const bool pb = fp8::per_block(f.recipe.scaling);
  const fp8::ScaleMode am = activation_scale_mode(f.recipe.scaling), wm = weight_scale_mode(f.recipe.scaling);
  auto geo = [&](fp8::ScaleMode m, std::int64_t outer, std::int64_t inner) {
    return pb ? fp8::scale_geometry(m, outer, inner) : fp8::ScaleGeometry{};
  };
  auto linear = [&](int l, const std::string& name, std::int64_t IC, std::int64_t OC) {
    if (!f.fp8(name)) return;
    add(l, name + ".input", "forward", fwd, N * IC, geo(am, N, IC));
    if (pb) add(l, name + ".input_t", "forward", fwd, N * IC, geo(am, IC, N));
    add(l, name + ".weight", "forward", fwd, OC * IC, geo(wm, OC, IC));
    if (f.recipe.scaling == fp8::Scaling::rowwise) add(l, name + ".weight_t", "forward", fwd, OC * IC, geo(wm, IC, OC));
  };
  auto grad = [&](int l, const std::string& name, std::int64_t OC) {
    if (!f.fp8(name)) return;
    add(l, name + ".grad", "backward", bwd, N * OC, geo(am, N, OC));
    if (pb) add(l, name + ".grad_t", "backward", bwd, N * OC, geo(am, OC, N));
  };
  for (int l = 0; l < cfg.n_layer; ++l) {
    linear(l, "qkv", C, QW);
    add(l, "qkv", "forward", std::nullopt, N * QW);
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
    // (proj's and fc2's outputs are added to the residual stream in their GEMMs' epilogue: the
    // sums are tapped, residual and block_out)
    add(l, "residual", "forward", std::nullopt, N * C);
    linear(l, "fc1", C, FW);
    if (!gelu_in_epilogue(cfg, &f)) add(l, "fc1_out", "forward", std::nullopt, N * FW);  // else never in BF16
    // The fused GELU writes only the FP8 tensor; its tap is fc2.input. Llama: SwiGLU's output.
    if (!f.fuse_into("fc2")) add(l, cfg.llama() ? "swiglu_out" : "gelu_out", "forward", std::nullopt, N * F);
    linear(l, "fc2", F, C);
    add(l, "block_out", "forward", std::nullopt, N * C);
  }
  linear(-1, "lm_head", C, Vp);
  add(-1, "logits", "forward", std::nullopt, N * Vp);
  add(-1, "loss", "forward", std::nullopt, N);
  grad(-1, "lm_head", Vp);
  for (int l = cfg.n_layer - 1; l >= 0; --l) {
    grad(l, "fc2", C);
    grad(l, "fc1", FW);
    add(l, "residual_grad", "backward", std::nullopt, N * C);
    grad(l, "proj", C);
    if (f.attention()) add(l, "attention_out.grad", "backward", bwd, N * C);
    grad(l, "qkv", QW);
  }
}

}  // namespace fp8scope::model
