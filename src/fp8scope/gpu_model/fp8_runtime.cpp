#include "fp8scope/gpu_model/fp8_runtime.hpp"

#include <stdexcept>

namespace fp8scope::gpu_model {

namespace {
std::vector<std::optional<fp8::Format>> formats_of(const model::TapPlan& p) {
  std::vector<std::optional<fp8::Format>> out;
  for (const auto& s : p.slots()) out.push_back(s.format);
  return out;
}
// The config, once it is one the GPU model can run (the probes refuse the others earlier, with
// a line of their own).
const model::Fp8ModelConfig& runnable(const model::Fp8ModelConfig& f) {
  if (fp8::per_block(f.recipe.scaling) && f.attention())
    throw std::invalid_argument("scaling " + fp8::to_string(f.recipe.scaling) +
                                " scales the linears; fp8_attention needs a per-tensor recipe");
  return f;
}
std::vector<float> planted_of(const model::TapPlan& p, const model::Fp8ModelConfig& f) {
  std::vector<float> out(p.slots().size(), 1.0f);
  for (const auto& [key, factor] : f.planted_scale)
    if (int i = p.index(key.first, key.second); i >= 0) out[std::size_t(i)] = factor;
  return out;
}
}  // namespace

Fp8Runtime::Fp8Runtime(const model::GptConfig& cfg, int B, int T, const model::Fp8ModelConfig& f, cudaStream_t s, bool flash_attention)
    : cfg_(runnable(f)),
      plan_(cfg, B, T, f, flash_attention),
      stream_(s),
      stats_(std::max<std::size_t>(1, plan_.slots().size()) * sizeof(fp8::CastStats)),
      tmp_(sizeof(fp8::CastStats)),
      bank_(f.recipe, formats_of(plan_), planted_of(plan_, f), s),
      host_stats_(plan_.slots().size()),
      host_scales_(plan_.slots().size() * fp8::ScalerBank::kStride),
      red_amax_(std::max<std::size_t>(1, plan_.slots().size()) * sizeof(float)),
      red_nonfinite_(std::max<std::size_t>(1, plan_.slots().size()) * sizeof(unsigned long long)) {
  if (!per_block()) return;
  const std::size_t n = std::max<std::size_t>(1, plan_.slots().size());
  const std::int64_t blocks = model::per_block_scratch(cfg, B, T, f).blocks;
  max_dequant_ = core::DeviceBuffer(n * sizeof(float));
  quantiles_ = core::DeviceBuffer(2 * n * sizeof(float));
  FP8S_CUDA(cudaMemsetAsync(quantiles_.get(), 0, quantiles_.size(), s));
  for (auto& b : block_amax_) b = core::DeviceBuffer(std::size_t(blocks) * sizeof(float));
  sorted_ = core::DeviceBuffer(std::size_t(blocks) * sizeof(float));
  sort_temp_bytes_ = fp8::block_amax_sort_temp_bytes(blocks);
  sort_temp_ = core::DeviceBuffer(std::max<std::size_t>(1, sort_temp_bytes_));
  host_max_dequant_ = core::PinnedBuffer<float>(n);
  host_quantiles_ = core::PinnedBuffer<float>(2 * n);
}

fp8::BlockCastCopy Fp8Runtime::block_copy(int slot, std::uint8_t* codes, float* lt, int which) {
  fp8::BlockCastCopy c{codes, lt};
  if (slot < 0) return c;
  c.stats = stats(slot);
  c.max_dequant = max_dequant_.as<float>() + slot;
  if (recording_) c.block_amax = block_amax_[which].as<float>();
  return c;
}

void Fp8Runtime::block_taps(int slot, int which) {
  if (slot < 0 || !recording_) return;
  fp8::block_amax_quantiles(block_amax_[which].as<float>(), plan_.slots()[std::size_t(slot)].geometry.blocks(), sorted_.as<float>(),
                            sort_temp_.get(), sort_temp_bytes_, quantiles_.as<float>() + 2 * slot, stream_);
}

void Fp8Runtime::reduce(fp8::CastStats* stats, int n) {
  if (!reducer_ || n == 0) return;
  fp8::pack_amax(red_amax_.as<float>(), red_nonfinite_.as<unsigned long long>(), stats, n, stream_);
  reducer_(red_amax_.as<float>(), red_nonfinite_.as<unsigned long long>(), n, stream_);
  fp8::unpack_amax(stats, red_amax_.as<float>(), red_nonfinite_.as<unsigned long long>(), n, stream_);
}

void Fp8Runtime::plan_step() {
  collect();  // this step's copies are about to write the pinned buffers again
  recording_ = cfg_.tap_interval > 0 && step_ % cfg_.tap_interval == 0;
}

fp8::CastStats* Fp8Runtime::carried_stats() {
  if (carried_.size() == 0) {
    carried_ = core::DeviceBuffer(stats_.size());
    FP8S_CUDA(cudaMemsetAsync(carried_.get(), 0, carried_.size(), stream_));
  }
  return carried_.as<fp8::CastStats>();
}

void Fp8Runtime::clear_carried_stats() { FP8S_CUDA(cudaMemsetAsync(carried_stats(), 0, carried_.size(), stream_)); }

void Fp8Runtime::begin_step(bool carried) {
  if (carried) {
    FP8S_CUDA(cudaMemcpyAsync(stats_.get(), carried_stats(), stats_.size(), cudaMemcpyDeviceToDevice, stream_));
  } else {
    FP8S_CUDA(cudaMemsetAsync(stats_.get(), 0, stats_.size(), stream_));
  }
  if (per_block()) FP8S_CUDA(cudaMemsetAsync(max_dequant_.get(), 0, max_dequant_.size(), stream_));
}

template <class T>
void Fp8Runtime::prepare_from(int slot, const T* x, std::int64_t n) {
  if (cfg_.recipe.scaling != fp8::Scaling::current) return;
  FP8S_CUDA(cudaMemsetAsync(tmp_.get(), 0, tmp_.size(), stream_));
  fp8::tensor_stats(x, n, tmp_.as<fp8::CastStats>(), stream_);
  reduce(tmp_.as<fp8::CastStats>(), 1);  // every rank casts with the same scale
  bank_.update_one(slot, tmp_.as<fp8::CastStats>(), stream_);
}
void Fp8Runtime::prepare(int slot, const __nv_bfloat16* x, std::int64_t n) { prepare_from(slot, x, n); }
void Fp8Runtime::prepare(int slot, const float* x, std::int64_t n) { prepare_from(slot, x, n); }

void Fp8Runtime::end_step() {
  const std::size_t n = plan_.slots().size();
  if (n) {
    FP8S_CUDA(cudaMemcpyAsync(host_stats_.data(), stats_.get(), n * sizeof(fp8::CastStats), cudaMemcpyDeviceToHost, stream_));
    FP8S_CUDA(cudaMemcpyAsync(host_scales_.data(), bank_.scales(), host_scales_.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    if (per_block()) {
      FP8S_CUDA(cudaMemcpyAsync(host_max_dequant_.data(), max_dequant_.get(), n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
      FP8S_CUDA(cudaMemcpyAsync(host_quantiles_.data(), quantiles_.get(), 2 * n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    }
  }
  if (cfg_.recipe.scaling == fp8::Scaling::delayed) {
    reduce(stats_.as<fp8::CastStats>(), int(n));  // after the copy: the taps stay per rank
    bank_.update_all(stats_.as<fp8::CastStats>(), stream_);
  }
}

void Fp8Runtime::finish_step() {
  if (!plan_.slots().empty()) {
    copied_.record(stream_);
    pending_ = true, pending_step_ = step_, pending_recording_ = recording_;
  }
  ++step_;
}

void Fp8Runtime::collect() const {
  if (!pending_) return;
  copied_.wait();
  pending_ = false;
  for (std::size_t i = 0; i < plan_.slots().size(); ++i) {
    const model::TapSlot& s = plan_.slots()[i];
    if (!s.format && !pending_recording_) continue;
    const fp8::CastStats& st = host_stats_[i];
    taps_.push_back({pending_step_, s.layer, s.tensor, s.pass, double(st.amax),
                     s.format ? host_scales_[i * fp8::ScalerBank::kStride] : 0.0f, (long long)(s.format ? st.nonfinite_out : st.nonfinite),
                     (long long)st.saturated, (long long)st.underflow, (long long)s.elements});
    if (s.geometry.mode != fp8::ScaleMode::tensor) {
      // The smallest quantisation scale of the blocks (as the CPU emulation's taps); the block
      // amax quantiles are measured on recorded steps only.
      fp8::Tap& t = taps_.back();
      t.scale = host_max_dequant_[i] > 0.0f ? 1.0f / host_max_dequant_[i] : 0.0f;
      if (pending_recording_)
        t.blocks = s.geometry.blocks(), t.block_amax_min = host_quantiles_[2 * i], t.block_amax_median = host_quantiles_[2 * i + 1];
    }
  }
}

}  // namespace fp8scope::gpu_model
