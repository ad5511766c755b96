#pragma once
// The GPU GPT's kernels, one file per layer (encoder.cu, layernorm.cu, attention.cu,
// flash_attention.cu, mlp.cu, llama.cu, loss.cu, optimizer.cu), each with its forward and
// backward side by side (llama.cu and RMSNorm: the Llama block's). Activations are
// BF16, statistics and gradients of parameters FP32. Row-major shapes: B batch, T tokens,
// C channels, NH heads, HS = C / NH, N = B*T rows.
#include "fp8scope/fp8/cast.cuh"
#include "fp8scope/model/gradient_ranges.hpp"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <tuple>
#include <vector>

namespace fp8scope::gpu_model {

using bf16 = __nv_bfloat16;

// Every reduction is deterministic (no float atomics): the same inputs give the same bits on
// every run, which probe_recipe's reruns rely on. Kernels that reduce over rows take a
// scratch buffer for their per-block partials (sizes from the *_scratch_floats functions).

// encoder.cu: out[b,t,:] = wte[tok[b,t],:] + wpe[t,:] (wpe null: no position table, Llama);
// backward adds into FP32 grads (dwpe null: none). The token gradient takes the positions
// grouped by token: bucket u (u < *count) holds token[u] at positions position[start[u] ..
// start[u+1]), in increasing order. group_tokens makes them on the device (a stable radix sort
// of the tokens with their positions, a run-length encoding, a scan), so a step needs nothing
// from the host after its tokens are copied: each array holds N ints (start N + 1), count one.
struct TokenBuckets {
  int *token, *start, *position, *count;
};
void encoder_forward(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe, int B, int T, int C, cudaStream_t s);
void encoder_backward(float* dwte, float* dwpe, const bf16* dout, TokenBuckets buckets, int B, int T, int C, cudaStream_t s);
// Tokens in [0, vocab). scratch: 2N ints; iota: 0 .. N-1 (fill_iota); temp: at least
// group_tokens_temp_bytes(N, vocab).
std::size_t group_tokens_temp_bytes(int N, int vocab);
void fill_iota(int* out, int n, cudaStream_t s);
void group_tokens(TokenBuckets b, int* scratch, const int* tokens, const int* iota, int N, int vocab, void* temp, std::size_t temp_bytes,
                  cudaStream_t s);

// layernorm.cu: out = (x - mean) * rstd * w + b; backward adds into dinp, dw, db
// (C % 8 == 0, C <= 8192). The FP8 forward writes the output cast with *scale, and the cast's
// statistics (the fused variant's LayerNormLinear). kind: automatic (a warp per row up to 2048
// channels, a block of 256 threads above), or block_per_row at any width (how rows of more than
// 1024 channels ran before; benchmarks time both).
enum class NormKernel { automatic, block_per_row };
void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* w, const bf16* b, int N, int C, cudaStream_t s,
                       NormKernel kind = NormKernel::automatic);
void layernorm_forward_fp8(std::uint8_t* out, float* mean, float* rstd, const bf16* inp, const bf16* w, const bf16* b, int N, int C,
                           const float* scale, fp8::Format f, fp8::Overflow o, fp8::CastStats* stats, cudaStream_t s,
                           NormKernel kind = NormKernel::automatic);
std::int64_t layernorm_backward_scratch_floats(int N, int C);
void layernorm_backward(bf16* dinp, float* dw, float* db, float* scratch, const bf16* dout, const bf16* inp, const bf16* w,
                        const float* mean, const float* rstd, int N, int C, cudaStream_t s, NormKernel kind = NormKernel::automatic);
// RMSNorm (Llama), the same kernels without mean and bias: out = x * rstd * w, rstd =
// 1 / sqrt(mean(x^2) + 1e-5); backward adds into dinp and dw (scratch as LayerNorm's).
void rmsnorm_forward(bf16* out, float* rstd, const bf16* inp, const bf16* w, int N, int C, cudaStream_t s);
void rmsnorm_forward_fp8(std::uint8_t* out, float* rstd, const bf16* inp, const bf16* w, int N, int C, const float* scale, fp8::Format f,
                         fp8::Overflow o, fp8::CastStats* stats, cudaStream_t s);
