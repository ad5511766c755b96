#pragma once
// The GPU GPT: the same model as cpu::CpuGpt (same parameter layout), trained with FP32
// master weights, BF16 activations and weight copies, cuBLASLt GEMMs and our kernels. With an
// model::Fp8ModelConfig its linears (those it names) run in FP8 under a scaling recipe, in one of
// the three variants, with every tensor tapped (Fp8Runtime). Deterministic: the same inputs
// give the same bits on every run. Both architectures of the CPU reference: GPT-2, and the
// Llama block (RMSNorm, rotary q and k, SwiGLU, grouped-query heads; fused attention, FP8
// variants custom and fused; probe_train refuses the rest before a worker starts).
// CUDA builds only.
#include "fp8scope/core/cuda_graph.hpp"
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/gpu_model/fp8_runtime.hpp"
#include "fp8scope/gpu_model/gemm_cache.hpp"
#include "fp8scope/gpu_model/kernels.cuh"
#include "fp8scope/model/gpt_config.hpp"

#include <array>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace fp8scope::gpu_model {

struct AdamWSettings {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f;
};

// The MLP activation's input as its backward reads it: fc1's output in BF16, or the GELU's
// input kept in E4M3 (model::keeps_gelu_input_e4m3).
struct ActivationInput {
  const bf16* bf16_values = nullptr;
  const std::uint8_t* e4m3 = nullptr;
  explicit operator bool() const { return bf16_values || e4m3; }
};

class GpuGpt {
 public:
  // fp8: nullptr for the BF16 model. Throws std::invalid_argument for options the shapes do not
  // allow (see model::GpuRunOptions).
  GpuGpt(const model::GptConfig& cfg, int B, int T, cudaStream_t stream, const model::Fp8ModelConfig* fp8 = nullptr,
         const model::GpuRunOptions& options = {});

  void set_params(const std::vector<float>& params);  // master weights and their BF16 copy
  std::vector<float> params() const;                  // the FP32 master weights
  std::vector<float> grads() const;
  std::vector<float> logits() const;  // [B*T][padded vocab] as floats; throws when the head is chunked

  // One training step: forward on the host tokens, backward, clipping to grad_clip by the
  // global norm and AdamW at lr, with no host synchronisation inside (the token grouping of the
  // embedding's gradient, the loss's mean and the clipping run on the device; the loss and the
  // norm before clipping come back through pinned memory, read once the step is done). After
  // one uncaptured step of its kind (which makes every cuBLASLt plan and kernel setting), the
  // step is captured as a CUDA graph and replayed from then on: one graph for steps that record
  // the FP8 taps and one for steps that do not. The replays give the bits of the uncaptured
  // step. Uncaptured instead: with set_graphs(false), on the legacy default stream (it cannot be
  // captured), while profiling (the phases' events) and with data parallelism (reducers set).
  struct StepValues {
    float loss, norm;
  };
  StepValues train_step(const int* inputs, const int* targets, float lr, float grad_clip, const AdamWSettings& a);
  void set_graphs(bool on) { graphs_on_ = on; }
  // Steps train_step replayed from a graph, and graphs it captured.
  int graph_replays() const { return graph_replays_; }
  int graph_captures() const { return int(bool(graphs_[0].exec)) + int(bool(graphs_[1].exec)); }  // each kind once
  // The cuBLASLt algorithms timed and kept per GEMM shape (GemmCache::tuning; null unless
  // GpuRunOptions::gemm_algos > 1).
  nlohmann::json gemm_tuning() const { return gemms_.tuning(); }
  // gelu_cast gemm_epilogue: where the GELU ran, forward and backward ({"forward":
  // "GELU_AUX_BIAS" or "GELU kernel", "backward": "DGELU_BGRAD" or "GELU kernel", and
  // "forward_refused" / "backward_refused": what cuBLASLt said where it took no epilogue, so the
  // GELU kernels ran}); null otherwise.
  nlohmann::json gelu_epilogue() const;
  // FP8 under per-tensor scaling: where the block linears' FP8 weights are cast ("optimizer":
  // AdamW writes them for the next step; "forward": at each layer's start in forward); "" for
  // BF16 and per-row / per-block scaling (cast where each GEMM reads them).
  std::string weight_cast() const;
  // Where the residual stream's adds ran: "gemm_epilogue" (the proj and fc2 GEMMs' C), "kernel"
  // (per-row / per-block scaling), or {"ran": "kernel", "refused": cuBLASLt's reason}; null
  // before the first step.
  nlohmann::json residual_add() const;
  // FP8 head: how many vocabulary columns of its gradient the head's wgrad transposes at once
  // (model::lm_head_wgrad_columns; the padded vocabulary where all at once); 0 otherwise.
  std::int64_t lm_head_wgrad_columns() const { return fp8_linear(4) ? head_wgrad_cols_ : 0; }
  // Why train_step runs uncaptured now ("" when it captures).
  std::string graphs_off_reason() const;

