#include "fp8scope/cpu/gpt_ref.hpp"

#include "fp8scope/fp8/format.hpp"
#include "fp8scope/model/rope.hpp"

#include <cmath>

namespace fp8scope::cpu {
namespace {

using V = std::vector<double>;
constexpr double kLnEps = 1e-5;

// out[n][c] = (inp[n][c] - mean) * rstd * w[c] + b[c]
void layernorm_fwd(double* out, double* mean, double* rstd, const double* inp, const double* w, const double* b, int N, int C) {
  for (int n = 0; n < N; ++n) {
    const double* x = inp + std::int64_t(n) * C;
    double m = 0, v = 0;
    for (int c = 0; c < C; ++c) m += x[c];
    m /= C;
    for (int c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
    v /= C;
    const double s = 1.0 / std::sqrt(v + kLnEps);
    for (int c = 0; c < C; ++c) out[std::int64_t(n) * C + c] = (x[c] - m) * s * w[c] + b[c];
    mean[n] = m;
    rstd[n] = s;
  }
}

// RMSNorm (Llama): out[n][c] = inp[n][c] * rstd * w[c], rstd = 1 / sqrt(mean(inp^2) + eps).
void rmsnorm_fwd(double* out, double* rstd, const double* inp, const double* w, int N, int C) {
  for (int n = 0; n < N; ++n) {
    const double* x = inp + std::int64_t(n) * C;
    double ms = 0;
    for (int c = 0; c < C; ++c) ms += x[c] * x[c];
    const double s = 1.0 / std::sqrt(ms / C + kLnEps);
    for (int c = 0; c < C; ++c) out[std::int64_t(n) * C + c] = x[c] * s * w[c];
    rstd[n] = s;
  }
}

// Accumulates into dinp and dw: with y^ = x r, dx = r (dy^ - y^ mean(dy^ y^)), dy^ = w dy.
void rmsnorm_bwd(double* dinp, double* dw, const double* dout, const double* inp, const double* w, const double* rstd, int N, int C) {
  for (int n = 0; n < N; ++n) {
    const double* x = inp + std::int64_t(n) * C;
    const double* dy = dout + std::int64_t(n) * C;
    double* dx = dinp + std::int64_t(n) * C;
    double dot = 0;
    for (int c = 0; c < C; ++c) dot += w[c] * dy[c] * x[c] * rstd[n];
    dot /= C;
    for (int c = 0; c < C; ++c) {
      const double norm = x[c] * rstd[n];
      dw[c] += norm * dy[c];
      dx[c] += (w[c] * dy[c] - norm * dot) * rstd[n];
    }
  }
}

// Accumulates into dinp, dw, db.
void layernorm_bwd(double* dinp, double* dw, double* db, const double* dout, const double* inp, const double* w, const double* mean,
                   const double* rstd, int N, int C) {
  for (int n = 0; n < N; ++n) {
    const double* x = inp + std::int64_t(n) * C;
    const double* dy = dout + std::int64_t(n) * C;
    double* dx = dinp + std::int64_t(n) * C;
    double dnorm_mean = 0, dnorm_norm_mean = 0;
    for (int c = 0; c < C; ++c) {
      const double norm = (x[c] - mean[n]) * rstd[n];
      const double dnorm = w[c] * dy[c];
      dnorm_mean += dnorm;
      dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean /= C;
    dnorm_norm_mean /= C;
    for (int c = 0; c < C; ++c) {
      const double norm = (x[c] - mean[n]) * rstd[n];
      const double dnorm = w[c] * dy[c];
      db[c] += dy[c];
      dw[c] += norm * dy[c];
      dx[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * rstd[n];
    }
  }
}

// out[n][o] = bias[o] + sum_i inp[n][i] * W[o][i]   (W is [OC][IC], as PyTorch's Linear)
void matmul_fwd(double* out, const double* inp, const double* W, const double* bias, int N, int IC, int OC) {
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < OC; ++o) {
      double acc = bias ? bias[o] : 0.0;
      const double* x = inp + std::int64_t(n) * IC;
      const double* w = W + std::int64_t(o) * IC;
      for (int i = 0; i < IC; ++i) acc += x[i] * w[i];
      out[std::int64_t(n) * OC + o] = acc;
    }
}

// Accumulates dinp, dW, dbias (each may be null: that gradient is not wanted).
void matmul_bwd(double* dinp, double* dW, double* dbias, const double* dout, const double* inp, const double* W, int N, int IC, int OC) {
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < OC; ++o) {
      const double d = dout[std::int64_t(n) * OC + o];
      if (d == 0.0) continue;
      if (dinp) {
        const double* w = W + std::int64_t(o) * IC;
        double* dx = dinp + std::int64_t(n) * IC;
        for (int i = 0; i < IC; ++i) dx[i] += d * w[i];
      }
      if (dW) {
        const double* x = inp + std::int64_t(n) * IC;
        double* dw = dW + std::int64_t(o) * IC;
        for (int i = 0; i < IC; ++i) dw[i] += d * x[i];
      }
      if (dbias) dbias[o] += d;
    }
}

// Where each head's q, k and v sit in a row of the fused qkv output [B][T][row]: q heads of
// hs channels first (d_model of them), then the k heads, then the v heads (kv of each). Query
// head h reads key/value head h / (NH / KV) (grouped-query attention; GPT-2: KV = NH).
struct Heads {
  int C, NH, KV, hs, row;
  explicit Heads(const model::GptConfig& c) : C(c.d_model), NH(c.n_head), KV(c.kv_heads()), hs(c.head_dim()), row(c.qkv_width()) {}
  int q(int h) const { return h * hs; }
  int k(int h) const { return C + h / (NH / KV) * hs; }
  int v(int h) const { return C + KV * hs + h / (NH / KV) * hs; }
};

// out[b, t, head h] = sum_s probs[b, h, t, s] v[b, s, kv head of h]
void attention_apply(double* out, const double* probs, const double* qkv, int B, int T, const Heads& H) {
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H.NH; ++h)
      for (int t = 0; t < T; ++t) {
        const double* p = probs + ((std::int64_t(b) * H.NH + h) * T + t) * T;
        double* y = out + (std::int64_t(b) * T + t) * H.C + h * H.hs;
        for (int i = 0; i < H.hs; ++i) y[i] = 0;
        for (int s = 0; s <= t; ++s) {
          const double* v = qkv + (std::int64_t(b) * T + s) * H.row + H.v(h);
          for (int i = 0; i < H.hs; ++i) y[i] += p[s] * v[i];
        }
      }
}

// probs [B][NH][T][T] (causal, zero above the diagonal); attention_apply then gives out [B][T][C].
void attention_probs(double* probs, const double* qkv, int B, int T, const Heads& H) {
  const double scale = 1.0 / std::sqrt(double(H.hs));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H.NH; ++h)
      for (int t = 0; t < T; ++t) {
        const double* q = qkv + (std::int64_t(b) * T + t) * H.row + H.q(h);
        double* p = probs + ((std::int64_t(b) * H.NH + h) * T + t) * T;
        double mx = -INFINITY;
        for (int s = 0; s <= t; ++s) {
          const double* k = qkv + (std::int64_t(b) * T + s) * H.row + H.k(h);
          double dot = 0;
          for (int i = 0; i < H.hs; ++i) dot += q[i] * k[i];
          p[s] = dot * scale;
          mx = std::max(mx, p[s]);
        }
        double sum = 0;
        for (int s = 0; s <= t; ++s) sum += (p[s] = std::exp(p[s] - mx));
        for (int s = 0; s < T; ++s) p[s] = s <= t ? p[s] / sum : 0.0;
      }
}

// Accumulates into dqkv (a key/value head's gradient sums over the query heads that read it).
void attention_bwd(double* dqkv, const double* dout, const double* qkv, const double* probs, int B, int T, const Heads& H) {
  const double scale = 1.0 / std::sqrt(double(H.hs));
  std::vector<double> dp(static_cast<std::size_t>(T)), ds(static_cast<std::size_t>(T));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H.NH; ++h)
      for (int t = 0; t < T; ++t) {
        const double* p = probs + ((std::int64_t(b) * H.NH + h) * T + t) * T;
        const double* dy = dout + (std::int64_t(b) * T + t) * H.C + h * H.hs;
        // y = sum_s p[s] v[s]  ->  dp[s] = dy . v[s], dv[s] += p[s] dy
        for (int s = 0; s <= t; ++s) {
          const double* v = qkv + (std::int64_t(b) * T + s) * H.row + H.v(h);
          double* dv = dqkv + (std::int64_t(b) * T + s) * H.row + H.v(h);
          double acc = 0;
          for (int i = 0; i < H.hs; ++i) {
            acc += dy[i] * v[i];
            dv[i] += p[s] * dy[i];
          }
          dp[std::size_t(s)] = acc;
        }
        // softmax: ds[s] = p[s] (dp[s] - sum_r p[r] dp[r])
        double dot = 0;
        for (int s = 0; s <= t; ++s) dot += p[s] * dp[std::size_t(s)];
        for (int s = 0; s <= t; ++s) ds[std::size_t(s)] = p[s] * (dp[std::size_t(s)] - dot) * scale;
        const double* q = qkv + (std::int64_t(b) * T + t) * H.row + H.q(h);
        double* dq = dqkv + (std::int64_t(b) * T + t) * H.row + H.q(h);
        for (int s = 0; s <= t; ++s) {
          const double* k = qkv + (std::int64_t(b) * T + s) * H.row + H.k(h);
          double* dk = dqkv + (std::int64_t(b) * T + s) * H.row + H.k(h);
          for (int i = 0; i < H.hs; ++i) {
            dq[i] += ds[std::size_t(s)] * k[i];
            dk[i] += ds[std::size_t(s)] * q[i];
          }
        }
      }
}

