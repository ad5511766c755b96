#pragma once
// The shape of a GPT-2 style model, shared by the CPU reference and the GPU model, and the
// checks that reject a config before any work starts.
#include <cstdint>
#include <string>
#include <vector>

namespace fp8scope::model {

struct GptConfig {
  int vocab = 50257;     // real vocabulary
  int pad_vocab_to = 1;  // pad the embedding/LM head to a multiple of this (1 = no padding)
  int max_seq = 1024;    // rows of the position table
  int d_model = 768;
  int n_layer = 12;
  int n_head = 12;
  bool tied = true;  // LM head shares the token embedding

  int padded_vocab() const { return (vocab + pad_vocab_to - 1) / pad_vocab_to * pad_vocab_to; }
  int head_dim() const { return d_model / n_head; }
};

// "" when valid, else one line naming the field; seq_len/batch are the run's.
std::string validate(const GptConfig& c, int seq_len, int batch);

// Device memory the GPU model allocates to train (cfg, B, T): parameters with their BF16
// copy, gradients and AdamW state; the activations kept for backward; scratch; the LM head's
// logits. Used to refuse a config before any GPU work starts. flash_attention: the fused
// attention keeps a log-sum-exp per row instead of the T x T scores and probabilities.
double gpu_training_bytes(const GptConfig& c, int B, int T, bool flash_attention = false);

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
std::int64_t param_count(const GptConfig& c);

// GPT-2 initialisation from a seed: N(0, 0.02), residual projections N(0, 0.02/sqrt(2 L)),
// biases 0, LayerNorm weights 1. Padded vocabulary rows are zero. Same values on any machine.
std::vector<float> init_params(const GptConfig& c, std::uint64_t seed);

}  // namespace fp8scope::model
