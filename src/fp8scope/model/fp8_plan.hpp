#pragma once
// What the GPU model does in FP8 and what it taps: the FP8 settings of a run and the list of
// tapped tensors (slots) in execution order. Host-only, so the plan is tested without a GPU.
#include "fp8scope/fp8/block_scale.hpp"
#include "fp8scope/fp8/recipe.hpp"
#include "fp8scope/model/gpt_config.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace fp8scope::model {

// The seed's three models: custom (BF16 LayerNorm, then an FP8 linear), fused (LayerNorm and
// GELU write the FP8 tensor of the next GEMM), fp8_attention (fused, plus QK^T and
// probabilities-times-V in FP8).
enum class Fp8Variant { custom, fused, fp8_attention };
std::optional<Fp8Variant> parse_variant(const std::string& s);
std::string to_string(Fp8Variant v);

inline const std::vector<std::string>& linear_names() {
  static const std::vector<std::string> names = {"qkv", "proj", "fc1", "fc2", "lm_head"};
  return names;
}

// The linears' input and output features, in linear_names() order: qkv (q, then k and v of
// the k/v heads), proj, fc1 (the hidden width, or gate and up), fc2, the LM head (layers: 1).
struct LinearShape {
  const char* name;
  std::int64_t in, out;
  int layers;
};
std::vector<LinearShape> linear_shapes(const GptConfig& c);

struct Fp8ModelConfig {
  fp8::RecipeConfig recipe;
  fp8::Overflow overflow = fp8::Overflow::satfinite;
  Fp8Variant variant = Fp8Variant::custom;
  std::set<std::string> linears = {"qkv", "proj", "fc1", "fc2", "lm_head"};  // which GEMMs run in FP8
  // Hopper fast accumulation per GEMM role; TransformerEngine's default: fprop on, dgrad and
  // wgrad off.
  bool fast_accum_fprop = true, fast_accum_dgrad = false, fast_accum_wgrad = false;
  // Taps are copied to the host every tap_interval steps (and at step 0); 0 = never. The
  // quantised tensors' statistics feed the recipe every step regardless.
  int tap_interval = 1;
  // Data parallelism: reduce every amax across the ranks before the recipe uses it (as
  // TransformerEngine's reduce_amax), so all ranks cast with the same scales.
  bool reduce_amax = true;
  // GPT-2's GELU input (fc1's output), which the GELU's backward reads, kept from forward to
  // backward in E4M3 (1 byte) instead of BF16, as COAT keeps non-linear layers' inputs in FP8.
  // Unit scale, saturating, so no amax is needed: |x| >= 448 clamps where GELU' is already 0 or
  // 1 in float; E4M3 rounds by at most 2^-4 |x| (2^-10 below 2^-6), and |x GELU''(x)| <= 0.33,
  // so GELU' moves by at most 0.021 over its range -0.13..1.13. Llama's SwiGLU input (whose
  // up half enters the gradient linearly) stays BF16.
  bool gelu_input_e4m3 = true;
  // The FP8 side of gelu_cast gemm_epilogue (model::GpuRunOptions::gelu_epilogue, set from the
  // same axis; the GPU model refuses the two disagreeing). GPT-2, fused, delayed scaling: fc1's
  // cuBLASLt GEMM applies the GELU in its epilogue (GELU_AUX_BIAS) and writes fc2's E4M3 input
  // (scaled, its amax by cuBLASLt) and the GELU's input in E4M3 at unit scale (its aux), so no
  // BF16 fc1 output reaches memory; a transpose of the codes writes the wgrad copy. The backward
  // likewise where cuBLASLt takes FP8 DGELU_BGRAD: fc2's dgrad writes fc1's FP8 gradient and bias
  // gradient (GpuGpt::linear_backward). Otherwise (false) fc1 writes BF16 and cast kernels apply
  // the GELU and its gradient. check_gelu_epilogue says what it needs; the tap plan has no
  // fc1_out then.
  bool gelu_epilogue = false;
  // Test hook: (layer, tensor) -> factor on that tensor's scale, to plant overflows.
  std::map<std::pair<int, std::string>, float> planted_scale;

  bool fp8(const std::string& linear) const { return linears.count(linear) > 0; }
  // The fused variants write FP8 from the LayerNorm/GELU only under delayed scaling: current
  // scaling needs the tensor's amax before its cast, so it takes the unfused path.
  bool fuse_into(const std::string& linear) const {
    return variant != Fp8Variant::custom && recipe.scaling == fp8::Scaling::delayed && fp8(linear);
  }
  bool attention() const { return variant == Fp8Variant::fp8_attention; }
};