void rmsnorm_backward(bf16* dinp, float* dw, float* scratch, const bf16* dout, const bf16* inp, const bf16* w, const float* rstd, int N,
                      int C, cudaStream_t s);

// attention.cu: the pieces around the two batched GEMMs of attention.
// qkv [B,T,3,NH,HS] -> q, k, v [B,NH,T,HS]; and back (for gradients, dq/dk/dv -> dqkv).
void split_heads(bf16* q, bf16* k, bf16* v, const bf16* qkv, int B, int T, int NH, int HS, cudaStream_t s);
void merge_qkv_grads(bf16* dqkv, const bf16* dq, const bf16* dk, const bf16* dv, int B, int T, int NH, int HS, cudaStream_t s);
// [B,NH,T,HS] <-> [B,T,NH*HS]
void merge_heads(bf16* out, const bf16* y, int B, int T, int NH, int HS, cudaStream_t s);
void split_heads_single(bf16* y, const bf16* inp, int B, int T, int NH, int HS, cudaStream_t s);
// Causal softmax of scaled scores (FP32 [BH,T,T], already scaled) into probs (BF16, zero above the diagonal).
void softmax_causal_forward(bf16* probs, const float* scores, int BH, int T, cudaStream_t s);
// dscores = probs * (dprobs - sum(probs * dprobs)) * scale, causal.
void softmax_causal_backward(bf16* dscores, const float* dprobs, const bf16* probs, float scale, int BH, int T, cudaStream_t s);

// flash_attention.cu: fused causal attention on tensor cores for head sizes HS = 64 and 128 and
// T a multiple of 64. Heads stay where the model keeps them: element (b, h, t, d) of q, k, v
// (and dq, dk, dv) is at [(b*T + t) * ld_qkv + HS h + d] (inside the fused qkv: ld_qkv = 3C and
// the pointers C apart), of out and dout at [(b*T + t) * ld_out + HS h + d]; with NH = 1 and
// ld = HS that is the plain [B][T][HS]. Forward writes the output and each row's log-sum-exp
// (lse [B*NH][T]); backward recomputes the probabilities from it (dsum: [B*NH][T] scratch) and
// writes dq, dk, dv without atomics. Pointers and strides must keep rows 16-byte aligned.
// Which kernels run: automatic takes the Hopper ones wherever they fit (flash_attention_wgmma_fits),
// warp-specialised with TMA loads (wgmma_tma, faster on an H100: docs/performance.md), else the
// mma.sync ones; the others force one kind (tests, benchmarks): wgmma is the same products fed by
// every thread's cp.async, with the same bits as wgmma_tma.
enum class FlashKernel { automatic, mma_sync, wgmma, wgmma_tma };
struct AttentionHeads {
  int B, NH, T;
  int ld_qkv, ld_out;  // row strides, elements
  float scale;         // of the scores, 1/sqrt(HS) in the model
  int HS = 64;         // head size: 64 or 128
  int KVH = 0;         // k/v heads (grouped-query attention, dividing NH; 0: NH, multi-head)
  FlashKernel kernel = FlashKernel::automatic;
  // The TMA kernels' grid: a block per SM walking the work tiles (true), or a block per tile
  // (the same tiles in the same order and the same bits: what the persistent grid saves).
  bool persistent = true;
  int kv_heads() const { return KVH > 0 ? KVH : NH; }
};
bool flash_attention_supported(int T, int HS);
void flash_attention_forward(const AttentionHeads& h, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, cudaStream_t s);
void flash_attention_backward(const AttentionHeads& h, bf16* dq, bf16* dk, bf16* dv, float* dsum, const bf16* dout, const bf16* out,
                              const bf16* q, const bf16* k, const bf16* v, const float* lse, cudaStream_t s);
