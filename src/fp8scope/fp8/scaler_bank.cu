#include "fp8scope/fp8/scaler_bank.cuh"

#include <cfloat>

namespace fp8scope::fp8 {
namespace {

struct BankView {
  float* history;
  int* count;
  const float* fmax;
  float* scale;
  float* scale_use;
  float* scale_inv;
  const float* planted;
  int len, margin;
  bool reduce_max;  // delayed scaling with amax_compute_algo max
};

// The same steps as TensorScaler::update and scale_from_amax, in the same float operations.
__device__ void update_slot(const BankView& v, int i, const CastStats& st) {
  const float fmax = v.fmax[i];
  if (fmax == 0.0f) return;  // no recipe for this slot
  const float amax = st.nonfinite ? NAN : st.amax;
  const int c = v.count[i]++;
  float* h = v.history + std::int64_t(i) * v.len;
  h[c % v.len] = amax;
  float a = amax;
  if (v.reduce_max) {
    // Unfilled slots are 0 and amax >= 0, so they never change the max; a NaN anywhere in
    // the window wins (as torch.max), which keeps the scale frozen until it rolls out.
    const int filled = c + 1 < v.len ? c + 1 : v.len;
    for (int j = 0; j < filled; ++j) {
      if (isnan(h[j])) {
        a = h[j];
        break;
      }
      a = fmaxf(a, h[j]);
    }
  }
  if (a > 0.0f && isfinite(a)) {
    float s = ldexpf(fmax / a, -v.margin);
    if (isinf(s)) s = FLT_MAX;
    v.scale[i] = s;
  }
  v.scale_use[i * ScalerBank::kStride] = v.scale[i] * v.planted[i];
  v.scale_inv[i * ScalerBank::kStride] = 1.0f / v.scale_use[i * ScalerBank::kStride];
}

__global__ void update_all_kernel(BankView v, const CastStats* stats, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) update_slot(v, i, stats[i]);
}

__global__ void update_one_kernel(BankView v, int slot, const CastStats* stats) { update_slot(v, slot, *stats); }

}  // namespace

ScalerBank::ScalerBank(const RecipeConfig& cfg, const std::vector<std::optional<Format>>& formats, const std::vector<float>& planted,
                       cudaStream_t s)
    : cfg_(cfg), n_(int(formats.size())) {
  if (cfg_.scaling == Scaling::current) cfg_.amax_history_len = 1;
  len_ = cfg_.amax_history_len < 1 ? 1 : cfg_.amax_history_len;
  const std::size_t n = formats.empty() ? 1 : formats.size();
  const std::size_t k = kStride;
  std::vector<float> fmax(n, 0.0f), ones(n, 1.0f), plant(n, 1.0f), use(n * k, 1.0f), inv(n * k, 1.0f);
  for (std::size_t i = 0; i < formats.size(); ++i) {
    if (formats[i]) fmax[i] = info(*formats[i]).max;
    if (i < planted.size()) plant[i] = planted[i], use[i * k] = planted[i], inv[i * k] = 1.0f / planted[i];
  }
  history_ = core::DeviceBuffer(n * std::size_t(len_) * sizeof(float));
  count_ = core::DeviceBuffer(n * sizeof(int));
  fmax_ = core::DeviceBuffer(n * sizeof(float));
  scale_ = core::DeviceBuffer(n * sizeof(float));
  scale_use_ = core::DeviceBuffer(n * k * sizeof(float));
  scale_inv_ = core::DeviceBuffer(n * k * sizeof(float));
  planted_ = core::DeviceBuffer(n * sizeof(float));
  FP8S_CUDA(cudaMemsetAsync(history_.get(), 0, history_.size(), s));
  FP8S_CUDA(cudaMemsetAsync(count_.get(), 0, count_.size(), s));
  FP8S_CUDA(cudaMemcpyAsync(fmax_.get(), fmax.data(), n * sizeof(float), cudaMemcpyHostToDevice, s));
  FP8S_CUDA(cudaMemcpyAsync(scale_.get(), ones.data(), n * sizeof(float), cudaMemcpyHostToDevice, s));
  FP8S_CUDA(cudaMemcpyAsync(scale_use_.get(), use.data(), n * k * sizeof(float), cudaMemcpyHostToDevice, s));
  FP8S_CUDA(cudaMemcpyAsync(scale_inv_.get(), inv.data(), n * k * sizeof(float), cudaMemcpyHostToDevice, s));
  FP8S_CUDA(cudaMemcpyAsync(planted_.get(), plant.data(), n * sizeof(float), cudaMemcpyHostToDevice, s));
  FP8S_CUDA(cudaStreamSynchronize(s));  // the host vectors go out of scope
}

namespace {
BankView view(const RecipeConfig& cfg, int len, core::DeviceBuffer& history, core::DeviceBuffer& count, core::DeviceBuffer& fmax,
              core::DeviceBuffer& scale, core::DeviceBuffer& use, core::DeviceBuffer& inv, core::DeviceBuffer& planted) {
  return BankView{history.as<float>(), count.as<int>(),
                  fmax.as<float>(),    scale.as<float>(),
                  use.as<float>(),     inv.as<float>(),
                  planted.as<float>(), len,
                  cfg.margin,          cfg.scaling == Scaling::delayed && cfg.amax_algo == AmaxAlgo::max};
}
}  // namespace

void ScalerBank::update_all(const CastStats* stats, cudaStream_t s) {
  if (n_ == 0) return;
  update_all_kernel<<<unsigned((n_ + 127) / 128), 128, 0, s>>>(
      view(cfg_, len_, history_, count_, fmax_, scale_, scale_use_, scale_inv_, planted_), stats, n_);
}

void ScalerBank::update_one(int slot, const CastStats* stats, cudaStream_t s) {
  update_one_kernel<<<1, 1, 0, s>>>(view(cfg_, len_, history_, count_, fmax_, scale_, scale_use_, scale_inv_, planted_), slot, stats);
}

}  // namespace fp8scope::fp8