// Rotary positions (Llama): channels (2i, 2i+1) of every q and k head at position t are rotated
// by t theta^(-2i / hs). sign -1 rotates back, which is also the rotation's gradient (its
// transpose): rope(grad, -1) carries a gradient from the rotated q, k to the linear's output.
void rope(double* qkv, int B, int T, const Heads& H, double theta, int sign) {
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      double* row = qkv + (std::int64_t(b) * T + t) * H.row;
      for (int i = 0; i < H.hs / 2; ++i) {
        const double a = sign * model::rope_angle(t, i, H.hs, theta), c = std::cos(a), sn = std::sin(a);
        auto rotate = [&](double* x) {
          const double x0 = x[2 * i], x1 = x[2 * i + 1];
          x[2 * i] = x0 * c - x1 * sn;
          x[2 * i + 1] = x0 * sn + x1 * c;
        };
        for (int h = 0; h < H.NH; ++h) rotate(row + H.q(h));
        for (int h = 0; h < H.KV; ++h) rotate(row + H.C + h * H.hs);
      }
    }
}

double silu(double x) { return x / (1.0 + std::exp(-x)); }
double silu_grad(double x) {
  const double sg = 1.0 / (1.0 + std::exp(-x));
  return sg * (1.0 + x * (1.0 - sg));
}

