#include "fp8scope/model/step_cost.hpp"

#include "fp8scope/model/fp8_plan.hpp"

namespace fp8scope::model {

std::vector<PhaseCost> step_costs(const StepShape& s) {
  const GptConfig& c = s.model;
  // F: the MLP's hidden width (fc2's input); FW: fc1's output (F, or gate and up: 2F for Llama).
  const double N = double(s.batch) * s.seq_len, C = c.d_model, F = c.ffn_width(), FW = c.fc1_width(), V = c.padded_vocab(), L = c.n_layer,
               T = s.seq_len;
  const double P = double(param_count(c));
  auto fp8 = [&](const std::string& linear) { return s.fp8 && s.fp8_linears.count(linear) > 0; };
  auto linear = [&](const std::string& name, double in, double out, int count) {
    const auto n = std::int64_t(N), i = std::int64_t(in), o = std::int64_t(out);
    return std::vector<GemmCost>{{name + ".fprop", o, n, i, fp8(name), count},
                                 {name + ".dgrad", i, n, o, fp8(name), count},
                                 {name + ".wgrad", i, o, n, fp8(name), count}};
  };
  std::vector<PhaseCost> out;
  PhaseCost mm{"matmul"};
  for (const auto& l : linear_shapes(c))
    if (std::string(l.name) != "lm_head")
      for (auto& g : linear(l.name, double(l.in), double(l.out), c.n_layer)) mm.gemms.push_back(g);
  // FP8 casts: each one reads BF16 and writes the FP8 tensor and its transpose (4 bytes an
  // element): the inputs the LayerNorm or GELU does not write in FP8 already, every output
  // gradient, and the weights (StepShape::weights: 4, 10 or 2 bytes an element). Under
  // delayed scaling fc1's output gradient is made by the activation's backward inside its cast:
  // GPT-2's reads the GELU's gradient and the pre-activation (2 + 2 bytes an element, 2 + 1 in
  // E4M3), Llama's the gate and up (2 bytes an element of fc1's output) and the SwiGLU's
  // gradient (half as wide: 1), and both write the two FP8 copies.
  const bool fuses = s.fp8 && s.fused && s.delayed;
  const double weight_bytes = s.weights == WeightCopies::kept_per_layer ? 4.0 : s.weights == WeightCopies::cast_per_layer ? 10.0 : 2.0;
  const double pre_bytes = s.gelu_e4m3 ? 1.0 : 2.0;  // GPT-2's GELU input as its backward reads it
  auto cast = [&](const std::string& name, double in, double out_w, bool input_fused) {
    if (!fp8(name)) return 0.0;
    const double grad = name == "fc1" && s.dgelu_epilogue ? 2.0 : name == "fc1" && s.delayed ? (c.llama() ? 5.0 : 4.0 + pre_bytes) : 4.0;
    // (s.dgelu_epilogue only with s.fp8 here: cast() counts FP8 casts.)
    return (input_fused ? 0.0 : N * in * 4) + N * out_w * grad + in * out_w * weight_bytes;
  };
  const double layer_casts =
      L * (cast("qkv", C, c.qkv_width(), fuses) + cast("proj", C, C, false) + cast("fc1", C, FW, fuses) + cast("fc2", F, C, fuses));
  PhaseCost head{"lm_head"};
  head.gemms = linear("lm_head", C, V, 1);
  // The head's gradient is cast by the loss under delayed scaling (counted there).
  const double head_casts = fp8("lm_head") ? N * C * 4 + V * C * 4 + (s.delayed ? 0.0 : N * V * 4) : 0.0;
  // A chunked head writes its FP32 weight gradient in the first chunk, reads and writes it in each
  // later one (their wgrads add).
  head.serial_bytes = (s.head_chunks - 1) * V * C * 4 * 2;
  if (s.fp8 && s.per_block) {
    // Every cast reads its BF16 tensor (once more for row-wise amaxes) and writes both FP8 copies.
    PhaseCost casts{"fp8_cast"};
    casts.bytes = (layer_casts + head_casts) * (s.rowwise ? 6.0 / 4.0 : 1.0);
    out.push_back(mm);
    out.push_back(head);
    out.push_back(casts);
  } else {
    // With the residual stream's adds in the proj and fc2 GEMMs' epilogue each reads its C.
    mm.serial_bytes = layer_casts + (s.residual_epilogue ? L * 2 * N * C * 2 : 0.0);
    head.serial_bytes += head_casts;
    out.push_back(mm);
    out.push_back(head);
  }
  // Causal attention: QK^T and PV forward (4 B NH T^2 hs FLOPs without the mask), backward 2.5x
  // forward (five products), half of each under the causal mask.
  PhaseCost att{"attention"};
  att.tensor_flops = 0.5 * (4.0 + 10.0) * double(s.batch) * c.n_head * T * T * c.head_dim() * L;
  // q, k, v, out, dout, dq, dk, dv in BF16 (k, v and their gradients of the k/v heads only)
  // (plus the materialised scores and probabilities: FP32 scores written and read, BF16
  // probabilities written and read twice, their gradients); Llama's rotary positions read and
  // write q and k, forward and backward.
  const double KV = double(c.kv_heads()) * c.head_dim();
  att.bytes = L * ((4.0 * C + 4.0 * KV) * N * 2 + (c.llama() ? 2.0 * 2 * (C + KV) * N * 2 : 0.0));
  if (!s.flash) att.bytes += L * double(s.batch) * c.n_head * T * T * (4 + 4 + 2 + 2 + 2 + 4 + 2);
  out.push_back(att);
  // Cross-entropy: the FP32 (or BF16) logits read, their gradient written (in FP8 when the loss
  // casts the FP8 head's gradient itself, under delayed scaling).
  out.push_back({"loss", {}, 0, N * V * ((s.bf16_logits ? 2 : 4) + (fp8("lm_head") && s.delayed ? 1 : 2))});
  // LayerNorms: forward reads x and writes y; backward reads x and dy and adds into the
  // residual stream's gradient (read and written), which is where the residual additions'
  // backward happens; the final LayerNorm's backward starts that gradient (no read).
  out.push_back({"layernorm", {}, 0, 2 * L * N * C * 2 * (2 + 4) + N * C * 2 * (2 + 3)});
  // GELU: forward reads the pre-activation and writes the activation (and the pre-activation
  // in E4M3; with the GELU in fc1's epilogue only the transpose of fc2's FP8 input is left); backward reads the pre-activation and the
  // gradient and writes the gradient, unless fc1's FP8 gradient cast does it (delayed scaling). SwiGLU (Llama, the same phase): forward
  // reads gate and up and writes the activation (in the fused variant as FP8 and its transpose: the same bytes), backward reads gate, up
  // and the gradient and writes both gradients, unless fc1's cast does.
  if (c.llama())
    out.push_back({"gelu", {}, 0, L * N * F * 2 * (3 + (fp8("fc1") && s.delayed ? 0 : 5))});
  else if (s.gelu_epilogue && s.fp8)
    out.push_back({"gelu", {}, 0, L * N * F * 2});
  else if (s.gelu_epilogue)  // BF16: nothing left in forward; backward the GELU kernel where fc2's dgrad did not take it
    out.push_back({"gelu", {}, 0, s.dgelu_epilogue ? 0.0 : L * N * F * 2 * 3});
  else
    out.push_back({"gelu", {}, 0, L * N * F * (4 + (s.gelu_e4m3 ? 1 : 0) + (fp8("fc1") && s.delayed ? 0 : 4 + pre_bytes))});
  // Two residual additions per layer in the forward: two read, one written (their backward
  // is the LayerNorm backward's accumulation); none where the GEMMs' epilogue adds them.
  if (!s.residual_epilogue) out.push_back({"residual", {}, 0, L * 2 * N * C * 2 * 3});
  // AdamW on FP32 masters: parameter, gradient, two moments read; parameter, moments and the
  // BF16 copy written (none for the FP8 block weights cast from the master: their FP8 codes
  // where AdamW writes them); the gradient read once more for the norm.
  double no_copy = 0;
  if (s.fp8 && !s.per_block && s.weights != WeightCopies::kept_per_layer)
    for (const auto& l : linear_shapes(c))
      if (std::string(l.name) != "lm_head" && fp8(l.name)) no_copy += L * double(l.in) * double(l.out);
  const double codes = s.weights == WeightCopies::codes_kept ? no_copy : 0.0;
  out.push_back({"optimizer", {}, 0, P * (4 * 4 + 3 * 4 + 2 + 4) - no_copy * 2 + codes});
  // Token and position rows gathered and summed (forward), the gradient scattered into both
  // tables (backward, FP32 read-modify-write).
  // Llama has no position table: its rows are neither read nor written.
  if (c.llama())
    out.push_back({"embedding", {}, 0, N * C * (2 + 2) + N * C * (2 + 4 * 2)});
  else
    out.push_back({"embedding", {}, 0, N * C * (2 + 2 + 2) + N * C * (2 + 2 * 4 * 2)});
  return out;
}

}  // namespace fp8scope::model
