#include "fp8scope/model/fp8_fields.hpp"

namespace fp8scope::model {
using core::json;
using K = core::ParamSpec::Kind;

std::vector<core::ParamSpec> fp8_axes() {
  return {
      {"format", K::string, "hybrid", {"e4m3", "hybrid"}, 0, 0, "hybrid: E4M3 forward, E5M2 gradients"},
      {"margin", K::integer, 0, {}, -32, 32, "scale = fp8_max / amax / 2^margin"},
      {"amax_history_len", K::integer, 16, {}, 1, 1 << 16, ""},
      {"amax_compute_algo", K::string, "max", {"max", "most_recent"}, 0, 0, ""},
      {"scaling",
       K::string,
       "delayed",
       {"delayed", "current", "rowwise", "block"},
       0,
       0,
       "delayed: per-tensor scale from the amax history; current: per tensor from this step's amax; rowwise: one scale per row "
       "of each GEMM operand; block: 1x128 blocks (activations, gradients), 128x128 (weights), each GEMM's operands scaled "
       "along its own reduction dimension"},
      {"block_scales",
       K::string,
       "fp32",
       {"fp32", "pow2"},
       0,
       0,
       "rowwise / block scaling: each scale the FP32 ratio amax / fp8_max, or that rounded up to a power of two as "
       "TransformerEngine's Float8BlockScaling does by default (codes x * 2^-k rounded once; no value saturates)"},
      {"saturation", K::string, "satfinite", {"satfinite", "nosat"}, 0, 0, "overflow clamps, or becomes NaN/inf"},
      {"variant",
       K::string,
       "custom",
       {"custom", "fused", "fp8_attention"},
       0,
       0,
       "custom: BF16 LayerNorm then FP8 linear; fused: LayerNorm/GELU write FP8 (same numerics on the CPU); "
       "fp8_attention: also Q, K, V, probabilities and the attention gradient in FP8"},
      {"fp8_linears", K::string, "all", {}, 0, 0, "linears in FP8: all, none, or a list like qkv,proj,fc1,fc2,lm_head"},
      {"fast_accum",
       K::string,
       "fprop",
       {"fprop", "all", "none"},
       0,
       0,
       "Hopper fast accumulation: fprop only (TransformerEngine's choice), every FP8 GEMM, or none"},
      {"gelu_input",
       K::string,
       "e4m3",
       {"e4m3", "bf16"},
       0,
       0,
       "GPT-2: the GELU's input kept for its backward in E4M3 at unit scale (half the bytes of BF16; GELU' moves by at most 0.021) "
       "or in BF16; Llama's SwiGLU input stays BF16"},
      {"tap_interval", K::integer, 1, {}, 0, 1e7, "GPU: copy every tensor's taps each k-th step (0: quantised tensors only)"},
      {"reduce_amax", K::boolean, true, {}, 0, 0, "data-parallel runs: amax max-reduced across ranks before the recipe update"},
  };
}

std::string check_fp8_point(const json& p) {
  std::set<std::string> linears;
  if (auto e = parse_linears(p.value("fp8_linears", std::string("all")), linears); !e.empty()) return "fp8_linears: " + e;
  return "";
}

namespace {
fp8::RecipeConfig recipe_from(const json& p) {
  fp8::RecipeConfig r;
  r.format = p["format"] == "e4m3" ? fp8::RecipeFormat::e4m3 : fp8::RecipeFormat::hybrid;
  r.margin = p["margin"];
  r.amax_history_len = p["amax_history_len"];
  r.amax_algo = p["amax_compute_algo"] == "max" ? fp8::AmaxAlgo::max : fp8::AmaxAlgo::most_recent;
  const std::string sc = p["scaling"];
  r.scaling = sc == "delayed"   ? fp8::Scaling::delayed
              : sc == "current" ? fp8::Scaling::current
              : sc == "rowwise" ? fp8::Scaling::rowwise
                                : fp8::Scaling::block;
  r.pow2_block_scales = pow2_block_scales(p);
  return r;
}
}  // namespace

bool pow2_block_scales(const json& p) { return p.value("block_scales", std::string("fp32")) == "pow2"; }

Fp8ModelConfig fp8_config_from(const json& p) {
  Fp8ModelConfig f;
  f.recipe = recipe_from(p);
  f.overflow = p["saturation"] == "satfinite" ? fp8::Overflow::satfinite : fp8::Overflow::nosat;
  f.variant = parse_variant(p["variant"]).value_or(Fp8Variant::custom);
  parse_linears(p.value("fp8_linears", std::string("all")), f.linears);
  const std::string fa = p.value("fast_accum", std::string("fprop"));
  f.fast_accum_fprop = fa != "none";
  f.fast_accum_dgrad = f.fast_accum_wgrad = fa == "all";
  // (A record made before the gelu_input axis kept it in BF16.)
  f.gelu_input_e4m3 = p.value("gelu_input", std::string("bf16")) == "e4m3";
  f.gelu_epilogue = p.value("gelu_cast", std::string("kernel")) == "gemm_epilogue";
  f.tap_interval = p.value("tap_interval", 1);
  f.reduce_amax = p.value("reduce_amax", true);
  return f;
}

}  // namespace fp8scope::model