  // The same step in three calls, uncaptured (tests compare each part with the CPU reference).
  // Host tokens; returns the mean loss. With a chunked head it also runs the head's backward
  // (its gradients, and the final norm's output gradient), which backward() then skips.
  float forward(const int* inputs, const int* targets);
  void backward();
  // Clips to grad_clip by global norm, AdamW step at lr; returns the norm before clipping.
  float step(float lr, float grad_clip, const AdamWSettings& a);

  // Per layer type (embedding, layernorm, attention, matmul, ...) GPU milliseconds of the last
  // forward+backward+step, measured with events when profiling is on.
  void set_profiling(bool on) { profiling_ = on; }
  std::map<std::string, double> last_profile();

  // The FP8 state (taps, recipe), or nullptr for the BF16 model.
  const Fp8Runtime* fp8() const { return fp8_.get(); }
  void set_tap_interval(int k) {
    if (fp8_) fp8_->set_tap_interval(k);
  }
  // Data parallelism: averages the FP32 gradients across ranks in place before clipping and
  // AdamW (so every rank takes the same step), and reduces the FP8 amaxes (see Fp8Runtime).
  using GradReducer = std::function<void(float* grads, std::int64_t n, cudaStream_t s)>;
  void set_grad_reducer(GradReducer r) { grad_reducer_ = std::move(r); }
  void set_amax_reducer(Fp8Runtime::AmaxReducer r) {
    if (fp8_) fp8_->set_amax_reducer(std::move(r));
  }

