#pragma once
// The shape of the transformer, shared by the CPU reference and the GPU model, and the checks
// that reject a config before any work starts. Two architectures are data here, not copies of
// the model: GPT-2 (learned positions, LayerNorm with bias, GELU MLP of 4 d, biases, tied head)
// and Llama (rotary positions, RMSNorm, SwiGLU MLP, grouped-query attention, no biases).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fp8scope::model {

enum class Arch { gpt2, llama };

struct GptConfig {
  Arch arch = Arch::gpt2;
  int vocab = 50257;     // real vocabulary
  int pad_vocab_to = 1;  // pad the embedding/LM head to a multiple of this (1 = no padding)
  int max_seq = 1024;    // rows of the position table (GPT-2), the longest T (both)
  int d_model = 768;
  int n_layer = 12;
  int n_head = 12;
  bool tied = true;  // LM head shares the token embedding
  // Llama: key/value heads (grouped-query attention; 0 = n_head), the MLP's hidden width
  // (0 = 4 d for GPT-2, 8 d / 3 rounded up to a multiple of 64 for Llama) and the rotary base.
  int n_kv_head = 0;
  int ffn = 0;
  double rope_theta = 10000.0;

  int padded_vocab() const { return (vocab + pad_vocab_to - 1) / pad_vocab_to * pad_vocab_to; }
  int head_dim() const { return d_model / n_head; }
  int kv_heads() const { return n_kv_head > 0 ? n_kv_head : n_head; }
  int ffn_width() const { return ffn > 0 ? ffn : arch == Arch::gpt2 ? 4 * d_model : (8 * d_model / 3 + 63) / 64 * 64; }
  // The fused qkv linear's output: q (d), then k and v (kv_heads() x head_dim() each).
  int qkv_width() const { return d_model + 2 * kv_heads() * head_dim(); }
  // fc1's output: the MLP's hidden width (GPT-2), gate and up side by side (Llama: 2 ffn).
  int fc1_width() const { return arch == Arch::llama ? 2 * ffn_width() : ffn_width(); }
  bool llama() const { return arch == Arch::llama; }
};

// "gpt2" / "llama"; nullopt for anything else.
std::optional<Arch> parse_arch(const std::string& s);
const char* to_string(Arch a);

// The model fields of a sweep point or of a record's params (vocab, pad_vocab_to, d_model,
// n_layer, n_head, arch, n_kv_head, ffn, max_seq, tied); an absent field keeps its default.
GptConfig gpt_config_from(const nlohmann::json& params);

// "" when valid, else one line naming the field; seq_len/batch are the run's.
std::string validate(const GptConfig& c, int seq_len, int batch);

