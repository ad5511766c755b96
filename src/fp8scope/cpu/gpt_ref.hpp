#pragma once
// The CPU reference GPT: a deliberately plain double-precision implementation of the same
// model the GPU trains (GPT-2: learned positions, pre-LayerNorm blocks, causal attention,
// 4x GELU(tanh) MLP, final LayerNorm, tied or untied LM head, cross-entropy over the real
// vocabulary only), and of the Llama block (arch llama: rotary positions on q and k, RMSNorm,
// SwiGLU MLP, grouped-query attention, no biases). It is the oracle of the GPU tests and the
// CPU backend of the probes.
#include "fp8scope/cpu/fp8_emulation.hpp"
#include "fp8scope/model/gpt_config.hpp"

#include <vector>

namespace fp8scope::cpu {

class CpuGpt {
 public:
  explicit CpuGpt(const model::GptConfig& cfg);

  // Mean cross-entropy over the B*T positions. Activations are kept for backward().
  double forward(const std::vector<double>& params, const int* inputs, const int* targets, int B, int T);
  // Gradient of the last forward's loss with respect to every parameter (grads is resized
  // and overwritten).
  void backward(const std::vector<double>& params, std::vector<double>& grads);

  const std::vector<double>& logits() const { return logits_; }  // [B][T][padded vocab]
  const model::GptConfig& config() const { return cfg_; }

  // FP8 mode: every linear (qkv, proj, fc1, fc2, lm_head) quantises its input and weight in
  // the forward format and its output gradient in the backward format through `fp8`, which
  // also taps the activations. nullptr: plain double precision. The caller owns `fp8` and
  // calls its end_step() after each backward.
  void attach_fp8(Fp8Emulation* fp8) { fp8_ = fp8; }

 private:
  struct Layer {
    // qkv: after the rotation (Llama), as attention read it; gelu: the MLP activation's output
    // (GELU, or SwiGLU's silu(gate) * up).
    std::vector<double> x_in, ln1, ln1_mean, ln1_rstd, qkv, qkv_att, probs, atty, x_mid, ln2, ln2_mean, ln2_rstd, fc, gelu;
    const double* xq[4];  // the GEMM operands as used (quantised in FP8 mode): qkv, proj, fc1, fc2
    const double* wq[4];
  };
  // y = x W^T + b through the FP8 points when attached; remembers the operands for backward.
  void linear_fwd(int layer, int which, double* out, const double* x, const double* W, const double* b, int N, int IC, int OC,
                  const double** xq, const double** wq);
  void linear_bwd(int layer, int which, double* dx, double* dW, double* db, const double* dy, const double* xq, const double* wq, int N,
                  int IC, int OC);
  void observe(int layer, const char* tensor, const char* pass, const std::vector<double>& v);
  // LayerNorm (GPT-2; mean and rstd kept) or RMSNorm (Llama; rstd kept, no bias).
  void norm_fwd(double* out, double* mean, double* rstd, const double* x, const double* w, const double* b, int N) const;
  void norm_bwd(double* dx, double* dw, double* db, const double* dy, const double* x, const double* w, const double* mean,
                const double* rstd, int N) const;
  Fp8Emulation* fp8_ = nullptr;
  const double* head_xq_ = nullptr;
  const double* head_wq_ = nullptr;
  struct Offsets {
    std::int64_t ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fcproj_w, fcproj_b;
  };
  model::GptConfig cfg_;
  std::int64_t wte_, wpe_, lnf_w_, lnf_b_, lm_head_;
  std::vector<Offsets> off_;
  int B_ = 0, T_ = 0;
  std::vector<int> inputs_, targets_;
  std::vector<Layer> layers_;
  std::vector<double> x_out_, lnf_, lnf_mean_, lnf_rstd_, logits_, probs_;
};

}  // namespace fp8scope::cpu