// flash_attention_wgmma.cu: the same on Hopper's warpgroup MMA, for HS 64 and 128 and T a
// multiple of 128 on a compute capability 9.0 GPU in an sm_90a build (what _fits checks); the
// entry points above call them. Backward takes the row dots (dsum) already made.
bool flash_attention_wgmma_fits(const AttentionHeads& h);
void flash_attention_forward_wgmma(const AttentionHeads& h, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                                   cudaStream_t s);
void flash_attention_backward_wgmma(const AttentionHeads& h, bf16* dq, bf16* dk, bf16* dv, const float* dsum, const bf16* dout,
                                    const bf16* q, const bf16* k, const bf16* v, const float* lse, cudaStream_t s);
// flash_attention_tma.cu: the same products warp-specialised, tiles loaded by TMA (same bits).
// Their persistent blocks draw work tiles from one counter per kernel on each GPU, so launches
// of one of them must not overlap on one GPU (the model runs one stream per GPU).
void flash_attention_forward_tma(const AttentionHeads& h, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                                 cudaStream_t s);
void flash_attention_backward_tma(const AttentionHeads& h, bf16* dq, bf16* dk, bf16* dv, const float* dsum, const bf16* dout, const bf16* q,
                                  const bf16* k, const bf16* v, const float* lse, cudaStream_t s);

// llama.cu: the Llama block's elementwise kernels (16-byte aligned tensors).
// SwiGLU: out[n][f] = silu(fc[n][f]) * fc[n][F + f] (fc holds gate | up, [N][2F]; F % 8 == 0).
void swiglu_forward(bf16* out, const bf16* fc, int N, int F, cudaStream_t s);
// dfc[n][f] = dout * up * silu'(gate), dfc[n][F + f] = dout * silu(gate) (written, not added).
void swiglu_backward(bf16* dfc, const bf16* fc, const bf16* dout, int N, int F, cudaStream_t s);
// The same, each fused with the FP8 cast of its output (code for code what the cast of the
// BF16 output gives; the statistics into stats): fc2's input [N][F] and its transpose, and
// fc1's output gradient [N][2F] and its transpose. Only where swiglu_cast_fits(N, F).
bool swiglu_cast_fits(int N, int F);
void swiglu_cast_transpose(std::uint8_t* out, std::uint8_t* out_t, const bf16* fc, int N, int F, const float* scale, fp8::Format f,
                           fp8::Overflow o, fp8::CastStats* stats, cudaStream_t s);
void dswiglu_cast_transpose(std::uint8_t* out, std::uint8_t* out_t, const bf16* dout, const bf16* fc, int N, int F, const float* scale,
                            fp8::Format f, fp8::Overflow o, fp8::CastStats* stats, cudaStream_t s);
// Rotary positions, in place, on the first `heads` heads of HS channels (q's then k's) of the
// rows [N][ld] of qkv, row n at position n % T; cos_sin: model::rope_cos_sin(T, HS, theta) on
// the device. sign -1 rotates back: the backward (the rotation's transpose).
void rope_apply(bf16* qkv, const float* cos_sin, int N, int T, int ld, int heads, int HS, int sign, cudaStream_t s);

// mlp.cu. pre8 (null: none): the GELU's input written in E4M3 at unit scale as well, the copy
// the backward reads when model::Fp8ModelConfig::gelu_input_e4m3 keeps it (8-byte aligned).
void gelu_forward(bf16* out, const bf16* inp, std::int64_t n, cudaStream_t s, std::uint8_t* pre8 = nullptr);
// GELU cast straight to FP8 (the fused variant's LayerNormMLP), with the cast's statistics.
void gelu_forward_fp8(std::uint8_t* out, const bf16* inp, std::int64_t n, const float* scale, fp8::Format f, fp8::Overflow o,
                      fp8::CastStats* stats, cudaStream_t s, std::uint8_t* pre8 = nullptr);