// How the GPU model (gpu_model::GpuGpt) runs a config, beside its FP8 recipe.
struct GpuRunOptions {
  // The fused attention kernels (head size 64 or 128, T a multiple of 64, not with
  // fp8_attention) instead of the materialised scores and probabilities.
  bool flash_attention = false;
  // Which fused attention kernels: "automatic" (wgmma_tma where they can run, else mma.sync), or
  // "mma_sync", "wgmma", "wgmma_tma" forced (gpu_model::FlashKernel).
  std::string flash_kernel = "automatic";
  // The fused LM head (lm_head_rows): forward runs the head, the loss and the head's backward
  // over chunks of this many tokens, so the [B*T x V] logits never exist; 0: the whole batch's
  // logits at once.
  int lm_head_chunk = 0;
  // The head writes its logits in BF16 (half the bytes written and read; the loss computes in
  // FP32 from them, as PyTorch's autocast hands BF16 logits to its loss) instead of FP32.
  bool bf16_logits = false;
  // The training step captured as a CUDA graph and replayed (GpuGpt::train_step), instead of
  // launched kernel by kernel from the host.
  bool cuda_graph = true;
  // cuBLASLt algorithms: how many of the heuristic's candidates each GEMM shape times at its
  // first run, keeping the fastest (gpu_model::GemmCache); 1: the heuristic's first, untimed,
  // the same choice on every run (timing noise can pick differently from run to run).
  int gemm_algos = 1;
  // GPT-2: the GELU applied in fc1's cuBLASLt epilogue (GELU_AUX_BIAS: the GEMM writes the
  // activation and keeps the GELU's input as its aux output) and its gradient in fc2's dgrad
  // (DGELU_BGRAD, also the fc1 bias gradient), each where cuBLASLt takes it (else the GELU
  // kernels); in FP8 (model::Fp8ModelConfig::gelu_epilogue) the activation and the gradient are
  // written in FP8. The probes' gelu_cast axis.
  bool gelu_epilogue = false;
  // FP8 under delayed per-tensor scaling: AdamW writes the block linears' FP8 weights for the
  // next step with the scales that step uses, counting the cast's statistics (the same codes and
  // statistics as the cast in forward, which then has nothing to do); false: forward casts them
  // from the FP32 masters at each layer's start. The probes' weight_cast axis.
  bool weights_cast_by_optimizer = true;
  // An FP8 head whose gradient the loss writes: its wgrad transposes that gradient a slice of
  // vocabulary columns at a time (model::lm_head_wgrad_columns); false: all at once (a
  // vocabulary-wide transpose's memory; the tests' reference).
  bool slice_head_wgrad = true;
  // The weight gradients' GEMMs write the block linears' and the head's gradients with beta 0
  // (the head's first chunk; model::gradient_written_whole), timed for their fastest algorithm
  // like every other GEMM, and the step zeroes only the rest; false: every gradient zeroed and
  // every weight gradient added into it (beta 1, the heuristic's first algorithm; the tests'
  // reference).
  bool overwrite_wgrad = true;
};

// Device memory the GPU model allocates to train (cfg, B, T): parameters with their BF16
// copy, gradients and AdamW state; the activations kept for backward; scratch; the LM head's
// logits. Used to refuse a config before any GPU work starts. flash_attention: the fused
// attention keeps a log-sum-exp per row instead of the T x T scores and probabilities.
// logits_rows: the rows of logits held at once (model::lm_head_rows; 0: all B*T);
// bf16_logits: the head writes them in BF16 (2 bytes each, else 4).
double gpu_training_bytes(const GptConfig& c, int B, int T, bool flash_attention = false, std::int64_t logits_rows = 0,
                          bool bf16_logits = false);
// The same by part, for the report's view of where the memory goes.
struct TrainingBytes {
  double parameters = 0;   // FP32 masters, their BF16 copy, gradients, AdamW's two moments
  double activations = 0;  // kept per layer for backward (with the T x T scores when materialised)
  double logits = 0;       // the LM head's FP32 (or BF16) logits and their BF16 gradient (one chunk's when chunked)
  double scratch = 0;      // buffers reused across layers, the final norm's, a fixed reserve
  double total() const { return parameters + activations + logits + scratch; }
};
TrainingBytes gpu_training_bytes_by_part(const GptConfig& c, int B, int T, bool flash_attention = false, std::int64_t logits_rows = 0,
                                         bool bf16_logits = false);

// One parameter tensor of the model, in the order of the flat parameter buffer.
struct ParamTensor {
  std::string name;  // "wte", "h3.qkv_w", ...
  std::vector<std::int64_t> shape;
  std::int64_t offset = 0, size = 0;
  enum class Init { normal, residual_normal, zeros, ones } init = Init::normal;
  bool decay = true;  // weight decay applies (matrices), not to biases and LayerNorm
};

// Every tensor with its offset; the tied LM head has no tensor of its own.
std::vector<ParamTensor> param_layout(const GptConfig& c);
// The block linears' weight tensors, "h<layer>.<name>" in the layout, in linear order (qkv,
// proj, fc1, fc2; model::linear_names).
inline constexpr const char* kBlockWeightNames[4] = {"qkv_w", "proj_w", "fc_w", "fcproj_w"};
std::int64_t param_count(const GptConfig& c);

// GPT-2 initialisation from a seed: N(0, 0.02), residual projections N(0, 0.02/sqrt(2 L)),
// biases 0, LayerNorm weights 1. Padded vocabulary rows are zero. Same values on any machine.
std::vector<float> init_params(const GptConfig& c, std::uint64_t seed);

}  // namespace fp8scope::model