constexpr double kGeluC = 0.7978845608028654;  // sqrt(2/pi)
double gelu(double x) { return 0.5 * x * (1.0 + std::tanh(kGeluC * (x + 0.044715 * x * x * x))); }
double gelu_grad(double x) {
  const double u = kGeluC * (x + 0.044715 * x * x * x);
  const double th = std::tanh(u);
  const double du = kGeluC * (1.0 + 3.0 * 0.044715 * x * x);
  return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du;
}

const char* const kLinearNames[] = {"qkv", "proj", "fc1", "fc2", "lm_head"};

}  // namespace

void CpuGpt::linear_fwd(int layer, int which, double* out, const double* x, const double* W, const double* b, int N, int IC, int OC,
                        const double** xq, const double** wq) {
  if (fp8_ && fp8_->fp8_linear(kLinearNames[which]) && fp8::per_block(fp8_->scaling())) {
    // Scales per row or block belong to one GEMM's reduction dimension: backward quantises
    // its own copies, so it keeps the high-precision operands.
    const std::string name = kLinearNames[which];
    *xq = x;
    *wq = W;
    matmul_fwd(out, fp8_->quantize_operand(layer, name + ".input", "input", x, N, IC, true),
               fp8_->quantize_operand(layer, name + ".weight", "weight", W, OC, IC, true), b, N, IC, OC);
    return;
  }
  if (fp8_ && fp8_->fp8_linear(kLinearNames[which])) {
    const std::string name = kLinearNames[which];
    x = fp8_->quantize(layer, name + ".input", "input", x, std::size_t(N) * IC);
    W = fp8_->quantize(layer, name + ".weight", "weight", W, std::size_t(OC) * IC);
  }
  *xq = x;
  *wq = W;
  matmul_fwd(out, x, W, b, N, IC, OC);
}