 private:
  struct LayerActs {
    core::DeviceBuffer ln1_mean, ln1_rstd, qkv, probs, atty, x_mid, ln2_mean, ln2_rstd, x_out;
    core::DeviceBuffer lse;  // flash attention: each row's log-sum-exp (instead of probs)
    // The inputs of qkv, fc1 and fc2. A BF16 linear's wgrad reads its input in backward, so
    // the layer keeps it (own_*); an FP8 linear's backward reads the FP8 transpose saved in
    // forward instead, so its input lives only until its cast, in a scratch all layers share:
    // FP8 keeps 1-byte copies where BF16 keeps 2-byte ones.
    core::DeviceBuffer own_ln1, own_ln2, own_gelu;
    bf16 *ln1 = nullptr, *ln2 = nullptr, *gelu = nullptr;
    // fc1's output, the activation's input. Kept per layer (own_fc) for the activation's
    // backward, unless the backward reads its E4M3 copy (pre8, model::keeps_gelu_input_e4m3):
    // then fc lives only until the GELU, in backward's dbuf4_ (free during forward), and the
    // GELU runs in place there when fc2's input is an FP8 linear's (gelu = fc).
    core::DeviceBuffer own_fc, pre8;
    bf16* fc = nullptr;
  };
  bf16* weight(std::int64_t offset) const;  // the BF16 copy of the tensor at a layout offset (throws where it has none)
  bool has_bf16(std::int64_t offset) const { return bf16_at_.count(offset) > 0; }
  const float* master(std::int64_t offset) const { return master_.as<float>() + offset; }
  float* g(std::int64_t offset) const;  // its FP32 gradient
  // The FP8 cast of linear weight w [OC][IC] with slot sw's scale: row-major into out and/or
  // transposed into out_t (either may be null), from its BF16 copy or, where it has none, its
  // FP32 master (under current scaling measured first when `prepare`).
  void cast_weight(std::int64_t w, int OC, int IC, int sw, std::uint8_t* out, std::uint8_t* out_t, fp8::CastStats* stats, bool prepare);
  // y[N, OC] = x[N, IC] W^T (+ b); `which` indexes model::linear_names() (qkv, proj, fc1, fc2,
  // lm_head), layer -1 for the head. out is BF16, or FP32 when out_fp32. In FP8 the input is
  // cast here, unless x_ready (a fused LayerNorm/GELU already wrote f8_x_ and the saved
  // transpose).
  // w_cast: the FP8 weight and its transpose (f8_w_, the saved w_t) are already this step's
  // (an earlier chunk of the head cast them).
  // x_codes (with x_ready): the FP8 input is there instead of in f8_x_.
  // gelu (fc1 under gelu_cast gemm_epilogue): the GEMM applies the GELU after the bias and
  // writes the activation to gelu->out instead of `out`, the GELU's input to gelu->pre (type
  // pre_type). In FP8 the activation is fc2's FP8 input (codes, with that slot's scale and amax)
  // and the input E4M3 at unit scale; in BF16 both BF16 (scale, amax null).
  struct GeluEpilogue {
    void* out;
    const float* scale;
    float* amax;
    void* pre;
    gemm::DType pre_type;
  };
  // residual: out = the linear's output + residual (the residual stream's add, [N][OC] BF16),
  // added in the GEMM's epilogue (C = residual, beta 1: one rounding to BF16 instead of two)
  // where cuBLASLt takes it, else by the residual kernel after the GEMM.
  void linear_forward(int layer, int which, void* out, bool out_fp32, const bf16* inp, std::int64_t w, std::int64_t b, int N, int IC,
                      int OC, bool x_ready = false, bool w_cast = false, const GeluEpilogue* gelu = nullptr,
                      const std::uint8_t* x_codes = nullptr, const bf16* residual = nullptr);
  // Runs c into out with residual as its C (beta 1) while cuBLASLt takes that, else c alone and
  // the residual kernel after it (from the first refusal on, recorded by residual_add()).
  void run_with_residual(GemmCall c, const void* A, const void* B, void* out, const bf16* residual, int N, int OC, const std::string& what);
  // out += residual by the residual kernel (its own profile phase): n elements.
  void add_residual(void* out, const bf16* residual, std::int64_t n);
  // The LM head and the loss of forward (and with a chunked head the head's backward): writes
  // losses_.
  void head_and_loss();
  bool head_chunked() const { return head_rows_ < std::int64_t(B_) * T_; }
  // act_pre (FP8 only, see fuses_activation_backward): dout is the gradient of the MLP's
  // activation of act_pre (GELU, or SwiGLU of fc1's output, [N][OC / 2] then), and the
  // activation's backward happens inside the gradient's cast. dy_ready (FP8 only, see
  // fuses_loss_cast): f8_dy_ already holds the cast gradient and dout is not read.
  //
  // gelu_cast gemm_epilogue, backward: fc2's dgrad applies the GELU's gradient in its epilogue
  // (DGELU_BGRAD, `dgelu`, reading the GELU's input from dgelu->pre): it writes fc1's output
  // gradient to dgelu->out instead of dinp (in FP8 codes, with that slot's scale and amax; in
  // BF16 the gradient) and fc1's bias gradient (BF16) to dgelu->dbias. fc1's backward then takes
  // the bias gradient from dy_bias, and in FP8 the codes from dy_codes (only their transpose is
  // left to make).
  struct DgeluEpilogue {
    void* out;
    const float* scale;
    float* amax;
    gemm::DType type;  // of out
    const void* pre;
    gemm::DType pre_type;
    bf16* dbias;
  };
  void linear_backward(int layer, int which, bf16* dinp, const bf16* dout, const bf16* inp, std::int64_t w, std::int64_t b, int N, int IC,
                       int OC, ActivationInput act_pre = {}, bool dy_ready = false, const DgeluEpilogue* dgelu = nullptr,
                       const std::uint8_t* dy_codes = nullptr, const bf16* dy_bias = nullptr, bool wgrad_adds = false);
  // The weight gradient's GEMM: beta 1 where it adds into what an earlier GEMM wrote this step
  // (`adds`: the head's later chunks) or every gradient is zeroed first (overwrite_wgrad false),
  // else 0: it writes the tensor whole (model::gradient_written_whole).
  float wgrad_beta(bool adds) const { return adds || !overwrite_wgrad_ ? 1.0f : 0.0f; }
  // Zeroes the gradients the step sums into (model::gradient_ranges_to_zero), or all of them.
  void zero_grads();
  // Whether fc2's dgrad applies the GELU's gradient (gelu_cast gemm_epilogue, until cuBLASLt
  // refuses it once: the GELU kernels then do it, as without the epilogue).
  bool dgelu_in_epilogue() const;
  void dgrad_with_dgelu(GemmCall dg, const DgeluEpilogue& dgelu, const void* A, const void* B, bf16* dinp, const std::string& name);
  // Whether a tensor's one scale is known before its BF16 values exist (delayed scaling; not
  // current scaling, which measures them first, nor per-row / per-block scaling, whose scales
  // come from the values): what casting inside the kernel that computes them needs.
  bool scale_before_cast() const;
  // Whether the loss kernel writes the FP8 LM head's gradient directly (with its cast's
  // statistics): scale_before_cast() and the loss's fast path.
  bool fuses_loss_cast() const;
  // Whether fc1's FP8 backward takes the activation's backward (GELU or SwiGLU) into its
  // gradient cast: scale_before_cast() and the tile loop's shapes.
  bool fuses_activation_backward() const;
  bool fp8_linear(int which) const { return fp8_ && fp8_->config().fp8(model::linear_names()[std::size_t(which)]); }
  // The FP8 copies a linear keeps from forward to backward: its input's transpose for wgrad
  // and, for the LM head and under per-row / per-block scaling, its weight's transpose for
  // dgrad (a block linear under per-tensor scaling casts its weight again in each pass: see
  // LayerWeightCasts); and its tap slots (input, weight, gradient), looked up once.
  struct Fp8Saved {
    core::DeviceBuffer x_t, w_t;
    int si = -1, sw = -1, sg = -1;
    // Per-row / per-block scaling: the scale tensors of x_t and w_t, and the slots of the
    // copies quantised along the other dimension (-1 where there is no such tap).
    core::DeviceBuffer x_t_lt, w_t_lt;
    int si_t = -1, sw_t = -1, sg_t = -1;
  };
  // Per-row / per-block scaling of linear `which`: forward casts its input and weight into
  // both copies each, backward its output gradient, and the GEMMs read them with their scale
  // tensors (fp8/block_cast.cuh). c: the forward GEMM as the BF16 path has it (bias, output).
  void block_linear_forward(int layer, int which, GemmCall c, void* out, const bf16* inp, std::int64_t w, int N, int IC, int OC);
  // b: the bias (-1: none), its gradient taken from the gradient's cast.
  void block_linear_backward(int layer, int which, bf16* dinp, const bf16* dout, std::int64_t w, std::int64_t b, int N, int IC, int OC,
                             float beta);
  Fp8Saved& saved(int layer, int which);
  // A layer's FP8 block weights cast from their FP32 masters (per-tensor scaling): forward casts
  // the four in one launch at the layer's start (row-major, with statistics: the vector loop),
  // backward their transposes in one launch at the layer's start in backward (the tile loop),
  // each into its place `at` in f8_w_ (-1: a linear cast where it is used, by cast_weight).
  // weight_cast optimizer (delayed scaling): every layer's FP8 weights are kept in f8_weights_
  // (1 byte a parameter; layer l's weight w at l * layer_codes_ + at[w]) and AdamW writes them
  // for the next step, so forward casts only where they are not current (the first step, after
  // set_params), and backward transposes the codes into f8_w_ (16-byte byte transposes: 2 bytes
  // a parameter moved against the cast's 5 from FP32). One launch per layer and pass instead of
  // one per GEMM gained little (GPT-2 124M on an H100: 28.97 -> 28.76 ms a step): what these
  // casts cost is their bytes, 10 a parameter from FP32.
  struct LayerWeightCasts {
    core::DeviceBuffer forward, backward;  // fp8::CastJobF32 each (backward: none under weight_cast optimizer)
    int n = 0;
    fp8::ManyCastSizes sizes;
    std::array<std::int64_t, 4> at{-1, -1, -1, -1}, offset{-1, -1, -1, -1};
    std::array<int, 4> rows{}, cols{};  // the weight's [OC][IC]
  };
  std::vector<LayerWeightCasts> layer_weights_;
  void cast_layer_weights(int l, bool backward);
  // Where linear `which` of `layer` finds its weight's transpose at the layer's start in
  // backward in f8_w_, or -1 (the LM head, or a weight cast where it is used).
  std::int64_t weight_cast_at(int layer, int which) const {
    return layer >= 0 && std::size_t(layer) < layer_weights_.size() ? layer_weights_[std::size_t(layer)].at[std::size_t(which)] : -1;
  }
  // Its FP8 weight in forward's layout (f8_weights_, else f8_w_), or nullptr where
  // weight_cast_at is -1.
  const std::uint8_t* weight_codes(int layer, int which) const {
    const std::int64_t at = weight_cast_at(layer, which);
    if (at < 0) return nullptr;
    return weights_cast_by_optimizer_ ? f8_weights_.as<std::uint8_t>() + std::int64_t(layer) * layer_codes_ + at
                                      : f8_w_.as<std::uint8_t>() + at;
  }
  // The AdamW tensors (one per parameter tensor; an FP8 block weight's codes and tap slot where
  // AdamW casts it) as chunks on the device.
  void build_adamw_chunks();
  // The fused variant's norm in front of an FP8 linear (LayerNorm, or RMSNorm for Llama):
  // writes the linear's FP8 input (f8_x_) and the transpose saved for its wgrad, with the
  // statistics (mean: LayerNorm's only) for the norm's backward.
  void norm_forward_fp8(const std::string& name, const bf16* x, core::DeviceBuffer& mean, core::DeviceBuffer& rstd, Fp8Saved& sv);
  void attention_forward(int l, LayerActs& a);
  // The fused attention's view of the heads: q/k/v inside qkv [N, 3C], out and dy in [N, C].
  AttentionHeads flash_heads() const {
    const int C = cfg_.d_model, NH = cfg_.n_head;
    AttentionHeads h{B_, NH, T_, cfg_.qkv_width(), C, 1.0f / std::sqrt(float(C / NH)), C / NH};
    h.KVH = cfg_.kv_heads();
    h.kernel = flash_kernel_;
    return h;
  }
  // A parameter's offset in the flat layout, -1 for one the architecture lacks (Llama: biases,
  // the position table).
  std::int64_t offset_or_none(const std::string& name) const {
    auto it = off_.find(name);
    return it == off_.end() ? -1 : it->second;
  }
  void attention_backward(int l, LayerActs& a);
  // The step's parts as they go on the stream, with nothing from the host but what the pinned
  // staging buffers hold: stage_* write those (the batch; AdamW's scalars for step t_ + 1),
  // enqueue_forward copies the batch up and ends with the loss's sum in results_[0],
  // enqueue_optimizer copies AdamW's scalars up, puts the gradients' sum of squares in
  // results_[1] and copies both results to the pinned h_results_.
  void stage_batch(const int* inputs, const int* targets);
  void stage_adamw(float lr, float grad_clip, const AdamWSettings& a);
  void enqueue_forward();
  void enqueue_backward();
  void enqueue_optimizer();
  float mean_loss() const { return float(double(h_results_[0]) / (double(B_) * T_)); }
  void mark(const char* phase);

