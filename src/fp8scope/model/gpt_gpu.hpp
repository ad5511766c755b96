#pragma once
// The GPU GPT in BF16: the same model as cpu::CpuGpt (same parameter layout), trained with
// FP32 master weights, BF16 activations and weight copies, cuBLASLt GEMMs and our kernels.
// CUDA builds only.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/model/gemm_cache.hpp"
#include "fp8scope/model/gpt_config.hpp"
#include "fp8scope/model/kernels.cuh"

#include <map>
#include <string>
#include <vector>

namespace fp8scope::model {

struct AdamWSettings {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f;
};

class GpuGpt {
 public:
  GpuGpt(const GptConfig& cfg, int B, int T, cudaStream_t stream);

  void set_params(const std::vector<float>& params);  // master weights and their BF16 copy
  std::vector<float> grads() const;
  std::vector<float> logits() const;  // [B*T][padded vocab], FP32

  float forward(const int* inputs, const int* targets);  // host tokens; returns the mean loss
  void backward();
  // Clips to grad_clip by global norm, AdamW step at lr; returns the norm before clipping.
  float step(float lr, float grad_clip, const AdamWSettings& a);

  // Per layer type (embedding, layernorm, attention, matmul, ...) GPU milliseconds of the last
  // forward+backward+step, measured with events when profiling is on.
  void set_profiling(bool on) { profiling_ = on; }
  std::map<std::string, double> last_profile();

 private:
  struct LayerActs {
    core::DeviceBuffer ln1, ln1_mean, ln1_rstd, qkv, probs, atty, x_mid, ln2, ln2_mean, ln2_rstd, fc, gelu, x_out;
  };
  bf16* weight(std::int64_t offset) const;  // the BF16 weight copy at a layout offset
  float* g(std::int64_t offset) const;                  // its FP32 gradient
  void linear_forward(bf16* out, const bf16* inp, std::int64_t w, std::int64_t b, int N, int IC, int OC);
  void linear_backward(bf16* dinp, const bf16* dout, const bf16* inp, std::int64_t w, std::int64_t b, int N, int IC, int OC);
  void mark(const char* phase);

  GptConfig cfg_;
  int B_, T_;
  cudaStream_t stream_;
  GemmCache gemms_;
  std::vector<ParamTensor> layout_;
  std::int64_t n_params_;
  std::map<std::string, std::int64_t> off_;
  core::DeviceBuffer master_, weights_, grads_, adam_m_, adam_v_;
  core::DeviceBuffer tokens_, targets_, encoded_, lnf_, lnf_mean_, lnf_rstd_, logits_, dlogits_, losses_;
  core::DeviceBuffer q_, k_, v_, scores_, yh_, scratch_, dx_, dbuf_, dbuf4_, dqkv_, dq_, dk_, dv_, dscores_, norm_;
  std::vector<LayerActs> acts_;
  int t_ = 0;
  bool profiling_ = false;
  std::vector<std::pair<std::string, cudaEvent_t>> marks_;
};

}  // namespace fp8scope::model
