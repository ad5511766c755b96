#pragma once
// The GPU model's FP8 state for one run: the tap plan, the per-slot cast statistics (zeroed
// each step, written by the casts and the observing kernels), the recipe (ScalerBank), and
// the taps copied back to the host. CUDA builds only.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/fp8/block_cast.cuh"
#include "fp8scope/fp8/scaler_bank.cuh"
#include "fp8scope/fp8/tap.hpp"
#include "fp8scope/model/fp8_plan.hpp"

#include <cuda_bf16.h>

#include <functional>
#include <memory>
#include <vector>

namespace fp8scope::gpu_model {

class Fp8Runtime {
 public:
  Fp8Runtime(const model::GptConfig& cfg, int B, int T, const model::Fp8ModelConfig& f, cudaStream_t s, bool flash_attention = false);

  const model::Fp8ModelConfig& config() const { return cfg_; }
  const model::TapPlan& plan() const { return plan_; }
  int slot(int layer, const std::string& tensor) const { return plan_.index(layer, tensor); }

  // A step in four parts, so that its device work can be captured once and replayed (a CUDA
  // graph): plan_step on the host before the step (collects the last step's taps, decides
  // whether this one records: the observing kernels run on recorded steps only, so a captured
  // step is one of two graphs), begin_step and end_step on the stream inside it, finish_step
  // on the host after the step is enqueued or launched.
  // begin_step: the statistics zeroed, or (carried) set to the carried ones (below).
  void plan_step();
  void begin_step(bool carried = false);
  // Statistics counted before the steps they belong to: AdamW casts the FP8 block weights the
  // next steps use (delayed scaling) and counts that cast here, [slots] like stats() and zero
  // elsewhere; each step that uses those codes starts from them (begin_step(true)), until AdamW
  // clears them (clear_carried_stats) and casts again. Allocated by the first call.
  fp8::CastStats* carried_stats();
  void clear_carried_stats();
  bool recording() const { return recording_; }
  void set_tap_interval(int k) { cfg_.tap_interval = k; }

  // Data parallelism: reduces n amaxes (max) and non-finite counts (sum) across the ranks
  // in place, on the stream, before the recipe uses them (TransformerEngine's reduce_amax).
  // The taps keep each rank's own statistics.
  using AmaxReducer = std::function<void(float* amax, unsigned long long* nonfinite, int n, cudaStream_t s)>;
  void set_amax_reducer(AmaxReducer r) { reducer_ = std::move(r); }
  bool has_reducer() const { return bool(reducer_); }

  // Before the cast of a slot: under current scaling, measure the tensor and set the slot's
  // scale from its own amax; under delayed scaling nothing (the scale is last step's).
  void prepare(int slot, const __nv_bfloat16* x, std::int64_t n);
  void prepare(int slot, const float* x, std::int64_t n);  // a weight cast from its FP32 master
  const float* scale(int slot) const { return bank_.scale(slot); }
  const float* scale_inv(int slot) const { return bank_.scale_inv(slot); }
  fp8::CastStats* stats(int slot) const { return stats_.as<fp8::CastStats>() + slot; }
  fp8::Format format(int slot) const { return *plan_.slots()[std::size_t(slot)].format; }
  fp8::Overflow overflow() const { return cfg_.overflow; }

  // Per-row / per-block scaling (scaling rowwise | block): the casts of fp8/block_cast.cuh.
  bool per_block() const { return fp8::per_block(cfg_.recipe.scaling); }
  fp8::ScaleMode activation_mode() const { return model::activation_scale_mode(cfg_.recipe.scaling); }
  fp8::ScaleMode weight_mode() const { return model::weight_scale_mode(cfg_.recipe.scaling); }
  // The outputs of one copy of a block cast: codes and scale tensor as given, the statistics of
  // `slot` (none for -1: a copy without a tap), and on recorded steps its blocks' amaxes into
  // scratch `which` (0 or 1, the two copies of one cast). After the cast, block_taps(slot,
  // which) turns those into the tap's smallest non-zero and median block amax.
  fp8::BlockCastCopy block_copy(int slot, std::uint8_t* codes, float* lt, int which);
  void block_taps(int slot, int which);

  // Taps of tensors that stay in high precision (no-ops when not recording or not planned).
  // T: __nv_bfloat16 or float (the overloads of fp8::tensor_stats).
  template <class T>
  void observe(int layer, const char* tensor, const T* x, std::int64_t n) {
    if (!recording_) return;
    if (int i = slot(layer, tensor); i >= 0) fp8::tensor_stats(x, n, stats(i), stream_);
  }

  // End of a step (after backward): copies the statistics and the scales the casts used to the
  // host (pinned buffers), then, under delayed scaling, updates every scale for the next step.
  // Nothing waits: finish_step marks the copies, and the step's taps (quantised slots every
  // step, observed slots on recorded steps) are appended when the next step is planned or taps()
  // is read, by when the copy has long finished (the FP8 step used to stall the GPU here once
  // per step).
  void end_step();
  void finish_step();
  int step() const { return step_; }
  const std::vector<fp8::Tap>& taps() const {
    collect();
    return taps_;
  }

 private:
  model::Fp8ModelConfig cfg_;
  model::TapPlan plan_;
  cudaStream_t stream_;
  void reduce(fp8::CastStats* stats, int n);
  template <class T>
  void prepare_from(int slot, const T* x, std::int64_t n);
  core::DeviceBuffer stats_, carried_, tmp_, red_amax_, red_nonfinite_;
  AmaxReducer reducer_;
  fp8::ScalerBank bank_;
  core::PinnedBuffer<fp8::CastStats> host_stats_;
  core::PinnedBuffer<float> host_scales_;
  core::Event copied_;  // the last end_step's copies are done
  // Per-block slots: the largest dequantisation scale per slot (the tap's scale is its
  // inverse), the smallest non-zero and median block amax per slot (recorded steps), the
  // scratch those are sorted in, and their host copies.
  core::DeviceBuffer max_dequant_, quantiles_, block_amax_[2], sorted_, sort_temp_;
  std::size_t sort_temp_bytes_ = 0;
  core::PinnedBuffer<float> host_max_dequant_, host_quantiles_;
  // The taps of the step whose copies are in flight (pending_: not yet appended).
  void collect() const;
  mutable std::vector<fp8::Tap> taps_;
  mutable bool pending_ = false;
  int pending_step_ = 0;
  bool pending_recording_ = false;
  int step_ = 0;
  bool recording_ = false;
};

}  // namespace fp8scope::gpu_model