void CpuGpt::linear_bwd(int layer, int which, double* dx, double* dW, double* db, const double* dy, const double* xq, const double* wq,
                        int N, int IC, int OC) {
  // The bias gradient comes from the high-precision gradient, as FP8 frameworks compute it.
  if (db)
    for (int n = 0; n < N; ++n)
      for (int o = 0; o < OC; ++o) db[o] += dy[std::int64_t(n) * OC + o];
  if (fp8_ && fp8_->fp8_linear(kLinearNames[which]) && fp8::per_block(fp8_->scaling())) {
    // dgrad (dx = dy W) reduces over the output features: dy by its rows, W by its columns
    // (128x128 blocks serve both directions, so block scaling reuses the forward copy). wgrad
    // (dW = dy^T x) reduces over the tokens: dy and x each quantised along them, as
    // TransformerEngine's columnwise copies.
    const std::string name = kLinearNames[which];
    const double* w_dgrad = fp8_->scaling() == fp8::Scaling::block
                                ? fp8_->quantized(layer, name + ".weight")
                                : fp8_->quantize_operand(layer, name + ".weight_t", "weight", wq, OC, IC, false);
    matmul_bwd(dx, nullptr, nullptr, fp8_->quantize_operand(layer, name + ".grad", "grad", dy, N, OC, true), nullptr, w_dgrad, N, IC, OC);
    matmul_bwd(nullptr, dW, nullptr, fp8_->quantize_operand(layer, name + ".grad_t", "grad", dy, N, OC, false),
               fp8_->quantize_operand(layer, name + ".input_t", "input", xq, N, IC, false), nullptr, N, IC, OC);
    return;
  }
  const double* g = fp8_ && fp8_->fp8_linear(kLinearNames[which])
                        ? fp8_->quantize(layer, std::string(kLinearNames[which]) + ".grad", "grad", dy, std::size_t(N) * OC)
                        : dy;
  matmul_bwd(dx, dW, nullptr, g, xq, wq, N, IC, OC);
}

void CpuGpt::observe(int layer, const char* tensor, const char* pass, const std::vector<double>& v) {
  if (fp8_) fp8_->observe(layer, tensor, pass, v.data(), v.size());
}

CpuGpt::CpuGpt(const model::GptConfig& cfg) : cfg_(cfg) {
  auto layout = model::param_layout(cfg);
  auto at = [&](const std::string& name) -> std::int64_t {  // -1: the architecture has no such tensor
    for (auto& t : layout)
      if (t.name == name) return t.offset;
    return -1;
  };
  wte_ = at("wte");
  wpe_ = at("wpe");
  lnf_w_ = at("lnf_w");
  lnf_b_ = at("lnf_b");
  lm_head_ = cfg.tied ? wte_ : at("lm_head");
  for (int l = 0; l < cfg.n_layer; ++l) {
    const std::string h = "h" + std::to_string(l) + ".";
    off_.push_back({at(h + "ln1_w"), at(h + "ln1_b"), at(h + "qkv_w"), at(h + "qkv_b"), at(h + "proj_w"), at(h + "proj_b"), at(h + "ln2_w"),
                    at(h + "ln2_b"), at(h + "fc_w"), at(h + "fc_b"), at(h + "fcproj_w"), at(h + "fcproj_b")});
  }
}

namespace {
// A tensor of the flat parameter (or gradient) buffer, or nullptr where the architecture has
// none (Llama's biases).
template <class T>
T* part(T* base, std::int64_t offset) {
  return offset < 0 ? nullptr : base + offset;
}
}  // namespace

// Norm before attention, before the MLP and at the end: LayerNorm (GPT-2) or RMSNorm (Llama).
void CpuGpt::norm_fwd(double* out, double* mean, double* rstd, const double* x, const double* w, const double* b, int N) const {
  if (cfg_.llama())
    rmsnorm_fwd(out, rstd, x, w, N, cfg_.d_model);
  else
    layernorm_fwd(out, mean, rstd, x, w, b, N, cfg_.d_model);
}

void CpuGpt::norm_bwd(double* dx, double* dw, double* db, const double* dy, const double* x, const double* w, const double* mean,
                      const double* rstd, int N) const {
  if (cfg_.llama())
    rmsnorm_bwd(dx, dw, dy, x, w, rstd, N, cfg_.d_model);
  else
    layernorm_bwd(dx, dw, db, dy, x, w, mean, rstd, N, cfg_.d_model);
}