  model::GptConfig cfg_;
  int B_, T_;
  std::int64_t head_rows_;    // rows of logits at once (model::lm_head_rows)
  bool bf16_logits_ = false;  // logits_ holds BF16 (model::GpuRunOptions)
  cudaStream_t stream_;
  GemmCache gemms_;
  std::vector<model::ParamTensor> layout_;
  std::int64_t n_params_;
  std::map<std::string, std::int64_t> off_;
  core::DeviceBuffer rope_;  // Llama: the rotary angles' cos / sin table, [T][HS / 2][2]
  core::DeviceBuffer dfc_;   // Llama: fc1's output gradient (gate and up), beside SwiGLU's input gradient
  core::DeviceBuffer master_, weights_, grads_, adam_m_, adam_v_;
  // Where each tensor's BF16 copy starts in weights_, by its layout offset. The FP8 block
  // linears' weights under per-tensor scaling have none (model::casts_weights_from_master).
  std::unordered_map<std::int64_t, std::int64_t> bf16_at_;
  core::DeviceBuffer tokens_, targets_, encoded_, lnf_, lnf_mean_, lnf_rstd_, logits_, dlogits_, losses_;
  core::DeviceBuffer q_, k_, v_, scores_, yh_, dx_, dbuf_, dbuf4_, dqkv_, dq_, dk_, dv_, dscores_;
  core::DeviceBuffer shared_ln_, shared_gelu_;  // the FP8 linears' inputs (LayerActs)
  std::vector<LayerActs> acts_;
  core::DeviceBuffer partials_;     // per-block partial sums of the deterministic reductions
  core::DeviceBuffer adam_chunks_;  // the parameter tensors as AdamW chunks (one launch per step)
  int n_adam_chunks_ = 0;
  // The token gradient's positions grouped by token on the device (TokenBuckets), with the
  // grouping's scratch (2N ints), positions 0..N-1 and cub's temporary storage.
  core::DeviceBuffer bucket_token_, bucket_start_, bucket_position_, bucket_count_, group_scratch_, group_iota_, group_temp_;
  TokenBuckets buckets() const {
    return {bucket_token_.as<int>(), bucket_start_.as<int>(), bucket_position_.as<int>(), bucket_count_.as<int>()};
  }
  // The step's inputs and results as the stream reads and writes them (see enqueue_forward):
  // staging for the batch and AdamW's scalars, their device copies, and the loss's sum and the
  // gradients' sum of squares on the device and back on the host.
  core::PinnedBuffer<int> h_tokens_, h_targets_;
  core::PinnedBuffer<AdamwStep> h_adamw_;
  core::PinnedBuffer<float> h_results_;
  core::DeviceBuffer adamw_step_, results_;
  // The captured steps, [recording the FP8 taps], each after one uncaptured step of its kind.
  struct StepGraph {
    core::GraphExec exec;
    int uncaptured = 0;
    bool codes_current = false;  // codes_current_ when captured
  };
  std::array<StepGraph, 2> graphs_;
  bool graphs_on_ = true;
  int graph_replays_ = 0;
  std::unique_ptr<Fp8Runtime> fp8_;
  GradReducer grad_reducer_;
  std::map<std::pair<int, int>, Fp8Saved> fp8_saved_;
  // FP8 scratch: the cast input and weight of the current GEMM, the cast output gradient and
  // its transpose, Q, K and V^T and the probabilities of FP8 attention.
  core::DeviceBuffer f8_x_, f8_w_, f8_dy_, f8_dy_t_, f8_q_, f8_k_, f8_vt_, f8_p_;
  // The head's wgrad transposes its FP8 gradient this many vocabulary columns at a time
  // (model::lm_head_wgrad_columns; the padded vocabulary: all at once).
  std::int64_t head_wgrad_cols_ = 0;
  // The weight gradients' GEMMs write their tensors whole (GpuRunOptions::overwrite_wgrad); the
  // ranges the step zeroes then, on the device.
  bool overwrite_wgrad_ = true;
  core::DeviceBuffer grad_zero_ranges_;
  int grad_zero_count_ = 0;
  // weight_cast optimizer: whether AdamW writes the FP8 block weights (delayed per-tensor
  // scaling), every layer's in f8_weights_ (LayerWeightCasts), layer_codes_ bytes a layer; and
  // whether those were cast with the scales the next forward pass uses (AdamW ran after the
  // last scale update; false at the start, after set_params and after a backward without
  // AdamW): forward casts them itself when not.
  core::DeviceBuffer f8_weights_;
  std::int64_t layer_codes_ = 0;
  bool weights_cast_by_optimizer_ = false, codes_current_ = false;
  // gelu_cast gemm_epilogue: fc1's bias gradient as fc2's DGELU_BGRAD writes it (BF16), and
  // whether cuBLASLt takes the forward's and the backward's epilogues (refused: the GELU kernels
  // run, as without the option).
  core::DeviceBuffer dgelu_dbias_;
  EpilogueTrial gelu_trial_, dgelu_trial_;
  // The residual add in the proj / fc2 GEMMs' epilogue (refused: the residual kernel).
  EpilogueTrial residual_trial_;
  // Per-row / per-block scaling: the scale tensors of f8_x_, f8_w_, f8_dy_ and f8_dy_t_, and
  // the row-wise casts' row and column amaxes.
  core::DeviceBuffer f8_x_lt_, f8_w_lt_, f8_dy_lt_, f8_dy_t_lt_, block_scratch_;
  bool flash_ = false;
  FlashKernel flash_kernel_ = FlashKernel::automatic;  // model::GpuRunOptions::flash_kernel
  bool gelu_epilogue_ = false;                         // model::GpuRunOptions::gelu_epilogue
  core::DeviceBuffer dsum_;                            // flash attention backward: rowsum(dO * O)
  int t_ = 0;
  bool profiling_ = false;
  std::vector<std::pair<std::string, cudaEvent_t>> marks_;
  // Profiling: the per-row / per-block casts as a phase of their own ("fp8_cast") inside the
  // phase that runs them (start), then that phase again (!start).
  void mark_cast_then_back(bool start);
  std::string resume_phase_;
};

}  // namespace fp8scope::gpu_model
