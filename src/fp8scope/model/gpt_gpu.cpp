#include "fp8scope/model/gpt_gpu.hpp"

#include <fmt/format.h>

#include <cmath>
#include <numeric>

namespace fp8scope::model {
using gemm::DType;

namespace {
std::size_t bf(std::int64_t n) { return std::size_t(n) * sizeof(bf16); }
std::size_t fl(std::int64_t n) { return std::size_t(n) * sizeof(float); }
}  // namespace

GpuGpt::GpuGpt(const GptConfig& cfg, int B, int T, cudaStream_t stream)
    : cfg_(cfg), B_(B), T_(T), stream_(stream), gemms_(stream), layout_(param_layout(cfg)), n_params_(param_count(cfg)) {
  for (auto& t : layout_) off_[t.name] = t.offset;
  if (cfg.tied) off_["lm_head"] = off_["wte"];
  const std::int64_t N = std::int64_t(B) * T, C = cfg.d_model, Vp = cfg.padded_vocab(), BH = std::int64_t(B) * cfg.n_head;
  master_ = core::DeviceBuffer(fl(n_params_));
  weights_ = core::DeviceBuffer(bf(n_params_));
  grads_ = core::DeviceBuffer(fl(n_params_));
  adam_m_ = core::DeviceBuffer(fl(n_params_));
  adam_v_ = core::DeviceBuffer(fl(n_params_));
  FP8S_CUDA(cudaMemsetAsync(adam_m_.get(), 0, adam_m_.size(), stream_));
  FP8S_CUDA(cudaMemsetAsync(adam_v_.get(), 0, adam_v_.size(), stream_));
  tokens_ = core::DeviceBuffer(std::size_t(N) * sizeof(int));
  targets_ = core::DeviceBuffer(std::size_t(N) * sizeof(int));
  encoded_ = core::DeviceBuffer(bf(N * C));
  for (int l = 0; l < cfg.n_layer; ++l) {
    LayerActs a;
    a.ln1 = core::DeviceBuffer(bf(N * C));
    a.ln1_mean = core::DeviceBuffer(fl(N));
    a.ln1_rstd = core::DeviceBuffer(fl(N));
    a.qkv = core::DeviceBuffer(bf(N * 3 * C));
    a.probs = core::DeviceBuffer(bf(BH * T * T));
    a.atty = core::DeviceBuffer(bf(N * C));
    a.x_mid = core::DeviceBuffer(bf(N * C));
    a.ln2 = core::DeviceBuffer(bf(N * C));
    a.ln2_mean = core::DeviceBuffer(fl(N));
    a.ln2_rstd = core::DeviceBuffer(fl(N));
    a.fc = core::DeviceBuffer(bf(N * 4 * C));
    a.gelu = core::DeviceBuffer(bf(N * 4 * C));
    a.x_out = core::DeviceBuffer(bf(N * C));
    acts_.push_back(std::move(a));
  }
  lnf_ = core::DeviceBuffer(bf(N * C));
  lnf_mean_ = core::DeviceBuffer(fl(N));
  lnf_rstd_ = core::DeviceBuffer(fl(N));
  logits_ = core::DeviceBuffer(fl(N * Vp));
  dlogits_ = core::DeviceBuffer(bf(N * Vp));
  losses_ = core::DeviceBuffer(fl(N));
  q_ = core::DeviceBuffer(bf(N * C));
  k_ = core::DeviceBuffer(bf(N * C));
  v_ = core::DeviceBuffer(bf(N * C));
  scores_ = core::DeviceBuffer(fl(BH * T * T));
  yh_ = core::DeviceBuffer(bf(N * C));
  scratch_ = core::DeviceBuffer(bf(N * C));
  dx_ = core::DeviceBuffer(bf(N * C));
  dbuf_ = core::DeviceBuffer(bf(N * C));
  dbuf4_ = core::DeviceBuffer(bf(N * 4 * C));
  dqkv_ = core::DeviceBuffer(bf(N * 3 * C));
  dq_ = core::DeviceBuffer(bf(N * C));
  dk_ = core::DeviceBuffer(bf(N * C));
  dv_ = core::DeviceBuffer(bf(N * C));
  dscores_ = core::DeviceBuffer(bf(BH * T * T));
  norm_ = core::DeviceBuffer(sizeof(float));
}

bf16* GpuGpt::weight(std::int64_t offset) const { return weights_.as<bf16>() + offset; }
float* GpuGpt::g(std::int64_t offset) const { return grads_.as<float>() + offset; }

void GpuGpt::set_params(const std::vector<float>& params) {
  FP8S_CUDA(cudaMemcpyAsync(master_.get(), params.data(), fl(n_params_), cudaMemcpyHostToDevice, stream_));
  cast_to_bf16(weights_.as<bf16>(), master_.as<float>(), n_params_, stream_);
  FP8S_CUDA(cudaStreamSynchronize(stream_));
}

std::vector<float> GpuGpt::grads() const {
  std::vector<float> out(static_cast<std::size_t>(n_params_));
  FP8S_CUDA(cudaMemcpy(out.data(), grads_.get(), fl(n_params_), cudaMemcpyDeviceToHost));
  return out;
}
std::vector<float> GpuGpt::logits() const {
  std::vector<float> out(logits_.size() / sizeof(float));
  FP8S_CUDA(cudaMemcpy(out.data(), logits_.get(), logits_.size(), cudaMemcpyDeviceToHost));
  return out;
}

void GpuGpt::mark(const char* phase) {
  if (!profiling_) return;
  cudaEvent_t e;
  FP8S_CUDA(cudaEventCreate(&e));
  FP8S_CUDA(cudaEventRecord(e, stream_));
  marks_.emplace_back(phase, e);
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

// y[N, OC] = x[N, IC] W^T + b with W [OC, IC] row-major: column-major D (OC x N) = W^T(op T of
// the IC x OC view) . x (IC x N): layout TN, m=OC, n=N, k=IC.
void GpuGpt::linear_forward(bf16* out, const bf16* inp, std::int64_t w, std::int64_t b, int N, int IC, int OC) {
  GemmCall c{true, false, OC, N, IC, IC, IC, OC};
  c.bias = b >= 0 ? weight(b) : nullptr;
  gemms_.run(c, weight(w), inp, out);
}

// dx[N, IC] = dy[N, OC] W:   NN, m=IC, n=N, k=OC   (W viewed as IC x OC)
// dW[OC, IC] += dy^T x:       NT, m=IC, n=OC, k=N, FP32 output accumulated (beta 1)
// db[OC] += sum_n dy[n, :]
void GpuGpt::linear_backward(bf16* dinp, const bf16* dout, const bf16* inp, std::int64_t w, std::int64_t b, int N, int IC, int OC) {
  gemms_.run(GemmCall{false, false, IC, N, OC, IC, OC, IC}, weight(w), dout, dinp);
  GemmCall dw{false, true, IC, OC, N, IC, OC, IC};
  dw.d = DType::fp32;
  dw.beta = 1.0f;
  gemms_.run(dw, inp, dout, g(w));
  if (b >= 0) bias_backward(g(b), dout, N, OC, stream_);
}

float GpuGpt::forward(const int* inputs, const int* targets) {
  const int B = B_, T = T_, C = cfg_.d_model, NH = cfg_.n_head, HS = C / NH, N = B * T, Vp = cfg_.padded_vocab();
  const int BH = B * NH;
  core::NvtxRange range("forward");
  mark("embedding");
  FP8S_CUDA(cudaMemcpyAsync(tokens_.get(), inputs, std::size_t(N) * sizeof(int), cudaMemcpyHostToDevice, stream_));
  FP8S_CUDA(cudaMemcpyAsync(targets_.get(), targets, std::size_t(N) * sizeof(int), cudaMemcpyHostToDevice, stream_));
  encoder_forward(encoded_.as<bf16>(), tokens_.as<int>(), weight(off_["wte"]), weight(off_["wpe"]), B, T, C, stream_);
  const bf16* x = encoded_.as<bf16>();
  for (int l = 0; l < cfg_.n_layer; ++l) {
    core::NvtxRange lr("layer forward");
    LayerActs& a = acts_[std::size_t(l)];
    const std::string h = fmt::format("h{}.", l);
    mark("layernorm");
    layernorm_forward(a.ln1.as<bf16>(), a.ln1_mean.as<float>(), a.ln1_rstd.as<float>(), x, weight(off_[h + "ln1_w"]),
                      weight(off_[h + "ln1_b"]), N, C, stream_);
    mark("matmul");
    linear_forward(a.qkv.as<bf16>(), a.ln1.as<bf16>(), off_[h + "qkv_w"], off_[h + "qkv_b"], N, C, 3 * C);
    mark("attention");
    split_heads(q_.as<bf16>(), k_.as<bf16>(), v_.as<bf16>(), a.qkv.as<bf16>(), B, T, NH, HS, stream_);
    // scores (row-major [T_q][T_k]) = q k^T / sqrt(HS): TN, m=T_k, n=T_q, k=HS, one per (b, h)
    GemmCall sc{true, false, T, T, HS, HS, HS, T, BH};
    sc.d = DType::fp32;
    sc.alpha = 1.0f / std::sqrt(float(HS));
    gemms_.run(sc, k_.get(), q_.get(), scores_.get());
    softmax_causal_forward(a.probs.as<bf16>(), scores_.as<float>(), BH, T, stream_);
    // y (row-major [T_q][HS]) = probs v: NN, m=HS, n=T_q, k=T_k
    gemms_.run(GemmCall{false, false, HS, T, T, HS, T, HS, BH}, v_.get(), a.probs.get(), yh_.get());
    merge_heads(a.atty.as<bf16>(), yh_.as<bf16>(), B, T, NH, HS, stream_);
    mark("matmul");
    linear_forward(scratch_.as<bf16>(), a.atty.as<bf16>(), off_[h + "proj_w"], off_[h + "proj_b"], N, C, C);
    mark("residual");
    residual_forward(a.x_mid.as<bf16>(), x, scratch_.as<bf16>(), std::int64_t(N) * C, stream_);
    mark("layernorm");
    layernorm_forward(a.ln2.as<bf16>(), a.ln2_mean.as<float>(), a.ln2_rstd.as<float>(), a.x_mid.as<bf16>(),
                      weight(off_[h + "ln2_w"]), weight(off_[h + "ln2_b"]), N, C, stream_);
    mark("matmul");
    linear_forward(a.fc.as<bf16>(), a.ln2.as<bf16>(), off_[h + "fc_w"], off_[h + "fc_b"], N, C, 4 * C);
    mark("gelu");
    gelu_forward(a.gelu.as<bf16>(), a.fc.as<bf16>(), std::int64_t(N) * 4 * C, stream_);
    mark("matmul");
    linear_forward(scratch_.as<bf16>(), a.gelu.as<bf16>(), off_[h + "fcproj_w"], off_[h + "fcproj_b"], N, 4 * C, C);
    mark("residual");
    residual_forward(a.x_out.as<bf16>(), a.x_mid.as<bf16>(), scratch_.as<bf16>(), std::int64_t(N) * C, stream_);
    x = a.x_out.as<bf16>();
  }
  mark("layernorm");
  layernorm_forward(lnf_.as<bf16>(), lnf_mean_.as<float>(), lnf_rstd_.as<float>(), x, weight(off_["lnf_w"]), weight(off_["lnf_b"]),
                    N, C, stream_);
  mark("lm_head");
  GemmCall head{true, false, Vp, N, C, C, C, Vp};
  head.d = DType::fp32;
  gemms_.run(head, weight(off_["lm_head"]), lnf_.get(), logits_.get());
  mark("loss");
  cross_entropy_forward_backward(losses_.as<float>(), dlogits_.as<bf16>(), logits_.as<float>(), targets_.as<int>(), N,
                                 cfg_.vocab, Vp, stream_);
  std::vector<float> losses(static_cast<std::size_t>(N));
  FP8S_CUDA(cudaMemcpyAsync(losses.data(), losses_.get(), fl(N), cudaMemcpyDeviceToHost, stream_));
  FP8S_CUDA(cudaStreamSynchronize(stream_));
  FP8S_CUDA(cudaGetLastError());
  double sum = 0;
  for (float l : losses) sum += l;
  return float(sum / N);
}

void GpuGpt::backward() {
  const int B = B_, T = T_, C = cfg_.d_model, NH = cfg_.n_head, HS = C / NH, N = B * T, Vp = cfg_.padded_vocab();
  const int BH = B * NH;
  core::NvtxRange range("backward");
  FP8S_CUDA(cudaMemsetAsync(grads_.get(), 0, grads_.size(), stream_));
  mark("lm_head");
  // dlnf = dlogits W (NN, m=C, n=N, k=Vp); dW += lnf^T-side (NT, m=C, n=Vp, k=N)
  gemms_.run(GemmCall{false, false, C, N, Vp, C, Vp, C}, weight(off_["lm_head"]), dlogits_.get(), dbuf_.get());
  GemmCall dwh{false, true, C, Vp, N, C, Vp, C};
  dwh.d = DType::fp32;
  dwh.beta = 1.0f;
  gemms_.run(dwh, lnf_.get(), dlogits_.get(), g(off_["lm_head"]));
  mark("layernorm");
  FP8S_CUDA(cudaMemsetAsync(dx_.get(), 0, dx_.size(), stream_));
  const bf16* last = acts_.back().x_out.as<bf16>();
  layernorm_backward(dx_.as<bf16>(), g(off_["lnf_w"]), g(off_["lnf_b"]), dbuf_.as<bf16>(), last, weight(off_["lnf_w"]),
                     lnf_mean_.as<float>(), lnf_rstd_.as<float>(), N, C, stream_);
  bf16* dx = dx_.as<bf16>();  // gradient of the residual stream, updated in place layer by layer
  for (int l = cfg_.n_layer - 1; l >= 0; --l) {
    core::NvtxRange lr("layer backward");
    LayerActs& a = acts_[std::size_t(l)];
    const std::string h = fmt::format("h{}.", l);
    const bf16* x_in = l == 0 ? encoded_.as<bf16>() : acts_[std::size_t(l - 1)].x_out.as<bf16>();
    // MLP: x_out = x_mid + fcproj(gelu(fc(ln2(x_mid))))
    mark("matmul");
    linear_backward(dbuf4_.as<bf16>(), dx, a.gelu.as<bf16>(), off_[h + "fcproj_w"], off_[h + "fcproj_b"], N, 4 * C, C);
    mark("gelu");
    gelu_backward(dbuf4_.as<bf16>(), a.fc.as<bf16>(), dbuf4_.as<bf16>(), std::int64_t(N) * 4 * C, stream_);
    mark("matmul");
    linear_backward(dbuf_.as<bf16>(), dbuf4_.as<bf16>(), a.ln2.as<bf16>(), off_[h + "fc_w"], off_[h + "fc_b"], N, C, 4 * C);
    mark("layernorm");
    layernorm_backward(dx, g(off_[h + "ln2_w"]), g(off_[h + "ln2_b"]), dbuf_.as<bf16>(), a.x_mid.as<bf16>(),
                       weight(off_[h + "ln2_w"]), a.ln2_mean.as<float>(), a.ln2_rstd.as<float>(), N, C, stream_);
    // Attention: x_mid = x_in + proj(attention(qkv(ln1(x_in))))
    mark("matmul");
    linear_backward(dbuf_.as<bf16>(), dx, a.atty.as<bf16>(), off_[h + "proj_w"], off_[h + "proj_b"], N, C, C);
    mark("attention");
    split_heads_single(yh_.as<bf16>(), dbuf_.as<bf16>(), B, T, NH, HS, stream_);  // dy per head
    split_heads(q_.as<bf16>(), k_.as<bf16>(), v_.as<bf16>(), a.qkv.as<bf16>(), B, T, NH, HS, stream_);
    GemmCall dp{true, false, T, T, HS, HS, HS, T, BH};  // dprobs = dy v^T, as the scores
    dp.d = DType::fp32;
    gemms_.run(dp, v_.get(), yh_.get(), scores_.get());
    gemms_.run(GemmCall{false, true, HS, T, T, HS, T, HS, BH}, yh_.get(), a.probs.get(), dv_.get());  // dv = probs^T dy
    softmax_causal_backward(dscores_.as<bf16>(), scores_.as<float>(), a.probs.as<bf16>(), 1.0f / std::sqrt(float(HS)), BH, T, stream_);
    gemms_.run(GemmCall{false, false, HS, T, T, HS, T, HS, BH}, k_.get(), dscores_.get(), dq_.get());  // dq = dscores k
    gemms_.run(GemmCall{false, true, HS, T, T, HS, T, HS, BH}, q_.get(), dscores_.get(), dk_.get());   // dk = dscores^T q
    merge_qkv_grads(dqkv_.as<bf16>(), dq_.as<bf16>(), dk_.as<bf16>(), dv_.as<bf16>(), B, T, NH, HS, stream_);
    mark("matmul");
    linear_backward(dbuf_.as<bf16>(), dqkv_.as<bf16>(), a.ln1.as<bf16>(), off_[h + "qkv_w"], off_[h + "qkv_b"], N, C, 3 * C);
    mark("layernorm");
    layernorm_backward(dx, g(off_[h + "ln1_w"]), g(off_[h + "ln1_b"]), dbuf_.as<bf16>(), x_in, weight(off_[h + "ln1_w"]),
                       a.ln1_mean.as<float>(), a.ln1_rstd.as<float>(), N, C, stream_);
  }
  mark("embedding");
  encoder_backward(g(off_["wte"]), g(off_["wpe"]), dx, tokens_.as<int>(), B, T, C, stream_);
  FP8S_CUDA(cudaGetLastError());
}

float GpuGpt::step(float lr, float grad_clip, const AdamWSettings& a) {
  core::NvtxRange range("optimizer");
  mark("optimizer");
  FP8S_CUDA(cudaMemsetAsync(norm_.get(), 0, sizeof(float), stream_));
  sum_squares(norm_.as<float>(), grads_.as<float>(), n_params_, stream_);
  float ss = 0;
  FP8S_CUDA(cudaMemcpyAsync(&ss, norm_.get(), sizeof ss, cudaMemcpyDeviceToHost, stream_));
  FP8S_CUDA(cudaStreamSynchronize(stream_));
  const float norm = std::sqrt(ss);
  const float scale = grad_clip > 0 && norm > grad_clip ? grad_clip / norm : 1.0f;
  ++t_;
  for (const auto& t : layout_)
    adamw_update(master_.as<float>() + t.offset, weights_.as<bf16>() + t.offset, grads_.as<float>() + t.offset,
                 adam_m_.as<float>() + t.offset, adam_v_.as<float>() + t.offset, t.size, lr, a.beta1, a.beta2, a.eps,
                 t.decay ? a.weight_decay : 0.0f, scale, t_, stream_);
  mark("end");
  FP8S_CUDA(cudaGetLastError());
  return norm;
}

}  // namespace fp8scope::model