double CpuGpt::forward(const std::vector<double>& P, const int* inputs, const int* targets, int B, int T) {
  B_ = B;
  T_ = T;
  const int C = cfg_.d_model, N = B * T, Vp = cfg_.padded_vocab(), Vr = cfg_.vocab;
  const int QW = cfg_.qkv_width(), F = cfg_.ffn_width(), FW = cfg_.llama() ? 2 * F : F;  // fc: gate and up (Llama)
  const Heads H(cfg_);
  inputs_.assign(inputs, inputs + N);
  targets_.assign(targets, targets + N);
  layers_.assign(std::size_t(cfg_.n_layer), Layer{});
  V x(std::size_t(N) * C);
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      x[std::size_t(n) * C + c] =
          P[std::size_t(wte_ + std::int64_t(inputs[n]) * C + c)] + (wpe_ >= 0 ? P[std::size_t(wpe_ + std::int64_t(n % T) * C + c)] : 0.0);
  const double* p = P.data();
  for (int l = 0; l < cfg_.n_layer; ++l) {
    Layer& L = layers_[std::size_t(l)];
    const Offsets& o = off_[std::size_t(l)];
    L.x_in = x;
    L.ln1.resize(std::size_t(N) * C);
    L.ln1_mean.resize(std::size_t(N));
    L.ln1_rstd.resize(std::size_t(N));
    norm_fwd(L.ln1.data(), L.ln1_mean.data(), L.ln1_rstd.data(), x.data(), p + o.ln1_w, part(p, o.ln1_b), N);
    L.qkv.resize(std::size_t(N) * QW);
    linear_fwd(l, 0, L.qkv.data(), L.ln1.data(), p + o.qkv_w, part(p, o.qkv_b), N, C, QW, &L.xq[0], &L.wq[0]);
    observe(l, "qkv", "forward", L.qkv);
    if (cfg_.llama()) rope(L.qkv.data(), B, T, H, cfg_.rope_theta, +1);  // attention reads the rotated q and k
    L.probs.resize(std::size_t(B) * H.NH * T * T);
    L.atty.resize(std::size_t(N) * C);
    if (fp8_ && fp8_->attention()) {
      // FP8 attention: Q, K, V quantised (one scale each) feed QK^T; the probabilities are
      // quantised before PV. Backward sees the same quantised operands (straight-through).
      L.qkv_att.resize(L.qkv.size());
      const char* names[3] = {"q.input", "k.input", "v.input"};
      const int first[3] = {0, C, C + H.KV * H.hs}, width[3] = {C, H.KV * H.hs, H.KV * H.hs};
      for (int j = 0; j < 3; ++j) {
        std::vector<double> piece(std::size_t(N) * width[j]);
        for (int n = 0; n < N; ++n)
          for (int c = 0; c < width[j]; ++c) piece[std::size_t(n) * width[j] + c] = L.qkv[std::size_t(n) * QW + first[j] + c];
        const double* q = fp8_->quantize(l, names[j], "input", piece.data(), piece.size());
        for (int n = 0; n < N; ++n)
          for (int c = 0; c < width[j]; ++c) L.qkv_att[std::size_t(n) * QW + first[j] + c] = q[std::size_t(n) * width[j] + c];
      }
      attention_probs(L.probs.data(), L.qkv_att.data(), B, T, H);
      const double* pq = fp8_->quantize(l, "probs.input", "input", L.probs.data(), L.probs.size());
      std::copy(pq, pq + L.probs.size(), L.probs.begin());
      attention_apply(L.atty.data(), L.probs.data(), L.qkv_att.data(), B, T, H);
    } else {
      L.qkv_att.clear();
      attention_probs(L.probs.data(), L.qkv.data(), B, T, H);
      attention_apply(L.atty.data(), L.probs.data(), L.qkv.data(), B, T, H);
    }
    observe(l, "probs", "forward", L.probs);
    observe(l, "attention_out", "forward", L.atty);
    V proj(std::size_t(N) * C);
    linear_fwd(l, 1, proj.data(), L.atty.data(), p + o.proj_w, part(p, o.proj_b), N, C, C, &L.xq[1], &L.wq[1]);
    L.x_mid.resize(std::size_t(N) * C);
    for (std::size_t i = 0; i < L.x_mid.size(); ++i) L.x_mid[i] = x[i] + proj[i];
    observe(l, "residual", "forward", L.x_mid);
    L.ln2.resize(std::size_t(N) * C);
    L.ln2_mean.resize(std::size_t(N));
    L.ln2_rstd.resize(std::size_t(N));
    norm_fwd(L.ln2.data(), L.ln2_mean.data(), L.ln2_rstd.data(), L.x_mid.data(), p + o.ln2_w, part(p, o.ln2_b), N);
    L.fc.resize(std::size_t(N) * FW);
    linear_fwd(l, 2, L.fc.data(), L.ln2.data(), p + o.fc_w, part(p, o.fc_b), N, C, FW, &L.xq[2], &L.wq[2]);
    observe(l, "fc1_out", "forward", L.fc);
    // The MLP's activation: GELU (GPT-2) or SwiGLU, silu(gate) * up (Llama).
    L.gelu.resize(std::size_t(N) * F);
    if (cfg_.llama()) {
      for (int n = 0; n < N; ++n)
        for (int f = 0; f < F; ++f)
          L.gelu[std::size_t(n) * F + f] = silu(L.fc[std::size_t(n) * FW + f]) * L.fc[std::size_t(n) * FW + F + f];
    } else {
      for (std::size_t i = 0; i < L.fc.size(); ++i) L.gelu[i] = gelu(L.fc[i]);
    }
    V fcproj(std::size_t(N) * C);
    observe(l, cfg_.llama() ? "swiglu_out" : "gelu_out", "forward", L.gelu);
    linear_fwd(l, 3, fcproj.data(), L.gelu.data(), p + o.fcproj_w, part(p, o.fcproj_b), N, F, C, &L.xq[3], &L.wq[3]);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = L.x_mid[i] + fcproj[i];
    observe(l, "block_out", "forward", x);
  }
  x_out_ = x;
  lnf_.resize(std::size_t(N) * C);
  lnf_mean_.resize(std::size_t(N));
  lnf_rstd_.resize(std::size_t(N));
  norm_fwd(lnf_.data(), lnf_mean_.data(), lnf_rstd_.data(), x.data(), p + lnf_w_, part(p, lnf_b_), N);
  logits_.resize(std::size_t(N) * Vp);
  linear_fwd(-1, 4, logits_.data(), lnf_.data(), p + lm_head_, nullptr, N, C, Vp, &head_xq_, &head_wq_);
  observe(-1, "logits", "forward", logits_);
  // Softmax and loss over the real vocabulary; padded logits take no part.
  probs_.assign(std::size_t(N) * Vp, 0.0);
  double loss = 0;
  for (int n = 0; n < N; ++n) {
    const double* z = logits_.data() + std::int64_t(n) * Vp;
    double mx = -INFINITY, sum = 0;
    for (int v = 0; v < Vr; ++v) mx = std::max(mx, z[v]);
    for (int v = 0; v < Vr; ++v) sum += std::exp(z[v] - mx);
    for (int v = 0; v < Vr; ++v) probs_[std::size_t(n) * Vp + v] = std::exp(z[v] - mx) / sum;
    loss += -(z[targets[n]] - mx - std::log(sum));
  }
  observe(-1, "loss", "forward", V{loss / N});
  return loss / N;
}