// dinp = dout * gelu'(input), the input in BF16 or kept in E4M3 (pre8); dinp may be dout.
void gelu_backward(bf16* dinp, const bf16* inp, const bf16* dout, std::int64_t n, cudaStream_t s);
void gelu_backward(bf16* dinp, const std::uint8_t* pre8, const bf16* dout, std::int64_t n, cudaStream_t s);
// The same GELU cast to FP8 written row-major and transposed in one pass (fc2's fprop input
// and its wgrad operand). Needs fp8::tile_cast_fits(rows, cols).
void gelu_cast_transpose(std::uint8_t* out, std::uint8_t* out_t, const bf16* pre, int rows, int cols, const float* scale, fp8::Format f,
                         fp8::Overflow o, fp8::CastStats* stats, cudaStream_t s, std::uint8_t* pre8 = nullptr);
// fc1's output gradient in FP8 from fc2's input gradient in one pass: gelu_backward (rounded to
// BF16), cast, transposed copy, and fc1's bias gradient as 64-row column sums (bias_partial,
// fp8::dbias_partial_floats(rows, cols) floats). Same shape condition. The pre-activations in
// BF16 (pre) or E4M3 (pre8).
void dgelu_cast_transpose_dbias(std::uint8_t* out, std::uint8_t* out_t, float* bias_partial, const bf16* dout, const bf16* pre, int rows,
                                int cols, const float* scale, fp8::Format f, fp8::Overflow o, fp8::CastStats* stats, cudaStream_t s);
void dgelu_cast_transpose_dbias(std::uint8_t* out, std::uint8_t* out_t, float* bias_partial, const bf16* dout, const std::uint8_t* pre8,
                                int rows, int cols, const float* scale, fp8::Format f, fp8::Overflow o, fp8::CastStats* stats,
                                cudaStream_t s);
void residual_forward(bf16* out, const bf16* a, const bf16* b, std::int64_t n, cudaStream_t s);
// dbias[o] += sum_n dout[n, o]
std::int64_t bias_backward_scratch_floats(int OC);
void bias_backward(float* dbias, float* scratch, const bf16* dout, int N, int OC, cudaStream_t s);

// loss.cu: per-row cross-entropy over the first V of Vp logits of N rows; writes losses[N]
// and dlogits = (softmax - onehot) / n_mean (zero in the padded columns). n_mean: the tokens
// the loss is the mean over (N, or the whole batch when these rows are one chunk of it).
// logits: FP32, or BF16 (the head's output in half the bytes; computed in FP32 all the same).
void cross_entropy_forward_backward(float* losses, bf16* dlogits, const float* logits, const int* targets, int N, int n_mean, int V, int Vp,
                                    cudaStream_t s);
void cross_entropy_forward_backward(float* losses, bf16* dlogits, const bf16* logits, const int* targets, int N, int n_mean, int V, int Vp,
                                    cudaStream_t s);
// The same with the gradient written as FP8 (the codes fp8::quantize gives its BF16 values,
// with the same statistics), for an FP8 LM head whose gradient scale is known before the loss
// (delayed scaling). Only where cross_entropy_fp8_fits(Vp).
bool cross_entropy_fp8_fits(int Vp);
void cross_entropy_forward_backward_fp8(float* losses, std::uint8_t* dlogits, const float* logits, const int* targets, int N, int n_mean,
                                        int V, int Vp, const float* scale, fp8::Format f, fp8::Overflow o, fp8::CastStats* stats,
                                        cudaStream_t s);
void cross_entropy_forward_backward_fp8(float* losses, std::uint8_t* dlogits, const bf16* logits, const int* targets, int N, int n_mean,
                                        int V, int Vp, const float* scale, fp8::Format f, fp8::Overflow o, fp8::CastStats* stats,
                                        cudaStream_t s);