// Whether the FP8 model casts its FP8 block linears' weights (qkv, proj, fc1, fc2) from the FP32
// master weights, keeping no BF16 copy of them (2 of a parameter's 18 bytes): per-tensor
// scaling. Per-row / per-block casts read the BF16 copy.
inline bool casts_weights_from_master(const Fp8ModelConfig& f) { return !fp8::per_block(f.recipe.scaling); }

// Whether a model keeps its GELU input in E4M3 (f: nullptr for BF16): GPT-2 in FP8 with
// gelu_input_e4m3.
inline bool keeps_gelu_input_e4m3(const GptConfig& c, const Fp8ModelConfig* f) { return f && f->gelu_input_e4m3 && !c.llama(); }

// Whether fc1's FP8 GEMM applies the GELU (gelu_epilogue); and for a run that asks for
// gelu_cast gemm_epilogue, "" or the line that refuses it for this model and recipe (fp8:
// nullptr for BF16): GPT-2; in FP8 the fused variant under delayed scaling, fc1 and fc2 in FP8,
// the GELU input in E4M3, saturating casts, B*T and the hidden width multiples of 16.
inline bool gelu_in_epilogue(const GptConfig& c, const Fp8ModelConfig* f) { return f && f->gelu_epilogue && !c.llama(); }
std::string check_gelu_epilogue(const GptConfig& c, int B, int T, const Fp8ModelConfig* fp8);

// The loss kernel's fast path (a row split over a cluster of kCrossEntropyParts blocks, each
// holding its part of the FP32 logits in shared memory; a Hopper GPU's clusters), which is also
// the only one that writes the FP8 LM head's gradient itself: the shapes it takes.
constexpr int kCrossEntropyParts = 4;
inline bool cross_entropy_parts_shape_fits(std::int64_t Vp) {
  return Vp % (8 * kCrossEntropyParts) == 0 && Vp / kCrossEntropyParts * 4 <= 200 * 1024;
}

// The fused LM head (GpuGpt): the head's forward, the loss and the head's backward run one
// chunk of `chunk` tokens after another, so only that chunk's logits and their gradient
// exist. The rows of logits the model holds at once: `chunk` where 0 < chunk < B*T and the
// head's casts need nothing of the whole gradient first (a BF16 head, or an FP8 head under
// delayed scaling, whose scales are last step's; current scaling measures the whole tensor
// before its cast, per-row / per-block scaling scales the wgrad's copy along the tokens), else
// B*T. f: nullptr for BF16. check_lm_head_chunk: "" or the line that refuses a chunk.
std::int64_t lm_head_rows(int B, int T, int chunk, const Fp8ModelConfig* f);
std::string check_lm_head_chunk(int chunk);

// Where the loss writes the FP8 head's gradient (delayed scaling), the head's weight gradient
// transposes it a slice of vocabulary columns at a time, one wgrad GEMM a slice, each slice no
// larger than the widest layer gradient's transpose (B*T x the qkv or fc1 width), so that the
// transposed gradient's scratch is sized by the layers instead of the vocabulary (GPT-2 124M,
// chunks of 4096 tokens: 50 MB instead of 206). The slice's columns: the padded vocabulary split
// into the fewest equal slices that fit, rounded up to a multiple of 128 (of 16 where 128 does
// not fit); the whole padded vocabulary where it fits, where the loss does not write the FP8
// gradient, or where the head's rows or columns are not multiples of 16 (the transpose's rule).
std::int64_t lm_head_wgrad_columns(const GptConfig& c, int B, int T, int lm_head_chunk, const Fp8ModelConfig& f);

// How the GPU model holds the FP8 block weights under per-tensor scaling, by when it ran:
// kept_per_layer (records without a gelu_input field): each FP8 block linear kept its FP8
// weight's transpose per layer, and under delayed scaling the FP8 weight too, beside its BF16
// copy; cast_per_layer (records without a weight_cast field): no BF16 copy, one layer's FP8
// weights cast from the FP32 masters at a time into scratch (since then: weight_cast forward,
// and current scaling); codes_kept (weight_cast optimizer, under delayed scaling only, else as
// cast_per_layer): no BF16 copy, every layer's FP8 weights kept for AdamW to write and one
// layer's transposes in scratch.
enum class WeightCopies { kept_per_layer, cast_per_layer, codes_kept };
// Device memory FP8 adds to gpu_training_bytes (negative where it saves): the FP8 copies and
// transposes of the GEMM operands (the transposes kept for backward, the scratch of the
// current GEMM) against the BF16 inputs of the FP8 linears that then need not be kept per
// layer, the GELU's input kept in E4M3 instead of BF16, the BF16 copies of the block weights
// cast from the FP32 master (casts_weights_from_master), and the logits' BF16 gradient where
// the loss writes the FP8 head's gradient itself (delayed scaling, on a Hopper GPU).
// lm_head_chunk: as lm_head_rows takes it; weights: as the run holds its FP8 block weights.
// head_sliced: the head's wgrad transposes its gradient a slice at a time (lm_head_wgrad_columns;
// records from before it made the whole transpose at once).
double gpu_fp8_bytes_delta(const GptConfig& c, int B, int T, const Fp8ModelConfig& f, int lm_head_chunk = 0,
                           WeightCopies weights = WeightCopies::codes_kept, bool head_sliced = true);