void CpuGpt::backward(const std::vector<double>& P, std::vector<double>& G) {
  const int B = B_, T = T_, C = cfg_.d_model, N = B * T, Vp = cfg_.padded_vocab(), Vr = cfg_.vocab;
  const int QW = cfg_.qkv_width(), F = cfg_.ffn_width(), FW = cfg_.llama() ? 2 * F : F;
  const Heads H(cfg_);
  G.assign(P.size(), 0.0);
  const double* p = P.data();
  double* g = G.data();
  V dlogits(std::size_t(N) * Vp, 0.0);
  for (int n = 0; n < N; ++n)
    for (int v = 0; v < Vr; ++v)
      dlogits[std::size_t(n) * Vp + v] = (probs_[std::size_t(n) * Vp + v] - (v == targets_[std::size_t(n)] ? 1.0 : 0.0)) / N;
  V dlnf(std::size_t(N) * C, 0.0);
  linear_bwd(-1, 4, dlnf.data(), g + lm_head_, nullptr, dlogits.data(), head_xq_, head_wq_, N, C, Vp);
  V dx(std::size_t(N) * C, 0.0);
  norm_bwd(dx.data(), g + lnf_w_, part(g, lnf_b_), dlnf.data(), x_out_.data(), p + lnf_w_, lnf_mean_.data(), lnf_rstd_.data(), N);
  for (int l = cfg_.n_layer - 1; l >= 0; --l) {
    const Layer& L = layers_[std::size_t(l)];
    const Offsets& o = off_[std::size_t(l)];
    // x_out = x_mid + fcproj(act(fc(norm2(x_mid))))
    V dact(L.gelu.size(), 0.0);
    linear_bwd(l, 3, dact.data(), g + o.fcproj_w, part(g, o.fcproj_b), dx.data(), L.xq[3], L.wq[3], N, F, C);
    V dfc(L.fc.size(), 0.0);
    if (cfg_.llama()) {
      for (int n = 0; n < N; ++n)
        for (int f = 0; f < F; ++f) {
          const double gate = L.fc[std::size_t(n) * FW + f], up = L.fc[std::size_t(n) * FW + F + f], d = dact[std::size_t(n) * F + f];
          dfc[std::size_t(n) * FW + f] = d * up * silu_grad(gate);
          dfc[std::size_t(n) * FW + F + f] = d * silu(gate);
        }
    } else {
      // The GELU's input as the GPU keeps it for backward: in E4M3 at unit scale (FP8 GPT-2).
      const bool e4m3 = fp8_ && model::keeps_gelu_input_e4m3(cfg_, &fp8_->config());
      for (std::size_t i = 0; i < dfc.size(); ++i)
        dfc[i] = dact[i] * gelu_grad(e4m3 ? double(fp8::quantize(float(L.fc[i]), fp8::Format::e4m3, fp8::Overflow::satfinite)) : L.fc[i]);
    }
    V dln2(std::size_t(N) * C, 0.0);
    linear_bwd(l, 2, dln2.data(), g + o.fc_w, part(g, o.fc_b), dfc.data(), L.xq[2], L.wq[2], N, C, FW);
    V dx_mid = dx;  // the residual path
    norm_bwd(dx_mid.data(), g + o.ln2_w, part(g, o.ln2_b), dln2.data(), L.x_mid.data(), p + o.ln2_w, L.ln2_mean.data(), L.ln2_rstd.data(),
             N);
    // x_mid = x_in + proj(attention(qkv(norm1(x_in))))
    V datty(std::size_t(N) * C, 0.0);
    observe(l, "residual_grad", "backward", dx_mid);
    linear_bwd(l, 1, datty.data(), g + o.proj_w, part(g, o.proj_b), dx_mid.data(), L.xq[1], L.wq[1], N, C, C);
    V dqkv(std::size_t(N) * QW, 0.0);
    if (!L.qkv_att.empty()) {
      const double* dq = fp8_->quantize(l, "attention_out.grad", "grad", datty.data(), datty.size());
      std::copy(dq, dq + datty.size(), datty.begin());
    }
    attention_bwd(dqkv.data(), datty.data(), L.qkv_att.empty() ? L.qkv.data() : L.qkv_att.data(), L.probs.data(), B, T, H);
    if (cfg_.llama()) rope(dqkv.data(), B, T, H, cfg_.rope_theta, -1);  // through the rotation to the linear's output
    V dln1(std::size_t(N) * C, 0.0);
    linear_bwd(l, 0, dln1.data(), g + o.qkv_w, part(g, o.qkv_b), dqkv.data(), L.xq[0], L.wq[0], N, C, QW);
    dx = dx_mid;
    norm_bwd(dx.data(), g + o.ln1_w, part(g, o.ln1_b), dln1.data(), L.x_in.data(), p + o.ln1_w, L.ln1_mean.data(), L.ln1_rstd.data(), N);
  }
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) {
      g[wte_ + std::int64_t(inputs_[std::size_t(n)]) * C + c] += dx[std::size_t(n) * C + c];
      if (wpe_ >= 0) g[wpe_ + std::int64_t(n % T) * C + c] += dx[std::size_t(n) * C + c];
    }
}

}  // namespace fp8scope::cpu