// optimizer.cu
void cast_to_bf16(bf16* out, const float* in, std::int64_t n, cudaStream_t s);
// sum of squares into *out; sum_values: the plain sum (scratch: 1024 floats each; a fixed
// grid and order, deterministic)
void sum_squares(float* out, float* scratch, const float* x, std::int64_t n, cudaStream_t s);
void sum_values(float* out, float* scratch, const float* x, std::int64_t n, cudaStream_t s);
// AdamW over many tensors of one flat buffer in one launch: the tensors cut into chunks of at
// most kAdamwChunk elements, one block each, weight decay per tensor (a launch per tensor left
// the GPU waiting for the host between the small ones). Each tensor's new values are written
// to its BF16 copy at `copy` in p_bf16 (-1: it has none, an FP8 weight cast from the master),
// or, for a tensor with an FP8 tap slot (`slot` >= 0), cast to FP8 at `copy` in the codes of
// AdamwFp8Codes with that slot's scale, its cast statistics added to that slot's: under delayed
// scaling the next step's scale is known when the optimizer runs, so the forward pass finds the
// block weights already cast (GpuGpt: weights_cast_by_optimizer).
// adamw_chunks lists the chunks of the tensors, for a device copy.
struct AdamwTensor {
  std::int64_t offset, size;
  bool decay;
  std::int64_t copy;
  int slot = -1;
};
struct AdamwChunk {  // 24 bytes: the kernel reads one per block
  std::int64_t offset, copy;
  std::int32_t slot;
  std::int16_t size, decay;
};
constexpr int kAdamwChunk = 2048;  // 256 threads x 8
std::vector<AdamwChunk> adamw_chunks(const std::vector<AdamwTensor>& tensors);
// Where the chunks with a slot write their codes: scale of slot s at scales[s * scale_stride],
// statistics at stats[s] (fp8::ScalerBank and Fp8Runtime's layout).
struct AdamwFp8Codes {
  std::uint8_t* codes = nullptr;
  const float* scales = nullptr;
  int scale_stride = 0;
  fp8::CastStats* stats = nullptr;
  fp8::Format format = fp8::Format::e4m3;
  fp8::Overflow overflow = fp8::Overflow::satfinite;
};
// What AdamW reads on the device at each step, so that a captured step (CUDA graph) replays
// with the step's own values: the host writes them before the step (lr from the schedule, c1 and
// c2 AdamW's bias corrections 1 - beta^t), and the kernel clips by the gradient norm the step
// computed (grad_clip 0: no clipping).
struct AdamwStep {
  float lr, beta1, beta2, eps, weight_decay, c1, c2, grad_clip;
};
// grad_sq: the gradients' sum of squares (sum_squares), the clipping's norm squared.
void adamw_update_chunks(float* p, bf16* p_bf16, const float* g, float* m, float* v, const AdamwChunk* chunks, int n_chunks,
                         const AdamwStep* step, const float* grad_sq, const AdamwFp8Codes& fp8, cudaStream_t s);

// reduce.cu: dst[c] += sum over rows r of partial[r * ld + c], in a fixed order; *out = sum of
// partial[0..n) (one block, fixed tree).
void column_sum_add(float* dst, const float* partial, int rows, int cols, int ld, cudaStream_t s);
// The same with columns [0, split) added into lo and [split, cols) into hi, in one launch.
void column_sum_add_split(float* lo, float* hi, int split, const float* partial, int rows, int cols, int ld, cudaStream_t s);
void sum_all(float* out, const float* partial, int n, cudaStream_t s);
// dst[i] += src[i] (a BF16 gradient, e.g. cuBLASLt's bias gradient, into an FP32 one).
void add_bf16_into(float* dst, const bf16* src, int n, cudaStream_t s);
// base[r.offset .. r.offset + r.count) = 0 for each of the n ranges (device memory, pieces of
// model::gradient_ranges_to_zero), one block a range: the gradient a step sums into, in one
// launch instead of a memset per tensor.
void zero_ranges(float* base, const model::FloatRange* ranges, int n, cudaStream_t s);

}  // namespace fp8scope::gpu_model