// The same by part (bytes; what FP8 saves is negative).
struct Fp8Bytes {
  double kept = 0;          // FP8 copies kept: inputs' transposes, weights' (per-block scaling, the head, codes_kept)
  double scratch = 0;       // the current GEMM's FP8 operands and the BF16 inputs before their casts, shared by all layers
  double bf16_inputs = 0;   // the FP8 linears' BF16 inputs not kept per layer (-)
  double gelu_input = 0;    // the GELU's input kept in E4M3 instead of BF16 (-)
  double bf16_weights = 0;  // the block weights' BF16 copies not kept (-; casts_weights_from_master)
  double logits_grad = 0;   // the logits' BF16 gradient not made: the loss writes the FP8 head's gradient (-)
  double scales = 0;        // per-row / per-block scale tensors and their taps' scratch (per_block_bytes)
  double total() const { return kept + scratch + bf16_inputs + gelu_input + bf16_weights + logits_grad + scales; }
};
Fp8Bytes gpu_fp8_bytes_by_part(const GptConfig& c, int B, int T, const Fp8ModelConfig& f, int lm_head_chunk = 0,
                               WeightCopies weights = WeightCopies::codes_kept, bool head_sliced = true);
// The part of it per-row / per-block scaling adds (0 for per-tensor scaling): scale tensors
// kept for backward and of the scratch copies, the row-wise amaxes, the taps' block amaxes.
double per_block_bytes(const GptConfig& c, int B, int T, const Fp8ModelConfig& f);

// The GPU model's scratch for per-row / per-block casts (what it allocates and per_block_bytes
// counts): the largest scale tensor, in floats, of each scratch copy of the current GEMM (its
// input, weight, output gradient and that gradient's transpose); the widest cast (rows x cols,
// whose row-wise amaxes need rows + cols floats); the most blocks one FP8 copy has.
struct PerBlockScratch {
  std::int64_t x_lt = 1, w_lt = 1, dy_lt = 1, dy_t_lt = 1;
  std::int64_t widest_rows = 0, widest_cols = 0;
  std::int64_t blocks = 1;
};
PerBlockScratch per_block_scratch(const GptConfig& c, int B, int T, const Fp8ModelConfig& f);

// "" or one line naming what is wrong with a list of FP8 linears ("qkv,fc1", "all", "none").
std::string parse_linears(const std::string& s, std::set<std::string>& out);

struct TapSlot {
  int layer;  // -1: outside the blocks
  std::string tensor, pass;
  std::optional<fp8::Format> format;  // quantised tensors: the FP8 format; observed: none
  std::int64_t elements;
  // Per-row / per-block scaling: the GEMM operand's scale geometry (mode tensor elsewhere).
  fp8::ScaleGeometry geometry{};
};

// The scale modes of scaling rowwise / block for activations and gradients (per row, or 1x128
// blocks along the reduction) and for weights (per row, or 128x128 blocks).
fp8::ScaleMode activation_scale_mode(fp8::Scaling s);
fp8::ScaleMode weight_scale_mode(fp8::Scaling s);

class TapPlan {
 public:
  // flash_attention: the fused attention keeps no scores or probabilities to tap.
  TapPlan(const GptConfig& cfg, int B, int T, const Fp8ModelConfig& f, bool flash_attention = false);
  const std::vector<TapSlot>& slots() const { return slots_; }
  // The slot of (layer, tensor), or -1 when this run does not have it.
  int index(int layer, const std::string& tensor) const;

 private:
  void add(int layer, const std::string& tensor, const std::string& pass, std::optional<fp8::Format> f, std::int64_t n,
           fp8::ScaleGeometry g = {});
  std::vector<TapSlot> slots_;
  std::map<std::pair<int, std::string>, int> index_;
};

}  // namespace fp8scope::model
