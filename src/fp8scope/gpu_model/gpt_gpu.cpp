#include "fp8scope/gpu_model/gpt_gpu.hpp"

#include "fp8scope/core/enum_names.hpp"

#include "fp8scope/fp8/block_cast.cuh"
#include "fp8scope/fp8/cast.cuh"
#include "fp8scope/model/rope.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <stdexcept>

namespace fp8scope::gpu_model {
using gemm::DType;

namespace {
std::size_t bf(std::int64_t n) { return std::size_t(n) * sizeof(bf16); }
std::size_t fl(std::int64_t n) { return std::size_t(n) * sizeof(float); }
// The block linears' weight tensors, in model::linear_names() order (qkv, proj, fc1, fc2).
constexpr std::pair<FlashKernel, const char*> kFlashKernelNames[] = {{FlashKernel::automatic, "automatic"},
                                                                     {FlashKernel::mma_sync, "mma_sync"},
                                                                     {FlashKernel::wgmma, "wgmma"},
                                                                     {FlashKernel::wgmma_tma, "wgmma_tma"}};
FlashKernel flash_kernel_named(const std::string& name) {
  if (auto k = core::value_of(kFlashKernelNames, name)) return *k;
  throw std::invalid_argument("flash_kernel '" + name + "': one of automatic, mma_sync, wgmma, wgmma_tma");
}
}  // namespace

GpuGpt::GpuGpt(const model::GptConfig& cfg, int B, int T, cudaStream_t stream, const model::Fp8ModelConfig* fp8,
               const model::GpuRunOptions& options)
    : cfg_(cfg),
      B_(B),
      T_(T),
      head_rows_(model::lm_head_rows(B, T, options.lm_head_chunk, fp8)),
      bf16_logits_(options.bf16_logits),
      stream_(stream),
      gemms_(stream, options.gemm_algos),
      layout_(model::param_layout(cfg)),
      n_params_(model::param_count(cfg)),
      graphs_on_(options.cuda_graph),
      flash_(options.flash_attention),
      flash_kernel_(flash_kernel_named(options.flash_kernel)),
      gelu_epilogue_(options.gelu_epilogue) {
  // The Llama block runs with the fused attention (grouped-query heads), so without FP8
  // attention; its RMSNorm and SwiGLU write FP8 in the fused variant.
  if (cfg.llama() && (!flash_ || (fp8 && fp8->attention())))
    throw std::invalid_argument("arch llama on the GPU needs the fused attention and the FP8 variant custom or fused");
  if (flash_ && (!flash_attention_supported(T, cfg.d_model / cfg.n_head) || (fp8 && fp8->attention())))
    throw std::invalid_argument("flash attention needs head size 64 or 128, T a multiple of 64 and no fp8_attention");
  if (auto e = model::check_lm_head_chunk(options.lm_head_chunk); !e.empty()) throw std::invalid_argument(e);
  // The GELU in cuBLASLt's epilogues (gelu_cast): GPT-2's; in FP8 only on the fused path it
  // replaces (check_train_point refuses the rest with the same lines). Both settings come from
  // the one axis, so they must agree.
  if (fp8 && fp8->gelu_epilogue != gelu_epilogue_)
    throw std::invalid_argument("gelu_epilogue: the FP8 config and the run options disagree (both come from gelu_cast)");
  if (gelu_epilogue_)
    if (auto e = model::check_gelu_epilogue(cfg, B, T, fp8); !e.empty()) throw std::invalid_argument(e);
  for (auto& t : layout_) off_[t.name] = t.offset;
  if (cfg.tied) off_["lm_head"] = off_["wte"];
  const std::int64_t N = std::int64_t(B) * T, C = cfg.d_model, Vp = cfg.padded_vocab(), BH = std::int64_t(B) * cfg.n_head;
  // The linears' widths: qkv's output (3C, or q with fewer k/v heads), the MLP's hidden width
  // (4C) and fc1's output (the hidden width, or gate and up side by side).
  const std::int64_t QW = cfg.qkv_width(), F = cfg.ffn_width(), FW = cfg.fc1_width();
  master_ = core::DeviceBuffer(fl(n_params_));
  {  // the BF16 copies: every tensor but the FP8 block weights cast from the master
    std::set<std::int64_t> from_master;
    if (fp8 && model::casts_weights_from_master(*fp8))
      for (int l = 0; l < cfg.n_layer; ++l)
        for (int w = 0; w < 4; ++w)
          if (const std::int64_t off = off_[fmt::format("h{}.{}", l, model::kBlockWeightNames[w])];
              fp8->fp8(model::linear_names()[std::size_t(w)]) && off % 8 == 0)
            from_master.insert(off);  // (the FP32 casts load 32-byte vectors)
    std::int64_t n = 0;
    for (const auto& t : layout_)
      if (!from_master.count(t.offset)) bf16_at_[t.offset] = n, n += (t.size + 7) / 8 * 8;  // 16-byte aligned copies
    weights_ = core::DeviceBuffer(bf(n));
  }
  grads_ = core::DeviceBuffer(fl(n_params_));
  overwrite_wgrad_ = options.overwrite_wgrad;
  if (overwrite_wgrad_) {
    const std::vector<model::FloatRange> zero = model::gradient_ranges_to_zero(cfg, std::int64_t(1) << 16);
    grad_zero_count_ = int(zero.size());
    grad_zero_ranges_ = core::DeviceBuffer(std::max<std::size_t>(1, zero.size()) * sizeof(model::FloatRange));
    FP8S_CUDA(cudaMemcpy(grad_zero_ranges_.get(), zero.data(), zero.size() * sizeof(model::FloatRange), cudaMemcpyHostToDevice));
  }
  adam_m_ = core::DeviceBuffer(fl(n_params_));
  adam_v_ = core::DeviceBuffer(fl(n_params_));
  FP8S_CUDA(cudaMemsetAsync(adam_m_.get(), 0, adam_m_.size(), stream_));
  FP8S_CUDA(cudaMemsetAsync(adam_v_.get(), 0, adam_v_.size(), stream_));
  tokens_ = core::DeviceBuffer(std::size_t(N) * sizeof(int));
  targets_ = core::DeviceBuffer(std::size_t(N) * sizeof(int));
  encoded_ = core::DeviceBuffer(bf(N * C));
  const bool fp8_qkv = fp8 && fp8->fp8("qkv"), fp8_fc1 = fp8 && fp8->fp8("fc1"), fp8_fc2 = fp8 && fp8->fp8("fc2");
  const bool pre8 = model::keeps_gelu_input_e4m3(cfg, fp8);  // GPT-2: FW = F, so fc fits dbuf4_
  dbuf4_ = core::DeviceBuffer(bf(N * F));
  if (fp8_qkv || fp8_fc1) shared_ln_ = core::DeviceBuffer(bf(N * C));  // ln1 and ln2 are each cast right away
  if (fp8_fc2 && !pre8) shared_gelu_ = core::DeviceBuffer(bf(N * F));
  for (int l = 0; l < cfg.n_layer; ++l) {
    LayerActs a;
    auto keep = [](core::DeviceBuffer& own, std::size_t bytes, bool fp8_consumer, const core::DeviceBuffer& shared) {
      if (!fp8_consumer) own = core::DeviceBuffer(bytes);
      return fp8_consumer ? shared.as<bf16>() : own.as<bf16>();
    };
    a.ln1 = keep(a.own_ln1, bf(N * C), fp8_qkv, shared_ln_);
    a.ln2 = keep(a.own_ln2, bf(N * C), fp8_fc1, shared_ln_);
    a.fc = keep(a.own_fc, bf(N * FW), pre8, dbuf4_);
    if (pre8) a.pre8 = core::DeviceBuffer(std::size_t(N * F));
    a.gelu = pre8 && fp8_fc2 ? a.fc : keep(a.own_gelu, bf(N * F), fp8_fc2, shared_gelu_);
    a.ln1_mean = core::DeviceBuffer(fl(N));
    a.ln1_rstd = core::DeviceBuffer(fl(N));
    a.qkv = core::DeviceBuffer(bf(N * QW));
    if (flash_)
      a.lse = core::DeviceBuffer(fl(BH * T));
    else
      a.probs = core::DeviceBuffer(bf(BH * T * T));
    a.atty = core::DeviceBuffer(bf(N * C));
    a.x_mid = core::DeviceBuffer(bf(N * C));
    a.ln2_mean = core::DeviceBuffer(fl(N));
    a.ln2_rstd = core::DeviceBuffer(fl(N));
    a.x_out = core::DeviceBuffer(bf(N * C));
    acts_.push_back(std::move(a));
  }
  lnf_ = core::DeviceBuffer(bf(N * C));
  lnf_mean_ = core::DeviceBuffer(fl(N));
  lnf_rstd_ = core::DeviceBuffer(fl(N));
  const std::int64_t R = head_rows_;  // the head's rows at once: all N, or one chunk
  logits_ = core::DeviceBuffer(bf16_logits_ ? bf(R * Vp) : fl(R * Vp));
  losses_ = core::DeviceBuffer(fl(N));
  if (!flash_) {  // per-head copies for the batched GEMMs (the fused kernels read heads in place)
    q_ = core::DeviceBuffer(bf(N * C));
    k_ = core::DeviceBuffer(bf(N * C));
    v_ = core::DeviceBuffer(bf(N * C));
    yh_ = core::DeviceBuffer(bf(N * C));
    dq_ = core::DeviceBuffer(bf(N * C));
    dk_ = core::DeviceBuffer(bf(N * C));
    dv_ = core::DeviceBuffer(bf(N * C));
    scores_ = core::DeviceBuffer(fl(BH * T * T));
    dscores_ = core::DeviceBuffer(bf(BH * T * T));
  } else {
    dsum_ = core::DeviceBuffer(fl(BH * T));
  }
  dx_ = core::DeviceBuffer(bf(N * C));
  dbuf_ = core::DeviceBuffer(bf(N * C));
  dqkv_ = core::DeviceBuffer(bf(N * QW));
  if (cfg.llama()) {
    dfc_ = core::DeviceBuffer(bf(N * FW));
    const std::vector<float> table = model::rope_cos_sin(T, cfg.head_dim(), cfg.rope_theta);
    rope_ = core::DeviceBuffer(table.size() * sizeof(float));
    FP8S_CUDA(cudaMemcpyAsync(rope_.get(), table.data(), rope_.size(), cudaMemcpyHostToDevice, stream_));
    FP8S_CUDA(cudaStreamSynchronize(stream_));  // the table is a local
  }
  h_tokens_ = core::PinnedBuffer<int>(std::size_t(N));
  h_targets_ = core::PinnedBuffer<int>(std::size_t(N));
  h_adamw_ = core::PinnedBuffer<AdamwStep>(1);
  h_results_ = core::PinnedBuffer<float>(2);
  adamw_step_ = core::DeviceBuffer(sizeof(AdamwStep));
  results_ = core::DeviceBuffer(2 * sizeof(float));
  // Bias gradients' partial sums for the widest biased linear (fc1, or qkv where ffn < 3 d_model).
  const std::int64_t BW = std::max(QW, FW);
  partials_ = core::DeviceBuffer(
      fl(std::max({layernorm_backward_scratch_floats(N, int(C)), bias_backward_scratch_floats(int(BW)),
                   fp8::dbias_partial_floats(N, int(BW)), std::int64_t(fp8::block_cast_sum_rows(N)) * BW, std::int64_t(1024)})));
  bucket_token_ = core::DeviceBuffer(std::size_t(N) * sizeof(int));
  bucket_start_ = core::DeviceBuffer(std::size_t(N + 1) * sizeof(int));
  bucket_position_ = core::DeviceBuffer(std::size_t(N) * sizeof(int));
  bucket_count_ = core::DeviceBuffer(sizeof(int));
  group_scratch_ = core::DeviceBuffer(std::size_t(2 * N) * sizeof(int));
  group_iota_ = core::DeviceBuffer(std::size_t(N) * sizeof(int));
  group_temp_ = core::DeviceBuffer(group_tokens_temp_bytes(int(N), int(Vp)));
  fill_iota(group_iota_.as<int>(), int(N), stream_);
  if (gelu_epilogue_) dgelu_dbias_ = core::DeviceBuffer(std::size_t(F) * sizeof(bf16));  // fc1's bias gradient from DGELU_BGRAD
  if (fp8) {
    fp8_ = std::make_unique<Fp8Runtime>(cfg, B, T, *fp8, stream_, flash_);
    // As wide as the widest FP8 linear (the head's gradient: one chunk of rows).
    const bool head = fp8->fp8("lm_head");
    const std::int64_t widest = std::max({QW, FW, head ? Vp : 0}), dy = std::max(N * std::max(QW, FW), head ? R * Vp : 0);
    // The head's gradient transposed a slice of columns at a time where the loss writes it in FP8.
    head_wgrad_cols_ =
        fuses_loss_cast() && options.slice_head_wgrad ? model::lm_head_wgrad_columns(cfg, B, T, options.lm_head_chunk, *fp8) : Vp;
    f8_x_ = core::DeviceBuffer(std::size_t(N * std::max(C, F)));
    // (f8_w_ also holds one layer's block weights cast from their masters: see LayerWeightCasts.)
    std::int64_t layer_weights = 0;
    for (const auto& sh : model::linear_shapes(cfg))
      if (std::string(sh.name) != "lm_head" && fp8->fp8(sh.name) && model::casts_weights_from_master(*fp8)) layer_weights += sh.in * sh.out;
    f8_w_ = core::DeviceBuffer(std::size_t(std::max(widest * C, layer_weights)));
    f8_dy_ = core::DeviceBuffer(std::size_t(dy));
    f8_dy_t_ = core::DeviceBuffer(std::size_t(std::max(N * std::max(QW, FW), head ? R * head_wgrad_cols_ : 0)));
    if (fp8_->config().attention()) {
      f8_q_ = core::DeviceBuffer(std::size_t(N * C));
      f8_k_ = core::DeviceBuffer(std::size_t(N * C));
      f8_vt_ = core::DeviceBuffer(std::size_t(N * C));
      f8_p_ = core::DeviceBuffer(std::size_t(BH * T * T));
    }
    const std::vector<model::LinearShape> shapes = model::linear_shapes(cfg);
    // Per-row / per-block scaling: scale tensors of `floats` elements (their padding zeroed
    // once, never written).
    auto lt_buffer = [&](std::int64_t floats) {
      core::DeviceBuffer b(std::size_t(floats) * sizeof(float));
      FP8S_CUDA(cudaMemsetAsync(b.get(), 0, b.size(), stream_));
      return b;
    };
    auto lt_floats = [](fp8::ScaleMode m, std::int64_t outer, std::int64_t inner) {
      return fp8::scale_geometry(m, outer, inner).lt_elements();
    };
    for (int l = -1; l < cfg.n_layer; ++l)
      for (int w = 0; w < 5; ++w) {
        if ((l < 0) != (w == 4) || !fp8_linear(w)) continue;
        const std::int64_t IC = shapes[std::size_t(w)].in, OC = shapes[std::size_t(w)].out;
        const std::string& name = model::linear_names()[std::size_t(w)];
        const bool keeps_w_t = w == 4 || fp8_->per_block();
        Fp8Saved& sv = fp8_saved_[{l, w}] =
            Fp8Saved{core::DeviceBuffer(std::size_t(N * IC)), keeps_w_t ? core::DeviceBuffer(std::size_t(OC * IC)) : core::DeviceBuffer(),
                     fp8_->slot(l, name + ".input"), fp8_->slot(l, name + ".weight"), fp8_->slot(l, name + ".grad")};
        if (fp8_->per_block()) {
          sv.si_t = fp8_->slot(l, name + ".input_t"), sv.sw_t = fp8_->slot(l, name + ".weight_t"),
          sv.sg_t = fp8_->slot(l, name + ".grad_t");
          sv.x_t_lt = lt_buffer(lt_floats(fp8_->activation_mode(), IC, N));
          sv.w_t_lt = lt_buffer(lt_floats(fp8_->weight_mode(), IC, OC));
        }
      }
    // The block weights cast from their FP32 masters, one launch per layer and pass (see
    // LayerWeightCasts): into f8_w_ one after another, or (weight_cast optimizer) into every
    // layer's codes in f8_weights_, where AdamW writes them from the second step on.
    const fp8::Format wf = fp8::format_for(fp8->recipe.format, fp8::Pass::forward);
    weights_cast_by_optimizer_ = options.weights_cast_by_optimizer && scale_before_cast() && !fp8_->per_block() && layer_weights > 0;
    if (weights_cast_by_optimizer_) {
      layer_codes_ = layer_weights, f8_weights_ = core::DeviceBuffer(std::size_t(cfg.n_layer * layer_codes_));
      fp8_->carried_stats();
    }
    for (int l = 0; l < cfg.n_layer; ++l) {
      LayerWeightCasts lw;
      std::vector<fp8::CastJobF32> fwd, bwd;
      std::int64_t at = 0;
      for (int w = 0; w < 4; ++w) {
        const std::int64_t off = off_[fmt::format("h{}.{}", l, model::kBlockWeightNames[w])];
        if (!fp8_linear(w) || has_bf16(off) || fp8_->per_block()) continue;
        const int IC = int(shapes[std::size_t(w)].in), OC = int(shapes[std::size_t(w)].out), sw = saved(l, w).sw;
        if (fp8_->format(sw) != wf || !fp8::tile_cast_fits(OC, IC)) continue;  // cast where it is used instead
        lw.at[std::size_t(w)] = at, lw.offset[std::size_t(w)] = off, lw.rows[std::size_t(w)] = OC, lw.cols[std::size_t(w)] = IC;
        std::uint8_t* q =
            weights_cast_by_optimizer_ ? f8_weights_.as<std::uint8_t>() + l * layer_codes_ + at : f8_w_.as<std::uint8_t>() + at;
        fwd.push_back({master(off), q, nullptr, fp8_->scale(sw), fp8_->stats(sw), OC, IC});
        if (!weights_cast_by_optimizer_)  // (else backward transposes the kept codes)
          bwd.push_back({master(off), nullptr, f8_w_.as<std::uint8_t>() + at, fp8_->scale(sw), nullptr, OC, IC});
        lw.sizes.add(OC, IC);
        at += std::int64_t(OC) * IC;
      }
      lw.n = int(fwd.size());
      if (lw.n > 0) {
        lw.forward = core::DeviceBuffer(fwd.size() * sizeof(fp8::CastJobF32));
        FP8S_CUDA(cudaMemcpy(lw.forward.get(), fwd.data(), lw.forward.size(), cudaMemcpyHostToDevice));
        if (!bwd.empty()) {
          lw.backward = core::DeviceBuffer(bwd.size() * sizeof(fp8::CastJobF32));
          FP8S_CUDA(cudaMemcpy(lw.backward.get(), bwd.data(), lw.backward.size(), cudaMemcpyHostToDevice));
        }
      }
      layer_weights_.push_back(std::move(lw));
    }
    if (fp8_->per_block()) {
      const model::PerBlockScratch ps = model::per_block_scratch(cfg, B, T, *fp8);
      f8_x_lt_ = lt_buffer(ps.x_lt);
      f8_w_lt_ = lt_buffer(ps.w_lt);
      f8_dy_lt_ = lt_buffer(ps.dy_lt);
      f8_dy_t_lt_ = lt_buffer(ps.dy_t_lt);
      block_scratch_ = core::DeviceBuffer(fp8::block_cast_scratch_floats(int(ps.widest_rows), int(ps.widest_cols)) * sizeof(float));
    }
  }
  if (!fuses_loss_cast()) dlogits_ = core::DeviceBuffer(bf(R * Vp));  // else the loss writes FP8 into f8_dy_
  build_adamw_chunks();
}

void GpuGpt::build_adamw_chunks() {
  std::map<std::int64_t, std::pair<std::int64_t, int>> codes;  // layout offset -> (codes offset, slot)
  if (weights_cast_by_optimizer_)
    for (int l = 0; l < int(layer_weights_.size()); ++l)
      for (int w = 0; w < 4; ++w)
        if (const std::uint8_t* q = weight_codes(l, w))
          codes[layer_weights_[std::size_t(l)].offset[std::size_t(w)]] = {q - f8_weights_.as<std::uint8_t>(), saved(l, w).sw};
  std::vector<AdamwTensor> tensors;
  for (const auto& t : layout_) {
    if (auto it = codes.find(t.offset); it != codes.end())
      tensors.push_back({t.offset, t.size, t.decay, it->second.first, it->second.second});
    else
      tensors.push_back({t.offset, t.size, t.decay, has_bf16(t.offset) ? bf16_at_.at(t.offset) : -1});
  }
  const std::vector<AdamwChunk> chunks = adamw_chunks(tensors);
  n_adam_chunks_ = int(chunks.size());
  adam_chunks_ = core::DeviceBuffer(chunks.size() * sizeof(AdamwChunk));
  FP8S_CUDA(cudaMemcpy(adam_chunks_.get(), chunks.data(), adam_chunks_.size(), cudaMemcpyHostToDevice));
}

std::string GpuGpt::weight_cast() const {
  if (weights_cast_by_optimizer_) return "optimizer";
  for (const auto& lw : layer_weights_)
    if (lw.n > 0) return "forward";
  return "";
}

GpuGpt::Fp8Saved& GpuGpt::saved(int layer, int which) { return fp8_saved_.at({layer, which}); }

void GpuGpt::cast_layer_weights(int l, bool backward) {
  if (!fp8_ || std::size_t(l) >= layer_weights_.size() || layer_weights_[std::size_t(l)].n == 0) return;
  const LayerWeightCasts& lw = layer_weights_[std::size_t(l)];
  Fp8Runtime& f = *fp8_;
  const fp8::Format wf = fp8::format_for(f.config().recipe.format, fp8::Pass::forward);
  if (backward && weights_cast_by_optimizer_) {  // the kept codes transposed: the transposes' codes with forward's scales
    for (int w = 0; w < 4; ++w)
      if (const std::uint8_t* q = weight_codes(l, w))
        fp8::transpose_fp8(f8_w_.as<std::uint8_t>() + lw.at[std::size_t(w)], q, lw.rows[std::size_t(w)], lw.cols[std::size_t(w)], stream_);
    return;
  }
  if (backward) {
    fp8::quantize_many(lw.backward.as<fp8::CastJobF32>(), lw.n, lw.sizes, wf, f.overflow(), stream_);
    return;
  }
  if (codes_current_) return;  // AdamW cast them, with this step's scales
  // current scaling: each weight's scale from its own amax first (backward reuses it)
  for (int w = 0; w < 4; ++w)
    if (lw.at[std::size_t(w)] >= 0)
      f.prepare(saved(l, w).sw, master(lw.offset[std::size_t(w)]), std::int64_t(lw.rows[std::size_t(w)]) * lw.cols[std::size_t(w)]);
  fp8::quantize_rows_many(lw.forward.as<fp8::CastJobF32>(), lw.n, lw.sizes, wf, f.overflow(), stream_);
}

bf16* GpuGpt::weight(std::int64_t offset) const {
  auto it = bf16_at_.find(offset);
  if (it == bf16_at_.end()) throw std::logic_error(fmt::format("the parameter at offset {} has no BF16 copy", offset));
  return weights_.as<bf16>() + it->second;
}

void GpuGpt::cast_weight(std::int64_t w, int OC, int IC, int sw, std::uint8_t* out, std::uint8_t* out_t, fp8::CastStats* stats,
                         bool prepare) {
  Fp8Runtime& f = *fp8_;
  const std::int64_t n = std::int64_t(OC) * IC;
  auto cast = [&](const auto* src) {
    if (prepare) f.prepare(sw, src, n);
    if (out_t)
      fp8::quantize_transpose(out, out_t, src, OC, IC, f.scale(sw), f.format(sw), f.overflow(), stats, stream_);
    else
      fp8::quantize(out, src, n, f.scale(sw), f.format(sw), f.overflow(), stats, stream_);
  };
  if (has_bf16(w))
    cast(static_cast<const bf16*>(weight(w)));
  else
    cast(master(w));
}
float* GpuGpt::g(std::int64_t offset) const { return grads_.as<float>() + offset; }

void GpuGpt::set_params(const std::vector<float>& params) {
  FP8S_CUDA(cudaMemcpyAsync(master_.get(), params.data(), fl(n_params_), cudaMemcpyHostToDevice, stream_));
  for (const auto& t : layout_)
    if (has_bf16(t.offset)) cast_to_bf16(weight(t.offset), master(t.offset), t.size, stream_);
  codes_current_ = false;  // the next forward casts the FP8 block weights from these masters
  FP8S_CUDA(cudaStreamSynchronize(stream_));
}

namespace {
std::vector<float> download_floats(const core::DeviceBuffer& b, std::int64_t n) {
  std::vector<float> out(static_cast<std::size_t>(n));
  FP8S_CUDA(cudaMemcpy(out.data(), b.get(), fl(n), cudaMemcpyDeviceToHost));
  return out;
}
}  // namespace
std::vector<float> GpuGpt::params() const { return download_floats(master_, n_params_); }
std::vector<float> GpuGpt::grads() const { return download_floats(grads_, n_params_); }
std::vector<float> GpuGpt::logits() const {
  if (head_chunked()) throw std::logic_error("the LM head runs in chunks: only the last chunk's logits exist");
  if (bf16_logits_) {
    std::vector<bf16> h(logits_.size() / sizeof(bf16));
    FP8S_CUDA(cudaMemcpy(h.data(), logits_.get(), logits_.size(), cudaMemcpyDeviceToHost));
    std::vector<float> out;
    out.reserve(h.size());
    for (bf16 x : h) out.push_back(__bfloat162float(x));
    return out;
  }
  std::vector<float> out(logits_.size() / sizeof(float));
  FP8S_CUDA(cudaMemcpy(out.data(), logits_.get(), logits_.size(), cudaMemcpyDeviceToHost));
  return out;
}

void GpuGpt::zero_grads() {
  if (overwrite_wgrad_)
    zero_ranges(grads_.as<float>(), grad_zero_ranges_.as<model::FloatRange>(), grad_zero_count_, stream_);
  else
    FP8S_CUDA(cudaMemsetAsync(grads_.get(), 0, grads_.size(), stream_));
}

void GpuGpt::mark(const char* phase) {
  if (!profiling_) return;
  cudaEvent_t e;
  FP8S_CUDA(cudaEventCreate(&e));
  FP8S_CUDA(cudaEventRecord(e, stream_));
  marks_.emplace_back(phase, e);
}

void GpuGpt::mark_cast_then_back(bool start) {
  if (!profiling_ || marks_.empty()) return;
  if (start) {
    resume_phase_ = marks_.back().first;
    mark("fp8_cast");
  } else {
    mark(resume_phase_.c_str());
  }
}

std::map<std::string, double> GpuGpt::last_profile() {
  std::map<std::string, double> out;
  if (marks_.size() < 2) return out;
  FP8S_CUDA(cudaEventSynchronize(marks_.back().second));
  for (std::size_t i = 0; i + 1 < marks_.size(); ++i) {
    float ms = 0;
    FP8S_CUDA(cudaEventElapsedTime(&ms, marks_[i].second, marks_[i + 1].second));
    out[marks_[i].first] += ms;
  }
  for (auto& [n, e] : marks_) cudaEventDestroy(e);
  marks_.clear();
  return out;
}

void GpuGpt::run_with_residual(GemmCall c, const void* A, const void* B, void* out, const bf16* residual, int N, int OC,
                               const std::string& what) {
  GemmCall r = c;
  r.c = residual, r.beta = 1.0f;
  if (residual_trial_.attempt([&] { gemms_.run(r, A, B, out, what.c_str()); })) return;
  gemms_.run(c, A, B, out, what.c_str());
  add_residual(out, residual, std::int64_t(N) * OC);
}

void GpuGpt::add_residual(void* out, const bf16* residual, std::int64_t n) {
  mark("residual");
  residual_forward(static_cast<bf16*>(out), residual, static_cast<const bf16*>(out), n, stream_);
}

nlohmann::json GpuGpt::residual_add() const {
  if (fp8_ && fp8_->per_block()) return "kernel";  // (linear_forward keeps the scaled GEMMs to their bias)
  if (residual_trial_.state == 0) return nullptr;
  if (residual_trial_.state > 0) return "gemm_epilogue";
  return {{"ran", "kernel"}, {"refused", residual_trial_.refusal}};
}

// y[N, OC] = x[N, IC] W^T + b with W [OC, IC] row-major: column-major D (OC x N) = W^T(op T of
// the IC x OC view) . x (IC x N): layout TN, m=OC, n=N, k=IC. In FP8 the same TN GEMM reads
// the FP8 copies of W and x with their dequantisation scales (TN is the layout Hopper's FP8
// tensor cores take).
void GpuGpt::linear_forward(int layer, int which, void* out, bool out_fp32, const bf16* inp, std::int64_t w, std::int64_t b, int N, int IC,
                            int OC, bool x_ready, bool w_cast, const GeluEpilogue* gelu, const std::uint8_t* x_codes,
                            const bf16* residual) {
  const std::string& name = model::linear_names()[std::size_t(which)];
  GemmCall c{true, false, OC, N, IC, IC, IC, OC};
  c.bias = b >= 0 ? weight(b) : nullptr;
  c.d = out_fp32 ? DType::fp32 : DType::bf16;
  if (residual && (out_fp32 || gelu)) throw std::logic_error("linear_forward: a residual is added to a BF16 output without a GELU");
  if (!fp8_linear(which)) {
    if (gelu) {  // D [N][OC] the activation, the aux beside it, both BF16 with ld OC
      c.gelu_aux = gelu->pre, c.aux = gelu->pre_type, c.aux_ld = OC;
      out = gelu->out;
    }
    if (residual)
      run_with_residual(c, weight(w), inp, out, residual, N, OC, name);
    else
      gemms_.run(c, weight(w), inp, out, name.c_str());
    return;
  }
  if (fp8_->per_block()) {  // (the scaled GEMMs' epilogue keeps to the bias: the residual after)
    block_linear_forward(layer, which, c, out, inp, w, N, IC, OC);
    if (residual) add_residual(out, residual, std::int64_t(N) * OC);
    return;
  }
  Fp8Runtime& f = *fp8_;
  Fp8Saved& sv = saved(layer, which);
  const int si = sv.si, sw = sv.sw;
  if (!x_ready) {
    f.prepare(si, inp, std::int64_t(N) * IC);
    fp8::quantize_transpose(f8_x_.as<std::uint8_t>(), sv.x_t.as<std::uint8_t>(), inp, N, IC, f.scale(si), f.format(si), f.overflow(),
                            f.stats(si), stream_);
  }
  // The LM head keeps its weight's transpose for dgrad (and for the later chunks); a block
  // linear's backward casts the transpose again, or transposes the kept codes (LayerWeightCasts).
  const std::int64_t at = weight_cast_at(layer, which);
  if (!w_cast && at < 0)
    cast_weight(w, OC, IC, sw, f8_w_.as<std::uint8_t>(), sv.w_t.size() > 0 ? sv.w_t.as<std::uint8_t>() : nullptr, f.stats(sw), true);
  c.a = DType::e4m3;
  c.b = f.format(si) == fp8::Format::e4m3 ? DType::e4m3 : DType::e5m2;
  c.a_scale = f.scale_inv(sw);
  c.b_scale = f.scale_inv(si);
  c.fast_accum = f.config().fast_accum_fprop;
  if (gelu) {  // D [N][OC] in E4M3 and the aux beside it, both with ld OC
    c.d = DType::e4m3;
    c.d_scale = gelu->scale;
    c.amax_d = gelu->amax;
    c.gelu_aux = gelu->pre, c.aux = gelu->pre_type, c.aux_ld = OC;
    out = gelu->out;
  }
  const std::uint8_t* w8 = at >= 0 ? weight_codes(layer, which) : f8_w_.as<std::uint8_t>();
  const void* x8 = x_codes ? static_cast<const void*>(x_codes) : f8_x_.get();
  if (residual)
    run_with_residual(c, w8, x8, out, residual, N, OC, name + " fprop");
  else
    gemms_.run(c, w8, x8, out, (name + " fprop").c_str());
}

// BF16:
// dx[N, IC] = dy[N, OC] W:   NN, m=IC, n=N, k=OC   (W viewed as IC x OC)
// dW[OC, IC] += dy^T x:       NT, m=IC, n=OC, k=N, FP32 output accumulated (beta 1)
// FP8 (TN only, so the transposes saved in forward and made here):
// dx = dgrad:  TN, m=IC, n=N, k=OC, A = W^T [IC][OC], B = dy [N][OC]
// dW += wgrad: TN, m=IC, n=OC, k=N,  A = x^T [IC][N],  B = dy^T [OC][N]
// db[OC] += sum_n dy[n, :] from the high-precision gradient, as FP8 frameworks do.
bool GpuGpt::scale_before_cast() const { return fp8_ && fp8_->config().recipe.scaling == fp8::Scaling::delayed; }

bool GpuGpt::fuses_loss_cast() const { return fp8_linear(4) && scale_before_cast() && cross_entropy_fp8_fits(cfg_.padded_vocab()); }

bool GpuGpt::fuses_activation_backward() const {
  const int N = B_ * T_;
  return fp8_linear(2) && scale_before_cast() &&
         (cfg_.llama() ? swiglu_cast_fits(N, cfg_.ffn_width()) : fp8::tile_cast_fits(N, cfg_.ffn_width()));
}

// The dgrad dg with the GELU's gradient in its epilogue (DGELU_BGRAD) into dgelu.out; if
// cuBLASLt refuses that the first time, the plain dgrad into dinp, now and from then on
// (dgelu_in_epilogue() turns false, and the caller's GELU kernels take over).
void GpuGpt::dgrad_with_dgelu(GemmCall dg, const DgeluEpilogue& dgelu, const void* A, const void* B, bf16* dinp, const std::string& name) {
  GemmCall de = dg;
  de.d = dgelu.type;
  de.d_scale = dgelu.scale, de.amax_d = dgelu.amax;
  de.dgelu_input = dgelu.pre, de.aux = dgelu.pre_type, de.aux_ld = dg.m;  // the GELU input is laid out as D
  de.dbias = dgelu.dbias;
  if (!dgelu_trial_.attempt([&] { gemms_.run(de, A, B, dgelu.out, (name + " dgrad").c_str()); }))
    gemms_.run(dg, A, B, dinp, (name + " dgrad").c_str());
}

bool GpuGpt::dgelu_in_epilogue() const { return gelu_epilogue_ && dgelu_trial_.usable(); }

nlohmann::json GpuGpt::gelu_epilogue() const {
  if (!gelu_epilogue_) return nullptr;
  nlohmann::json j = {{"forward", gelu_trial_.state > 0 ? "GELU_AUX_BIAS" : "GELU kernel"},
                      {"backward", dgelu_trial_.state > 0 ? "DGELU_BGRAD" : "GELU kernel"}};
  if (gelu_trial_.state < 0) j["forward_refused"] = gelu_trial_.refusal;
  if (dgelu_trial_.state < 0) j["backward_refused"] = dgelu_trial_.refusal;
  return j;
}

void GpuGpt::linear_backward(int layer, int which, bf16* dinp, const bf16* dout, const bf16* inp, std::int64_t w, std::int64_t b, int N,
                             int IC, int OC, ActivationInput act_pre, bool dy_ready, const DgeluEpilogue* dgelu,
                             const std::uint8_t* dy_codes, const bf16* dy_bias, bool wgrad_adds) {
  const std::string& name = model::linear_names()[std::size_t(which)];
  if (dy_ready && b >= 0) throw std::logic_error("a gradient cast elsewhere has no bias gradient");
  if (dy_codes && (!fp8_linear(which) || fp8_->per_block() || (b >= 0 && !dy_bias)))
    throw std::logic_error("given gradient codes need a per-tensor FP8 linear (and their bias gradient)");
  if (fp8_linear(which) && fp8_->per_block()) {
    block_linear_backward(layer, which, dinp, dout, w, b, N, IC, OC, wgrad_beta(wgrad_adds));
    return;
  }
  // FP8: the bias gradient comes out of the gradient's cast (same values, one read fewer).
  // Given (dy_bias): cuBLASLt's DGELU_BGRAD wrote it with the gradient.
  const bool dbias_in_cast = fp8_linear(which) && b >= 0 && !dy_bias && fp8::tile_cast_fits(N, OC);
  if (b >= 0 && dy_bias)
    add_bf16_into(g(b), dy_bias, OC, stream_);
  else if (b >= 0 && !dbias_in_cast)
    bias_backward(g(b), partials_.as<float>(), dout, N, OC, stream_);
  if (!fp8_linear(which)) {
    const GemmCall dg{false, false, IC, N, OC, IC, OC, IC};
    if (dgelu)
      dgrad_with_dgelu(dg, *dgelu, weight(w), dout, dinp, name);
    else
      gemms_.run(dg, weight(w), dout, dinp, (name + " dgrad").c_str());
    GemmCall dw{false, true, IC, OC, N, IC, OC, IC};
    dw.d = DType::fp32;
    dw.beta = wgrad_beta(wgrad_adds);
    gemms_.run(dw, inp, dout, g(w), (name + " wgrad").c_str());
    return;
  }
  Fp8Runtime& f = *fp8_;
  Fp8Saved& sv = saved(layer, which);
  const int si = sv.si, sw = sv.sw, sg = sv.sg;
  if (dy_codes) {  // fc2's dgrad wrote them (dgelu_in_epilogue): their transpose is left
    fp8::transpose_fp8_counting(f8_dy_t_.as<std::uint8_t>(), dy_codes, N, OC, f.format(sg), f.stats(sg), stream_);
  } else if (dy_ready) {                 // the loss wrote the FP8 gradient (fuses_loss_cast): only its transpose is left, below
  } else if (act_pre && cfg_.llama()) {  // fuses_activation_backward(): delayed scaling, so no prepare
    dswiglu_cast_transpose(f8_dy_.as<std::uint8_t>(), f8_dy_t_.as<std::uint8_t>(), dout, act_pre.bf16_values, N, OC / 2, f.scale(sg),
                           f.format(sg), f.overflow(), f.stats(sg), stream_);
  } else if (act_pre.e4m3) {
    dgelu_cast_transpose_dbias(f8_dy_.as<std::uint8_t>(), f8_dy_t_.as<std::uint8_t>(), partials_.as<float>(), dout, act_pre.e4m3, N, OC,
                               f.scale(sg), f.format(sg), f.overflow(), f.stats(sg), stream_);
  } else if (act_pre) {
    dgelu_cast_transpose_dbias(f8_dy_.as<std::uint8_t>(), f8_dy_t_.as<std::uint8_t>(), partials_.as<float>(), dout, act_pre.bf16_values, N,
                               OC, f.scale(sg), f.format(sg), f.overflow(), f.stats(sg), stream_);
  } else {
    f.prepare(sg, dout, std::int64_t(N) * OC);
    if (dbias_in_cast)
      fp8::quantize_transpose_dbias(f8_dy_.as<std::uint8_t>(), f8_dy_t_.as<std::uint8_t>(), partials_.as<float>(), dout, N, OC, f.scale(sg),
                                    f.format(sg), f.overflow(), f.stats(sg), stream_);
    else
      fp8::quantize_transpose(f8_dy_.as<std::uint8_t>(), f8_dy_t_.as<std::uint8_t>(), dout, N, OC, f.scale(sg), f.format(sg), f.overflow(),
                              f.stats(sg), stream_);
  }
  if (dbias_in_cast) column_sum_add(g(b), partials_.as<float>(), fp8::dbias_partial_rows(N), OC, OC, stream_);
  const DType gt = f.format(sg) == fp8::Format::e4m3 ? DType::e4m3 : DType::e5m2;
  GemmCall dg{true, false, IC, N, OC, OC, OC, IC};
  dg.a = DType::e4m3, dg.b = gt;
  dg.a_scale = f.scale_inv(sw), dg.b_scale = f.scale_inv(sg);
  dg.fast_accum = f.config().fast_accum_dgrad;
  // Without a kept transpose: the weight's transpose with forward's scale (forward's codes,
  // transposed; no second statistics), cast at the layer's start or here.
  const std::int64_t at = weight_cast_at(layer, which);
  if (sv.w_t.size() == 0 && at < 0) cast_weight(w, OC, IC, sw, nullptr, f8_w_.as<std::uint8_t>(), nullptr, false);
  const void* w_t = sv.w_t.size() > 0 ? sv.w_t.get() : f8_w_.as<std::uint8_t>() + std::max<std::int64_t>(at, 0);
  const void* dy = dy_codes ? static_cast<const void*>(dy_codes) : f8_dy_.get();
  if (dgelu)
    dgrad_with_dgelu(dg, *dgelu, w_t, dy, dinp, name);
  else
    gemms_.run(dg, w_t, dy, dinp, (name + " dgrad").c_str());
  // The weight gradient; the head's, where the loss wrote its FP8 gradient, a slice of
  // vocabulary columns at a time (model::lm_head_wgrad_columns; all at once where they fit):
  // each slice's transpose, then the GEMM into that slice's rows of the gradient.
  const bool transpose_here = dy_ready && !dy_codes;
  const std::int64_t cols = transpose_here ? std::min<std::int64_t>(head_wgrad_cols_, OC) : OC;
  for (std::int64_t c0 = 0; c0 < OC; c0 += cols) {
    const std::int64_t n = std::min(cols, OC - c0);
    if (transpose_here) fp8::transpose_fp8_columns(f8_dy_t_.as<std::uint8_t>(), f8_dy_.as<std::uint8_t>() + c0, N, int(n), OC, stream_);
    GemmCall wg{true, false, IC, n, N, N, N, IC};
    wg.a = DType::e4m3, wg.b = gt, wg.d = DType::fp32;
    wg.beta = wgrad_beta(wgrad_adds);
    wg.a_scale = f.scale_inv(si), wg.b_scale = f.scale_inv(sg);
    wg.fast_accum = f.config().fast_accum_wgrad;
    gemms_.run(wg, sv.x_t.get(), f8_dy_t_.get(), g(w) + c0 * IC, (name + " wgrad").c_str());
  }
}

// Per-row / per-block scaling, the same GEMMs as per-tensor FP8 (TN, see above) with a scale
// tensor per operand: fprop A = W [OC][IC] scaled along IC (per row or 128x128 blocks), B = x
// [N][IC] along IC (per token or 1x128); dgrad A = W^T [IC][OC] along OC, B = dy [N][OC] along
// OC; wgrad A = x^T [IC][N] and B = dy^T [OC][N] along the tokens. cuBLASLt runs the 1x128 and
// 128x128 modes only without fast accumulation (results/h200/gemm_scaling.json), so block
// scaling turns it off; row-wise keeps the recipe's choice.
void GpuGpt::block_linear_forward(int layer, int which, GemmCall c, void* out, const bf16* inp, std::int64_t w, int N, int IC, int OC) {
  const std::string& name = model::linear_names()[std::size_t(which)];
  Fp8Runtime& f = *fp8_;
  Fp8Saved& sv = saved(layer, which);
  const fp8::ScaleMode am = f.activation_mode(), wm = f.weight_mode();
  const fp8::BlockScaleRule rule = fp8::block_scale_rule(f.config().recipe);
  mark_cast_then_back(true);
  fp8::block_cast_transpose(
      inp, N, IC, am, f.format(sv.si), f.overflow(), rule, f.block_copy(sv.si, f8_x_.as<std::uint8_t>(), f8_x_lt_.as<float>(), 0),
      f.block_copy(sv.si_t, sv.x_t.as<std::uint8_t>(), sv.x_t_lt.as<float>(), 1), block_scratch_.as<float>(), stream_);
  f.block_taps(sv.si, 0);
  f.block_taps(sv.si_t, 1);
  fp8::block_cast_transpose(
      weight(w), OC, IC, wm, f.format(sv.sw), f.overflow(), rule, f.block_copy(sv.sw, f8_w_.as<std::uint8_t>(), f8_w_lt_.as<float>(), 0),
      f.block_copy(sv.sw_t, sv.w_t.as<std::uint8_t>(), sv.w_t_lt.as<float>(), 1), block_scratch_.as<float>(), stream_);
  f.block_taps(sv.sw, 0);
  f.block_taps(sv.sw_t, 1);
  mark_cast_then_back(false);
  c.a = DType::e4m3;
  c.b = f.format(sv.si) == fp8::Format::e4m3 ? DType::e4m3 : DType::e5m2;
  c.a_mode = wm, c.b_mode = am;
  c.a_scale = f8_w_lt_.get(), c.b_scale = f8_x_lt_.get();
  c.fast_accum = f.config().recipe.scaling == fp8::Scaling::rowwise && f.config().fast_accum_fprop;
  gemms_.run(c, f8_w_.get(), f8_x_.get(), out, (name + " fprop").c_str());
}

void GpuGpt::block_linear_backward(int layer, int which, bf16* dinp, const bf16* dout, std::int64_t w, std::int64_t b, int N, int IC,
                                   int OC, float beta) {
  const std::string& name = model::linear_names()[std::size_t(which)];
  Fp8Runtime& f = *fp8_;
  Fp8Saved& sv = saved(layer, which);
  const fp8::ScaleMode am = f.activation_mode(), wm = f.weight_mode();
  const bool rowwise = f.config().recipe.scaling == fp8::Scaling::rowwise;
  // The bias gradient as the cast's column sums (one read of the gradient fewer; partials_
  // holds their rows for any linear).
  mark_cast_then_back(true);
  fp8::block_cast_transpose(dout, N, OC, am, f.format(sv.sg), f.overflow(), fp8::block_scale_rule(f.config().recipe),
                            f.block_copy(sv.sg, f8_dy_.as<std::uint8_t>(), f8_dy_lt_.as<float>(), 0),
                            f.block_copy(sv.sg_t, f8_dy_t_.as<std::uint8_t>(), f8_dy_t_lt_.as<float>(), 1), block_scratch_.as<float>(),
                            stream_, b >= 0 ? partials_.as<float>() : nullptr);
  f.block_taps(sv.sg, 0);
  f.block_taps(sv.sg_t, 1);
  mark_cast_then_back(false);
  if (b >= 0) column_sum_add(g(b), partials_.as<float>(), fp8::block_cast_sum_rows(N), OC, OC, stream_);
  const DType gt = f.format(sv.sg) == fp8::Format::e4m3 ? DType::e4m3 : DType::e5m2;
  GemmCall dg{true, false, IC, N, OC, OC, OC, IC};
  dg.a = DType::e4m3, dg.b = gt;
  dg.a_mode = wm, dg.b_mode = am;
  dg.a_scale = sv.w_t_lt.get(), dg.b_scale = f8_dy_lt_.get();
  dg.fast_accum = rowwise && f.config().fast_accum_dgrad;
  gemms_.run(dg, sv.w_t.get(), f8_dy_.get(), dinp, (name + " dgrad").c_str());
  GemmCall wg{true, false, IC, OC, N, N, N, IC};
  wg.a = DType::e4m3, wg.b = gt, wg.d = DType::fp32;
  wg.beta = beta;
  wg.a_mode = am, wg.b_mode = am;
  wg.a_scale = sv.x_t_lt.get(), wg.b_scale = f8_dy_t_lt_.get();
  wg.fast_accum = rowwise && f.config().fast_accum_wgrad;
  gemms_.run(wg, sv.x_t.get(), f8_dy_t_.get(), g(w), (name + " wgrad").c_str());
}

// Attention of one layer: q k^T / sqrt(HS) -> causal softmax -> probs v. In FP8 attention Q, K
// and V (transposed per head, as the TN layout wants it) and the probabilities are cast with
// their own scales and both GEMMs run in FP8; backward then sees the quantised operands.
void GpuGpt::attention_forward(int l, LayerActs& a) {
  const int B = B_, T = T_, C = cfg_.d_model, NH = cfg_.n_head, HS = C / NH, N = B * T, BH = B * NH;
  const std::int64_t nc = std::int64_t(N) * C, ntt = std::int64_t(BH) * T * T;
  Fp8Runtime* f = fp8_ && fp8_->config().attention() ? fp8_.get() : nullptr;
  if (flash_) {  // fused: no scores or probabilities in memory (and none to tap)
    const bf16* qkv = a.qkv.as<bf16>();
    const int KV = cfg_.kv_heads() * HS;  // k and v each (C without grouped queries)
    flash_attention_forward(flash_heads(), a.atty.as<bf16>(), a.lse.as<float>(), qkv, qkv + C, qkv + C + KV, stream_);
    if (fp8_) fp8_->observe(l, "attention_out", a.atty.as<bf16>(), nc);
    return;
  }
  split_heads(q_.as<bf16>(), k_.as<bf16>(), v_.as<bf16>(), a.qkv.as<bf16>(), B, T, NH, HS, stream_);
  // scores (row-major [T_q][T_k]) = q k^T / sqrt(HS): TN, m=T_k, n=T_q, k=HS, one per (b, h)
  GemmCall sc{true, false, T, T, HS, HS, HS, T, BH};
  sc.d = DType::fp32;
  sc.alpha = 1.0f / std::sqrt(float(HS));
  // y (row-major [T_q][HS]) = probs v: NN, m=HS, n=T_q, k=T_k; in FP8 TN with A = v^T [HS][T_k]
  GemmCall pv{false, false, HS, T, T, HS, T, HS, BH};
  if (!f) {
    gemms_.run(sc, k_.get(), q_.get(), scores_.get(), "attention scores");
  } else {
    const int sq = f->slot(l, "q.input"), sk = f->slot(l, "k.input"), svv = f->slot(l, "v.input");
    f->prepare(sq, q_.as<bf16>(), nc);
    fp8::quantize(f8_q_.as<std::uint8_t>(), q_.as<bf16>(), nc, f->scale(sq), f->format(sq), f->overflow(), f->stats(sq), stream_);
    f->prepare(sk, k_.as<bf16>(), nc);
    fp8::quantize(f8_k_.as<std::uint8_t>(), k_.as<bf16>(), nc, f->scale(sk), f->format(sk), f->overflow(), f->stats(sk), stream_);
    f->prepare(svv, v_.as<bf16>(), nc);
    fp8::quantize_transpose(nullptr, f8_vt_.as<std::uint8_t>(), v_.as<bf16>(), T, HS, f->scale(svv), f->format(svv), f->overflow(),
                            f->stats(svv), stream_, BH);
    sc.a = sc.b = DType::e4m3;
    sc.a_scale = f->scale_inv(sk), sc.b_scale = f->scale_inv(sq);
    sc.fast_accum = f->config().fast_accum_fprop;
    gemms_.run(sc, f8_k_.get(), f8_q_.get(), scores_.get(), "attention scores fprop");
  }
  if (fp8_) fp8_->observe(l, "scores", scores_.as<float>(), ntt);
  softmax_causal_forward(a.probs.as<bf16>(), scores_.as<float>(), BH, T, stream_);
  if (!f) {
    gemms_.run(pv, v_.get(), a.probs.get(), yh_.get(), "attention probs*v");
  } else {
    const int sp = f->slot(l, "probs.input"), svv = f->slot(l, "v.input");
    f->prepare(sp, a.probs.as<bf16>(), ntt);
    fp8::quantize(f8_p_.as<std::uint8_t>(), a.probs.as<bf16>(), ntt, f->scale(sp), f->format(sp), f->overflow(), f->stats(sp), stream_);
    GemmCall q8{true, false, HS, T, T, T, T, HS, BH};
    q8.a = q8.b = DType::e4m3;
    q8.a_scale = f->scale_inv(svv), q8.b_scale = f->scale_inv(sp);
    q8.fast_accum = f->config().fast_accum_fprop;
    gemms_.run(q8, f8_vt_.get(), f8_p_.get(), yh_.get(), "attention probs*v fprop");
    // Backward differentiates through what the GEMM read: the quantised probabilities.
    fp8::fake_quantize(a.probs.as<bf16>(), a.probs.as<bf16>(), ntt, f->scale(sp), f->format(sp), f->overflow(), nullptr, stream_);
  }
  if (fp8_) fp8_->observe(l, "probs", a.probs.as<bf16>(), ntt);
  merge_heads(a.atty.as<bf16>(), yh_.as<bf16>(), B, T, NH, HS, stream_);
  if (fp8_) fp8_->observe(l, "attention_out", a.atty.as<bf16>(), nc);
}

void GpuGpt::norm_forward_fp8(const std::string& name, const bf16* x, core::DeviceBuffer& mean, core::DeviceBuffer& rstd, Fp8Saved& sv) {
  const int N = B_ * T_, C = cfg_.d_model, si = sv.si;
  std::uint8_t* q = f8_x_.as<std::uint8_t>();
  if (cfg_.llama())
    rmsnorm_forward_fp8(q, rstd.as<float>(), x, weight(off_[name + "_w"]), N, C, fp8_->scale(si), fp8_->format(si), fp8_->overflow(),
                        fp8_->stats(si), stream_);
  else
    layernorm_forward_fp8(q, mean.as<float>(), rstd.as<float>(), x, weight(off_[name + "_w"]), weight(off_[name + "_b"]), N, C,
                          fp8_->scale(si), fp8_->format(si), fp8_->overflow(), fp8_->stats(si), stream_);
  fp8::transpose_fp8(sv.x_t.as<std::uint8_t>(), q, N, C, stream_);
}

void GpuGpt::stage_batch(const int* inputs, const int* targets) {
  // The last step that read the staging buffers has finished: every public call that enqueues
  // a copy from them waits for its step before returning.
  const std::size_t n = std::size_t(B_) * T_;
  std::copy(inputs, inputs + n, h_tokens_.data());
  std::copy(targets, targets + n, h_targets_.data());
}

void GpuGpt::stage_adamw(float lr, float grad_clip, const AdamWSettings& a) {
  const int t = t_ + 1;  // the step AdamW is about to take, counted from 1
  *h_adamw_.data() = AdamwStep{
      lr, a.beta1, a.beta2, a.eps, a.weight_decay, 1.0f - std::pow(a.beta1, float(t)), 1.0f - std::pow(a.beta2, float(t)), grad_clip};
}

std::string GpuGpt::graphs_off_reason() const {
  if (!graphs_on_) return "graphs off";
  if (!stream_) return "the legacy default stream cannot be captured";
  if (profiling_) return "profiling (events between the phases)";
  if (grad_reducer_ || (fp8_ && fp8_->has_reducer())) return "data parallelism";
  return "";
}

GpuGpt::StepValues GpuGpt::train_step(const int* inputs, const int* targets, float lr, float grad_clip, const AdamWSettings& a) {
  stage_batch(inputs, targets);
  stage_adamw(lr, grad_clip, a);
  if (fp8_) fp8_->plan_step();
  auto enqueue_step = [&] {
    enqueue_forward();
    enqueue_backward();
    enqueue_optimizer();
  };
  StepGraph& sg = graphs_[fp8_ && fp8_->recording() ? 1 : 0];
  // A graph replays what forward found when it was captured: FP8 block weights AdamW had cast,
  // or none (then forward casts them). A step that finds the other runs uncaptured.
  if (graphs_off_reason().empty() && sg.uncaptured > 0 && (!sg.exec || sg.codes_current == codes_current_)) {
    if (!sg.exec) {
      sg.codes_current = codes_current_;
      sg.exec = core::GraphExec::capture(stream_, enqueue_step);
    }
    sg.exec.launch(stream_);
    codes_current_ = weights_cast_by_optimizer_;  // as the captured step's AdamW leaves them
    ++graph_replays_;
  } else {
    enqueue_step();
    ++sg.uncaptured;
  }
  if (fp8_) fp8_->finish_step();
  ++t_;
  FP8S_CUDA(cudaStreamSynchronize(stream_));  // the step is done: its loss and norm are on the host
  FP8S_CUDA(cudaGetLastError());
  return {mean_loss(), std::sqrt(h_results_[1])};
}

float GpuGpt::forward(const int* inputs, const int* targets) {
  stage_batch(inputs, targets);
  if (fp8_) fp8_->plan_step();
  enqueue_forward();
  FP8S_CUDA(cudaMemcpyAsync(h_results_.data(), results_.get(), sizeof(float), cudaMemcpyDeviceToHost, stream_));
  FP8S_CUDA(cudaStreamSynchronize(stream_));
  FP8S_CUDA(cudaGetLastError());
  return mean_loss();
}

void GpuGpt::enqueue_forward() {
  const int B = B_, T = T_, C = cfg_.d_model, N = B * T;
  const std::int64_t nc = std::int64_t(N) * C;
  core::NvtxRange range("forward");
  if (fp8_) fp8_->begin_step(codes_current_);
  mark("embedding");
  FP8S_CUDA(cudaMemcpyAsync(tokens_.get(), h_tokens_.data(), std::size_t(N) * sizeof(int), cudaMemcpyHostToDevice, stream_));
  FP8S_CUDA(cudaMemcpyAsync(targets_.get(), h_targets_.data(), std::size_t(N) * sizeof(int), cudaMemcpyHostToDevice, stream_));
  const std::int64_t wpe = offset_or_none("wpe");
  encoder_forward(encoded_.as<bf16>(), tokens_.as<int>(), weight(off_["wte"]), wpe >= 0 ? weight(wpe) : nullptr, B, T, C, stream_);
  // The embedding's backward sums each token's rows: its positions grouped now, on the device.
  group_tokens(buckets(), group_scratch_.as<int>(), tokens_.as<int>(), group_iota_.as<int>(), N, cfg_.padded_vocab(), group_temp_.get(),
               group_temp_.size(), stream_);
  const bool llama = cfg_.llama();
  const int QW = cfg_.qkv_width(), F = cfg_.ffn_width(), FW = cfg_.fc1_width(), HS = cfg_.head_dim();
  const int rotated = cfg_.n_head + cfg_.kv_heads();  // q and k heads
  const bf16* x = encoded_.as<bf16>();
  const bool fuse_qkv = fp8_ && fp8_->config().fuse_into("qkv"), fuse_fc1 = fp8_ && fp8_->config().fuse_into("fc1"),
             fuse_fc2 = fp8_ && fp8_->config().fuse_into("fc2");
  for (int l = 0; l < cfg_.n_layer; ++l) {
    core::NvtxRange lr("layer forward");
    LayerActs& a = acts_[std::size_t(l)];
    const std::string h = fmt::format("h{}.", l);
    mark("layernorm");
    if (fuse_qkv) {  // LayerNormLinear: the norm writes qkv's FP8 input and its transpose
      norm_forward_fp8(h + "ln1", x, a.ln1_mean, a.ln1_rstd, saved(l, 0));
    } else if (llama) {
      rmsnorm_forward(a.ln1, a.ln1_rstd.as<float>(), x, weight(off_[h + "ln1_w"]), N, C, stream_);
    } else {
      layernorm_forward(a.ln1, a.ln1_mean.as<float>(), a.ln1_rstd.as<float>(), x, weight(off_[h + "ln1_w"]), weight(off_[h + "ln1_b"]), N,
                        C, stream_);
    }
    mark("matmul");
    cast_layer_weights(l, false);  // the layer's FP8 weights from their FP32 masters
    linear_forward(l, 0, a.qkv.get(), false, a.ln1, off_[h + "qkv_w"], offset_or_none(h + "qkv_b"), N, C, QW, fuse_qkv);
    if (fp8_) fp8_->observe(l, "qkv", a.qkv.as<bf16>(), std::int64_t(N) * QW);
    if (llama) {  // the attention reads the rotated q and k
      mark("attention");
      rope_apply(a.qkv.as<bf16>(), rope_.as<float>(), N, T, QW, rotated, HS, +1, stream_);
    }
    mark("attention");
    attention_forward(l, a);
    mark("matmul");  // the residual stream's add in the GEMM's epilogue: x_mid = x + proj
    linear_forward(l, 1, a.x_mid.get(), false, a.atty.as<bf16>(), off_[h + "proj_w"], offset_or_none(h + "proj_b"), N, C, C, false, false,
                   nullptr, nullptr, x);
    if (fp8_) fp8_->observe(l, "residual", a.x_mid.as<bf16>(), nc);
    mark("layernorm");
    if (fuse_fc1) {
      norm_forward_fp8(h + "ln2", a.x_mid.as<bf16>(), a.ln2_mean, a.ln2_rstd, saved(l, 2));
    } else if (llama) {
      rmsnorm_forward(a.ln2, a.ln2_rstd.as<float>(), a.x_mid.as<bf16>(), weight(off_[h + "ln2_w"]), N, C, stream_);
    } else {
      layernorm_forward(a.ln2, a.ln2_mean.as<float>(), a.ln2_rstd.as<float>(), a.x_mid.as<bf16>(), weight(off_[h + "ln2_w"]),
                        weight(off_[h + "ln2_b"]), N, C, stream_);
    }
    mark("matmul");
    // fc1 with the GELU in its epilogue: in FP8 fc2's input straight from the GEMM, into the
    // gradient's scratch (free until the backward; f8_x_ holds this GEMM's own input); in BF16
    // the activation into a.gelu, the GELU's input kept in a.fc. If cuBLASLt refuses it the
    // first time, the GELU kernels below, now and from then on.
    bool gelu_epilogue = false;
    if (gelu_epilogue_) {
      const int si = fp8_ ? saved(l, 3).si : -1;
      const GeluEpilogue ge = fp8_ ? GeluEpilogue{f8_dy_.get(), fp8_->scale(si), &fp8_->stats(si)->amax, a.pre8.get(), DType::e4m3}
                                   : GeluEpilogue{a.gelu, nullptr, nullptr, a.fc, DType::bf16};
      gelu_epilogue = gelu_trial_.attempt([&] {
        linear_forward(l, 2, nullptr, false, a.ln2, off_[h + "fc_w"], offset_or_none(h + "fc_b"), N, C, FW, fuse_fc1, false, &ge);
      });
    }
    if (!gelu_epilogue) {
      linear_forward(l, 2, a.fc, false, a.ln2, off_[h + "fc_w"], offset_or_none(h + "fc_b"), N, C, FW, fuse_fc1);
      if (fp8_) fp8_->observe(l, "fc1_out", a.fc, std::int64_t(N) * FW);
    }
    mark("gelu");             // the MLP's activation: GELU, or SwiGLU (Llama)
    if (llama && fuse_fc2) {  // LayerNormMLP: the SwiGLU writes fc2's FP8 input and its transpose
      const int si = saved(l, 3).si;
      std::uint8_t *q = f8_x_.as<std::uint8_t>(), *q_t = saved(l, 3).x_t.as<std::uint8_t>();
      if (swiglu_cast_fits(N, F)) {
        swiglu_cast_transpose(q, q_t, a.fc, N, F, fp8_->scale(si), fp8_->format(si), fp8_->overflow(), fp8_->stats(si), stream_);
      } else {  // the same values in two passes
        swiglu_forward(a.gelu, a.fc, N, F, stream_);
        fp8::quantize_transpose(q, q_t, a.gelu, N, F, fp8_->scale(si), fp8_->format(si), fp8_->overflow(), fp8_->stats(si), stream_);
      }
    } else if (llama) {
      swiglu_forward(a.gelu, a.fc, N, F, stream_);
      if (fp8_) fp8_->observe(l, "swiglu_out", a.gelu, std::int64_t(N) * F);
    } else if (gelu_epilogue && !fp8_) {  // BF16: fc1's GEMM applied the GELU
    } else if (gelu_epilogue) {           // the wgrad's copy of what fc1's GEMM wrote
      const int si = saved(l, 3).si;
      fp8::transpose_fp8_counting(saved(l, 3).x_t.as<std::uint8_t>(), f8_dy_.as<std::uint8_t>(), N, F, fp8_->format(si), fp8_->stats(si),
                                  stream_);
    } else if (fuse_fc2) {  // LayerNormMLP: the GELU writes fc2's FP8 input
      const int si = saved(l, 3).si;
      if (fp8::tile_cast_fits(N, 4 * C)) {
        gelu_cast_transpose(f8_x_.as<std::uint8_t>(), saved(l, 3).x_t.as<std::uint8_t>(), a.fc, N, 4 * C, fp8_->scale(si), fp8_->format(si),
                            fp8_->overflow(), fp8_->stats(si), stream_, a.pre8.as<std::uint8_t>());
      } else {
        gelu_forward_fp8(f8_x_.as<std::uint8_t>(), a.fc, 4 * nc, fp8_->scale(si), fp8_->format(si), fp8_->overflow(), fp8_->stats(si),
                         stream_, a.pre8.as<std::uint8_t>());
        fp8::transpose_fp8(saved(l, 3).x_t.as<std::uint8_t>(), f8_x_.as<std::uint8_t>(), N, 4 * C, stream_);
      }
    } else {
      gelu_forward(a.gelu, a.fc, 4 * nc, stream_, a.pre8.as<std::uint8_t>());  // a.gelu may be a.fc
      if (fp8_) fp8_->observe(l, "gelu_out", a.gelu, 4 * nc);
    }
    mark("matmul");  // x_out = x_mid + fc2, as above
    linear_forward(l, 3, a.x_out.get(), false, a.gelu, off_[h + "fcproj_w"], offset_or_none(h + "fcproj_b"), N, F, C, fuse_fc2, false,
                   nullptr, gelu_epilogue && fp8_ ? f8_dy_.as<std::uint8_t>() : nullptr, a.x_mid.as<bf16>());
    if (fp8_) fp8_->observe(l, "block_out", a.x_out.as<bf16>(), nc);
    x = a.x_out.as<bf16>();
  }
  mark("layernorm");
  if (llama)
    rmsnorm_forward(lnf_.as<bf16>(), lnf_rstd_.as<float>(), x, weight(off_["lnf_w"]), N, C, stream_);
  else
    layernorm_forward(lnf_.as<bf16>(), lnf_mean_.as<float>(), lnf_rstd_.as<float>(), x, weight(off_["lnf_w"]), weight(off_["lnf_b"]), N, C,
                      stream_);
  head_and_loss();
  if (fp8_) fp8_->observe(-1, "loss", losses_.as<float>(), N);
  sum_values(results_.as<float>(), partials_.as<float>(), losses_.as<float>(), N, stream_);  // the mean's numerator
}

// The head's forward and the loss over rows [r0, r0 + n) of each chunk; with a chunked head the
// chunk's backward follows at once (dgrad into the final norm's output gradient, wgrad added to
// the head's gradient, zeroed here instead of in backward), so the next chunk can reuse the
// logits and their gradient. Every chunk of an FP8 head casts its own input rows (the wgrad reads
// the chunk's transpose) and reuses the weight the first chunk cast (delayed scaling: one scale
// for the step); the statistics add up over the chunks as over one cast.
void GpuGpt::head_and_loss() {
  const int N = B_ * T_, C = cfg_.d_model, Vp = cfg_.padded_vocab(), R = int(head_rows_);
  const bf16* lnf = lnf_.as<bf16>();
  if (head_chunked()) zero_grads();
  for (int r0 = 0; r0 < N; r0 += R) {
    const int n = std::min(R, N - r0);
    mark("lm_head");
    linear_forward(-1, 4, logits_.get(), !bf16_logits_, lnf + std::int64_t(r0) * C, off_["lm_head"], -1, n, C, Vp, false, r0 > 0);
    mark("loss");
    // The logits as the head wrote them (FP32 or BF16): tapped, then the loss.
    auto loss = [&](const auto* logits) {
      if (fp8_) fp8_->observe(-1, "logits", logits, std::int64_t(n) * Vp);
      if (fuses_loss_cast()) {  // the FP8 head's gradient, cast in the loss kernel
        const int sg = saved(-1, 4).sg;
        cross_entropy_forward_backward_fp8(losses_.as<float>() + r0, f8_dy_.as<std::uint8_t>(), logits, targets_.as<int>() + r0, n, N,
                                           cfg_.vocab, Vp, fp8_->scale(sg), fp8_->format(sg), fp8_->overflow(), fp8_->stats(sg), stream_);
      } else {
        cross_entropy_forward_backward(losses_.as<float>() + r0, dlogits_.as<bf16>(), logits, targets_.as<int>() + r0, n, N, cfg_.vocab, Vp,
                                       stream_);
      }
    };
    if (bf16_logits_)
      loss(logits_.as<bf16>());
    else
      loss(logits_.as<float>());
    if (!head_chunked()) break;
    mark("lm_head");
    linear_backward(-1, 4, dbuf_.as<bf16>() + std::int64_t(r0) * C, dlogits_.as<bf16>(), lnf + std::int64_t(r0) * C, off_["lm_head"], -1, n,
                    C, Vp, {}, fuses_loss_cast(), nullptr, nullptr, nullptr, r0 > 0);
  }
}

void GpuGpt::attention_backward(int l, LayerActs& a) {
  const int B = B_, T = T_, C = cfg_.d_model, NH = cfg_.n_head, HS = C / NH, N = B * T, BH = B * NH;
  const std::int64_t nc = std::int64_t(N) * C;
  Fp8Runtime* f = fp8_ && fp8_->config().attention() ? fp8_.get() : nullptr;
  if (f) {  // the attention output's gradient in FP8 (backward format), as FP8 attention reads it
    const int sd = f->slot(l, "attention_out.grad");
    f->prepare(sd, dbuf_.as<bf16>(), nc);
    fp8::fake_quantize(dbuf_.as<bf16>(), dbuf_.as<bf16>(), nc, f->scale(sd), f->format(sd), f->overflow(), f->stats(sd), stream_);
  }
  if (flash_) {  // dy, the forward's output, q/k/v and their gradients all read and written in place
    const bf16* qkv = a.qkv.as<bf16>();
    bf16* dqkv = dqkv_.as<bf16>();
    const int KV = cfg_.kv_heads() * HS;
    flash_attention_backward(flash_heads(), dqkv, dqkv + C, dqkv + C + KV, dsum_.as<float>(), dbuf_.as<bf16>(), a.atty.as<bf16>(), qkv,
                             qkv + C, qkv + C + KV, a.lse.as<float>(), stream_);
    return;
  }
  split_heads_single(yh_.as<bf16>(), dbuf_.as<bf16>(), B, T, NH, HS, stream_);  // dy per head
  split_heads(q_.as<bf16>(), k_.as<bf16>(), v_.as<bf16>(), a.qkv.as<bf16>(), B, T, NH, HS, stream_);
  if (f) {  // the operands the forward GEMMs read (same scales: they change only between steps)
    const char* names[3] = {"q.input", "k.input", "v.input"};
    bf16* bufs[3] = {q_.as<bf16>(), k_.as<bf16>(), v_.as<bf16>()};
    for (int j = 0; j < 3; ++j) {
      const int si = f->slot(l, names[j]);
      fp8::fake_quantize(bufs[j], bufs[j], nc, f->scale(si), f->format(si), f->overflow(), nullptr, stream_);
    }
  }
  GemmCall dp{true, false, T, T, HS, HS, HS, T, BH};  // dprobs = dy v^T, as the scores
  dp.d = DType::fp32;
  gemms_.run(dp, v_.get(), yh_.get(), scores_.get(), "attention dprobs");
  gemms_.run(GemmCall{false, true, HS, T, T, HS, T, HS, BH}, yh_.get(), a.probs.get(), dv_.get(), "attention dv");  // dv = probs^T dy
  softmax_causal_backward(dscores_.as<bf16>(), scores_.as<float>(), a.probs.as<bf16>(), 1.0f / std::sqrt(float(HS)), BH, T, stream_);
  gemms_.run(GemmCall{false, false, HS, T, T, HS, T, HS, BH}, k_.get(), dscores_.get(), dq_.get(), "attention dq");  // dq = dscores k
  gemms_.run(GemmCall{false, true, HS, T, T, HS, T, HS, BH}, q_.get(), dscores_.get(), dk_.get(), "attention dk");   // dk = dscores^T q
  merge_qkv_grads(dqkv_.as<bf16>(), dq_.as<bf16>(), dk_.as<bf16>(), dv_.as<bf16>(), B, T, NH, HS, stream_);
}

void GpuGpt::backward() {
  enqueue_backward();
  if (fp8_) fp8_->finish_step();
}

void GpuGpt::enqueue_backward() {
  const int B = B_, T = T_, C = cfg_.d_model, N = B * T, Vp = cfg_.padded_vocab();
  core::NvtxRange range("backward");
  float* partials = partials_.as<float>();
  if (!head_chunked()) {  // else forward ran the head's backward chunk by chunk
    zero_grads();
    mark("lm_head");
    linear_backward(-1, 4, dbuf_.as<bf16>(), dlogits_.as<bf16>(), lnf_.as<bf16>(), off_["lm_head"], -1, N, C, Vp, {}, fuses_loss_cast());
  }
  mark("layernorm");
  FP8S_CUDA(cudaMemsetAsync(dx_.get(), 0, dx_.size(), stream_));
  const bf16* last = acts_.back().x_out.as<bf16>();
  const bool llama = cfg_.llama();
  const int QW = cfg_.qkv_width(), F = cfg_.ffn_width(), FW = cfg_.fc1_width(), HS = cfg_.head_dim();
  // The norms' backward adds into the residual stream's gradient: LayerNorm, or RMSNorm (Llama).
  // (mean: LayerNorm's only.)
  auto norm_backward = [&](const std::string& w, const bf16* x, const core::DeviceBuffer& mean, const core::DeviceBuffer& rstd) {
    if (llama)
      rmsnorm_backward(dx_.as<bf16>(), g(off_[w + "_w"]), partials, dbuf_.as<bf16>(), x, weight(off_[w + "_w"]), rstd.as<float>(), N, C,
                       stream_);
    else
      layernorm_backward(dx_.as<bf16>(), g(off_[w + "_w"]), g(off_[w + "_b"]), partials, dbuf_.as<bf16>(), x, weight(off_[w + "_w"]),
                         mean.as<float>(), rstd.as<float>(), N, C, stream_);
  };
  norm_backward("lnf", last, lnf_mean_, lnf_rstd_);
  bf16* dx = dx_.as<bf16>();  // gradient of the residual stream, updated in place layer by layer
  for (int l = cfg_.n_layer - 1; l >= 0; --l) {
    core::NvtxRange lr("layer backward");
    LayerActs& a = acts_[std::size_t(l)];
    const std::string h = fmt::format("h{}.", l);
    const bf16* x_in = l == 0 ? encoded_.as<bf16>() : acts_[std::size_t(l - 1)].x_out.as<bf16>();
    // MLP: x_out = x_mid + fcproj(act(fc(norm2(x_mid)))), act = GELU or SwiGLU (Llama)
    mark("matmul");
    cast_layer_weights(l, true);        // their transposes, with forward's scales
    if (dgelu_in_epilogue() && fp8_) {  // fc1's FP8 gradient and bias gradient from fc2's dgrad, into f8_x_ (free in backward)
      const int sg = saved(l, 2).sg;
      const DgeluEpilogue de{
          f8_x_.get(),  fp8_->scale(sg), &fp8_->stats(sg)->amax, fp8_->format(sg) == fp8::Format::e4m3 ? DType::e4m3 : DType::e5m2,
          a.pre8.get(), DType::e4m3,     dgelu_dbias_.as<bf16>()};
      linear_backward(l, 3, dbuf4_.as<bf16>(), dx, a.gelu, off_[h + "fcproj_w"], offset_or_none(h + "fcproj_b"), N, F, C, {}, false, &de);
    } else if (dgelu_in_epilogue()) {  // BF16: fc1's output gradient into dbuf4_, its bias gradient beside
      const DgeluEpilogue de{dbuf4_.get(), nullptr, nullptr, DType::bf16, a.fc, DType::bf16, dgelu_dbias_.as<bf16>()};
      linear_backward(l, 3, dbuf4_.as<bf16>(), dx, a.gelu, off_[h + "fcproj_w"], offset_or_none(h + "fcproj_b"), N, F, C, {}, false, &de);
    } else {
      linear_backward(l, 3, dbuf4_.as<bf16>(), dx, a.gelu, off_[h + "fcproj_w"], offset_or_none(h + "fcproj_b"), N, F, C);
    }
    if (dgelu_in_epilogue() && fp8_) {  // (still: cuBLASLt took it) fc1's gradient is in f8_x_: its transpose and the GEMMs are left
      linear_backward(l, 2, dbuf_.as<bf16>(), nullptr, a.ln2, off_[h + "fc_w"], offset_or_none(h + "fc_b"), N, C, FW, {}, false, nullptr,
                      f8_x_.as<std::uint8_t>(), dgelu_dbias_.as<bf16>());
    } else if (dgelu_in_epilogue()) {  // BF16: the GEMMs on the gradient fc2's dgrad wrote
      linear_backward(l, 2, dbuf_.as<bf16>(), dbuf4_.as<bf16>(), a.ln2, off_[h + "fc_w"], offset_or_none(h + "fc_b"), N, C, FW, {}, false,
                      nullptr, nullptr, dgelu_dbias_.as<bf16>());
    } else {
      // In FP8 with delayed scaling the activation's backward (GELU or SwiGLU) is part of fc1's
      // gradient cast (timed as matmul, where the casts are).
      const bool fuse_dact = fuses_activation_backward();
      mark("gelu");
      bf16* dfc = llama ? dfc_.as<bf16>() : dbuf4_.as<bf16>();  // fc1's output gradient (GELU: in place)
      if (llama && !fuse_dact)
        swiglu_backward(dfc, a.fc, dbuf4_.as<bf16>(), N, F, stream_);
      else if (!fuse_dact && a.pre8.size() > 0)
        gelu_backward(dfc, a.pre8.as<std::uint8_t>(), dbuf4_.as<bf16>(), std::int64_t(N) * F, stream_);
      else if (!fuse_dact)
        gelu_backward(dfc, a.fc, dbuf4_.as<bf16>(), std::int64_t(N) * F, stream_);
      mark("matmul");
      linear_backward(l, 2, dbuf_.as<bf16>(), fuse_dact ? dbuf4_.as<bf16>() : dfc, a.ln2, off_[h + "fc_w"], offset_or_none(h + "fc_b"), N,
                      C, FW,
                      !fuse_dact          ? ActivationInput{}
                      : a.pre8.size() > 0 ? ActivationInput{nullptr, a.pre8.as<std::uint8_t>()}
                                          : ActivationInput{a.fc});
    }
    mark("layernorm");
    norm_backward(h + "ln2", a.x_mid.as<bf16>(), a.ln2_mean, a.ln2_rstd);
    if (fp8_) fp8_->observe(l, "residual_grad", dx, std::int64_t(N) * C);
    // Attention: x_mid = x_in + proj(attention(qkv(norm1(x_in)))), q and k rotated (Llama)
    mark("matmul");
    linear_backward(l, 1, dbuf_.as<bf16>(), dx, a.atty.as<bf16>(), off_[h + "proj_w"], offset_or_none(h + "proj_b"), N, C, C);
    mark("attention");
    attention_backward(l, a);
    if (llama)  // through the rotation (its transpose) to the linear's output
      rope_apply(dqkv_.as<bf16>(), rope_.as<float>(), N, T, QW, cfg_.n_head + cfg_.kv_heads(), HS, -1, stream_);
    mark("matmul");
    linear_backward(l, 0, dbuf_.as<bf16>(), dqkv_.as<bf16>(), a.ln1, off_[h + "qkv_w"], offset_or_none(h + "qkv_b"), N, C, QW);
    mark("layernorm");
    norm_backward(h + "ln1", x_in, a.ln1_mean, a.ln1_rstd);
  }
  mark("embedding");
  const std::int64_t wpe = offset_or_none("wpe");
  encoder_backward(g(off_["wte"]), wpe >= 0 ? g(wpe) : nullptr, dx, buckets(), B, T, C, stream_);
  if (fp8_) {
    mark("fp8_recipe");
    fp8_->end_step();        // delayed scaling: next step's scales from this step's amaxes
    codes_current_ = false;  // (AdamW casts the FP8 block weights with those, or the next forward)
  }
  FP8S_CUDA(cudaGetLastError());
}

float GpuGpt::step(float lr, float grad_clip, const AdamWSettings& a) {
  stage_adamw(lr, grad_clip, a);
  enqueue_optimizer();
  ++t_;
  FP8S_CUDA(cudaStreamSynchronize(stream_));
  FP8S_CUDA(cudaGetLastError());
  return std::sqrt(h_results_[1]);
}

void GpuGpt::enqueue_optimizer() {
  core::NvtxRange range("optimizer");
  mark("optimizer");
  FP8S_CUDA(cudaMemcpyAsync(adamw_step_.get(), h_adamw_.data(), sizeof(AdamwStep), cudaMemcpyHostToDevice, stream_));
  if (grad_reducer_) grad_reducer_(grads_.as<float>(), n_params_, stream_);
  float* grad_sq = results_.as<float>() + 1;
  sum_squares(grad_sq, partials_.as<float>(), grads_.as<float>(), n_params_, stream_);
  // Clipping by the norm happens in AdamW's kernel, which reads it where sum_squares left it.
  AdamwFp8Codes codes;
  if (weights_cast_by_optimizer_) {  // the next step's FP8 block weights, their statistics carried into its own
    fp8_->clear_carried_stats();
    codes = {f8_weights_.as<std::uint8_t>(),
             fp8_->scale(0),
             fp8::ScalerBank::kStride,
             fp8_->carried_stats(),
             fp8::format_for(fp8_->config().recipe.format, fp8::Pass::forward),
             fp8_->overflow()};
  }
  adamw_update_chunks(master_.as<float>(), weights_.as<bf16>(), grads_.as<float>(), adam_m_.as<float>(), adam_v_.as<float>(),
                      adam_chunks_.as<AdamwChunk>(), n_adam_chunks_, adamw_step_.as<AdamwStep>(), grad_sq, codes, stream_);
  if (weights_cast_by_optimizer_) codes_current_ = true;
  FP8S_CUDA(cudaMemcpyAsync(h_results_.data(), results_.get(), 2 * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  mark("end");
  FP8S_CUDA(cudaGetLastError());
}

}  // namespace fp8scope::gpu_model
