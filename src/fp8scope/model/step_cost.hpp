#pragma once
// What one GPT-2 training step of the hand-written model must at least do, phase by phase (the
// phases of the step's profile: matmul, lm_head, attention, loss, layernorm, gelu, residual,
// optimizer, embedding, and fp8_cast under per-row / per-block scaling): its GEMMs with their shapes and precision, its other FLOPs (the
// fused attention), and the bytes its memory-bound kernels move (each kernel's inputs read and outputs written once, in the step's own
// order). The report divides them by measured rates to put a bound beside each phase's measured time.
#include "fp8scope/model/fp8_plan.hpp"
#include "fp8scope/model/gpt_config.hpp"

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace fp8scope::model {

// One GEMM as probe_gemm names it: D[m x n] = op(A)[m x k] op(B)[k x n], TN. fprop m = out
// features, n = tokens, k = in features; dgrad m = in, n = tokens, k = out; wgrad m = in,
// n = out, k = tokens.
struct GemmCost {
  std::string role;  // "qkv.fprop", ...
  std::int64_t m = 0, n = 0, k = 0;
  bool fp8 = false;
  int count = 1;  // how many per step (one per layer)
  double flops() const { return 2.0 * double(m) * double(n) * double(k) * count; }
};

struct PhaseCost {
  std::string phase;
  std::vector<GemmCost> gemms;
  double tensor_flops = 0;  // tensor-core work outside cuBLASLt (the fused attention)
  double bytes = 0;         // bytes read and written by the phase's memory-bound kernels
  // Bytes of kernels that run between the phase's GEMMs and add to their time (the FP8 casts
  // and transposes of the matmul and LM-head phases).
  double serial_bytes = 0;
};

struct StepShape {
  GptConfig model;
  int batch = 0, seq_len = 0;
  bool fp8 = false;
  std::set<std::string> fp8_linears;  // qkv, proj, fc1, fc2, lm_head
  bool flash = true;
  bool delayed = true;  // FP8 delayed scaling: the loss writes the FP8 head's gradient and fc1's
                        // gradient cast applies the GELU backward (no separate kernels)
  bool fused = false;   // the fused variants: under delayed scaling the LayerNorms and the GELU
                        // write the FP8 inputs of qkv, fc1 and fc2 themselves
  // Per-row / per-block scaling (scaling rowwise | block): the casts are a phase of their own
  // (fp8_cast, as the profile times them), none fused; row-wise reads each tensor once more for
  // its rows' and columns' amaxes.
  bool per_block = false, rowwise = false;
  // GPT-2 in FP8: the GELU's input kept in E4M3 (gelu_input e4m3: written by the GELU's
  // forward, read by its backward, 1 byte an element instead of 2).
  bool gelu_e4m3 = false;
  // GPT-2 with gelu_cast gemm_epilogue: fc1's GEMM applies the GELU. In FP8 it writes fc2's FP8
  // input and the E4M3 GELU input, and the GELU phase is the transpose of fc2's input (1 + 1
  // bytes an element); in BF16 the forward has no GELU kernel left.
  bool gelu_epilogue = false;
  // ... and fc2's dgrad applies the GELU's gradient (DGELU_BGRAD): in FP8 it writes fc1's FP8
  // gradient, whose cast becomes a transpose of its codes (1 + 1 bytes an element); in BF16 the
  // GELU backward kernel is gone.
  bool dgelu_epilogue = false;
  // FP8 per-tensor scaling, the block weights (WeightCopies): kept_per_layer, cast once a step
  // from the BF16 copy into both FP8 copies (2 + 2 bytes an element); cast_per_layer, cast from
  // the FP32 master in forward and the transpose again in backward (4 + 1 each); codes_kept,
  // written by AdamW (1, in the optimizer) and transposed in backward (1 + 1).
  WeightCopies weights = WeightCopies::kept_per_layer;
  bool bf16_logits = false;  // the LM head writes BF16 logits (logits: bf16), FP32 otherwise
  // The residual stream's adds in the proj and fc2 GEMMs' epilogue (C = the stream, beta 1;
  // not under per-row / per-block scaling): no residual phase, the matmul phase reads each C.
  bool residual_epilogue = false;
  int head_chunks = 1;  // the fused LM head's chunks (model::lm_head_rows)
};

// Empty for architectures the cost model does not describe (Llama so far).
std::vector<PhaseCost> step_costs(const StepShape& s);

}  // namespace fp8scope::model
