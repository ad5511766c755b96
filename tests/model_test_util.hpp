#pragma once
// Shared by the GPU model tests: the tiny GPT they run, the relative RMS error they judge by,
// and BF16-rounded parameters (the GPU computes with BF16 weight copies; giving the CPU the
// same rounded values makes the comparison measure the activations' rounding only).
#include "fp8scope/cpu/gpt_ref.hpp"
#include "fp8scope/model/gpt_config.hpp"

#include <cuda_bf16.h>

#include <cmath>
#include <vector>

namespace fp8scope::test {

inline model::GptConfig tiny_gpt(int vocab) {
  model::GptConfig c;
  c.vocab = vocab, c.pad_vocab_to = 1, c.max_seq = 32, c.d_model = 64, c.n_layer = 2, c.n_head = 4, c.tied = true;
  return c;
}

inline double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  double e = 0, n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) e += (a[i] - b[i]) * (a[i] - b[i]), n += b[i] * b[i];
  return n > 0 ? std::sqrt(e / n) : std::sqrt(e);
}

// One parameter tensor's part of a flat parameter or gradient vector (t: an entry of
// model::param_layout).
template <class Values, class Tensor>
std::vector<double> tensor_part(const Values& v, const Tensor& t) {
  return std::vector<double>(v.begin() + t.offset, v.begin() + t.offset + t.size);
}

inline std::vector<double> bf16_rounded(const std::vector<float>& p) {
  std::vector<double> out;
  out.reserve(p.size());
  for (float x : p) out.push_back(double(__bfloat162float(__float2bfloat16(x))));
  return out;
}

// The CPU reference's loss, gradients and logits for one batch, from the BF16-rounded
// parameters (what the GPU model is compared with).
struct CpuStep {
  double loss;
  std::vector<double> grads, logits;
};
inline CpuStep cpu_step(const model::GptConfig& cfg, const std::vector<float>& params, const std::vector<int>& in,
                        const std::vector<int>& tg, int B, int T) {
  cpu::CpuGpt ref(cfg);
  const auto P = bf16_rounded(params);
  CpuStep r;
  r.loss = ref.forward(P, in.data(), tg.data(), B, T);
  ref.backward(P, r.grads);
  r.logits = ref.logits();
  return r;
}

}  // namespace fp8scope::test
