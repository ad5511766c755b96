// Memory-bound kernel micro-benchmarks at GPT-2 124M sizes (B=16, T=1024, C=768, V=50304):
// FP8 cast+amax, cast+transpose (also with the bias gradient; the block weights in one launch
// or one each), the per-row / per-block casts, FP8 transpose, the MLP's fused GELU casts, the BF16 bias gradient, LayerNorm,
// GELU, the residual add, causal softmax, cross-entropy (BF16 or FP8 gradient), AdamW; and the
// fused attention (compute-bound, in TFLOP/s).
// Counters: GB/s of the fewest bytes each kernel must move, its fraction of the device copy
// bandwidth measured in the same process (1 GiB copy: the target), and its fraction of a copy
// that moves the same bytes (what is left after the ramp-up and tail every small kernel pays).
#include "bench_common.hpp"

#include "fp8scope/fp8/block_cast.cuh"
#include "fp8scope/fp8/cast.cuh"
#include "fp8scope/gemm/kernels.cuh"
#include "fp8scope/gpu_model/kernels.cuh"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

using namespace fp8scope;
using gpu_model::bf16;

namespace {

constexpr int B = 16, T = 1024, C = 768, NH = 12, V = 50304;
constexpr std::int64_t N = std::int64_t(B) * T;

bool skip(benchmark::State& state) {
  if (bench::gpu_problem().empty()) return false;
  state.SkipWithError(bench::gpu_problem().c_str());
  return true;
}

void report(benchmark::State& state, double secs, double bytes) {
  const double gbs = bytes * double(state.iterations()) / secs / 1e9;
  state.counters["GB/s"] = gbs;
  state.counters["frac_copy"] = gbs * 1e9 / bench::copy_bandwidth();
  state.counters["frac_copy_same_bytes"] = gbs * 1e9 / bench::copy_bandwidth_moving(bytes);
}

core::DeviceBuffer random_bf16(std::int64_t n, float scale, std::uint64_t seed) {
  core::DeviceBuffer b(std::size_t(n) * 2);
  gemm::fill_normal(b.get(), gemm::DType::bf16, n, scale, seed, bench::stream());
  return b;
}
core::DeviceBuffer random_f32(std::int64_t n, float scale, std::uint64_t seed) {
  core::DeviceBuffer b(std::size_t(n) * 4);
  gemm::fill_normal(b.get(), gemm::DType::fp32, n, scale, seed, bench::stream());
  return b;
}

// The largest finite magnitude of n BF16 values, on the device (fp8::tensor_stats).
float bf16_amax(const core::DeviceBuffer& b, std::int64_t n) {
  core::DeviceBuffer stats(sizeof(fp8::CastStats));
  FP8S_CUDA(cudaMemsetAsync(stats.get(), 0, stats.size(), bench::stream()));
  fp8::tensor_stats(b.as<bf16>(), n, stats.as<fp8::CastStats>(), bench::stream());
  fp8::CastStats h{};
  FP8S_CUDA(cudaMemcpyAsync(&h, stats.get(), sizeof h, cudaMemcpyDeviceToHost, bench::stream()));
  FP8S_CUDA(cudaStreamSynchronize(bench::stream()));
  return h.amax;
}

// A cast's device-side scale (set once) and statistics. The statistics accumulate over the
// iterations (amax is a max, the counts are 64-bit), so they are zeroed once, outside the
// timed launches.
struct CastTarget {
  core::DeviceBuffer scale{4}, stats{sizeof(fp8::CastStats)};
  explicit CastTarget(float sc) {
    FP8S_CUDA(cudaMemcpy(scale.get(), &sc, 4, cudaMemcpyHostToDevice));
    FP8S_CUDA(cudaMemset(stats.get(), 0, stats.size()));
  }
  const float* s() const { return scale.as<float>(); }
  fp8::CastStats* st() const { return stats.as<fp8::CastStats>(); }
};

void bm_copy(benchmark::State& state) {
  if (skip(state)) return;
  const std::size_t bytes = 1u << 30;
  core::DeviceBuffer a(bytes), b(bytes);
  const double s = bench::run_timed(state, [&] { cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, bench::stream()); });
  report(state, s, 2.0 * bytes);
}

enum class CastMode { plain, transpose, transpose_dbias };

// dbias: the bias gradient comes out of the cast (per-tile column sums) and is reduced by
// column_sum_add, both timed, as a linear's FP8 backward runs them.
void bm_cast(benchmark::State& state, std::int64_t cols, CastMode mode) {
  if (skip(state)) return;
  const std::int64_t n = N * cols;
  auto in = random_bf16(n, 1.0f, 1);
  core::DeviceBuffer out(static_cast<std::size_t>(n)), out_t(static_cast<std::size_t>(n));
  core::DeviceBuffer partial(std::size_t(fp8::dbias_partial_floats(int(N), int(cols))) * 4), dbias(std::size_t(cols) * 4);
  const CastTarget c(100.0f);
  const auto f = fp8::Format::e4m3;
  const auto o = fp8::Overflow::satfinite;
  const double s = bench::run_timed(state, [&] {
    switch (mode) {
      case CastMode::plain: fp8::quantize(out.as<std::uint8_t>(), in.as<bf16>(), n, c.s(), f, o, c.st(), bench::stream()); break;
      case CastMode::transpose:
        fp8::quantize_transpose(out.as<std::uint8_t>(), out_t.as<std::uint8_t>(), in.as<bf16>(), int(N), int(cols), c.s(), f, o, c.st(),
                                bench::stream());
        break;
      case CastMode::transpose_dbias:
        fp8::quantize_transpose_dbias(out.as<std::uint8_t>(), out_t.as<std::uint8_t>(), partial.as<float>(), in.as<bf16>(), int(N),
                                      int(cols), c.s(), f, o, c.st(), bench::stream());
        gpu_model::column_sum_add(dbias.as<float>(), partial.as<float>(), fp8::dbias_partial_rows(int(N)), int(cols), int(cols),
                                  bench::stream());
        break;
    }
  });
  report(state, s, double(n) * (2 + (mode == CastMode::plain ? 1 : 2)));
}

// The casts of per-row / per-block scaling (fp8::block_cast_transpose) as the model's step runs
// them, with statistics and both copies: an activation or gradient [N][cols] in 1x128 blocks
// (vec128) or per row (outer_vec: one more read for the row and column amaxes), a weight in
// 128x128 blocks (blk128). Bytes: the reads (one or two) and the two FP8 copies. The scale rule:
// FP32 scales at margin 0 (the corrected division and a saturation compare per value; from
// f059679 until it measured no faster, saturations counted from each block's amax, which the
// committed `_margin_minus1` rows compared against) or powers of two (`_pow2`: one product a
// value, saturations counted from each block's amax). sums: with the bias gradient's column sums
// (a gradient's cast, `_dbias`: partial rows per 128-row tile, then summed in a fixed order).
void bm_block_cast(benchmark::State& state, std::int64_t rows, std::int64_t cols, fp8::ScaleMode mode, fp8::BlockScaleRule rule = {},
                   bool sums = false) {
  if (skip(state)) return;
  const std::int64_t n = rows * cols;
  auto in = random_bf16(n, 1.0f, 1);
  const fp8::ScaleGeometry gd = fp8::scale_geometry(mode, rows, cols), gt = fp8::scale_geometry(mode, cols, rows);
  core::DeviceBuffer out{std::size_t(n)}, out_t{std::size_t(n)}, lt{std::size_t(gd.lt_elements()) * 4},
      lt_t{std::size_t(gt.lt_elements()) * 4}, stats{2 * sizeof(fp8::CastStats)}, maxdq{8},
      scratch{fp8::block_cast_scratch_floats(int(rows), int(cols)) * 4},
      partial{sums ? std::size_t(fp8::block_cast_sum_rows(int(rows))) * std::size_t(cols) * 4 : 0}, dbias{std::size_t(cols) * 4};
  FP8S_CUDA(cudaMemset(stats.get(), 0, stats.size()));
  FP8S_CUDA(cudaMemset(maxdq.get(), 0, maxdq.size()));
  FP8S_CUDA(cudaMemset(dbias.get(), 0, dbias.size()));
  const fp8::BlockCastCopy d{out.as<std::uint8_t>(), lt.as<float>(), stats.as<fp8::CastStats>(), nullptr, maxdq.as<float>()};
  const fp8::BlockCastCopy t{out_t.as<std::uint8_t>(), lt_t.as<float>(), stats.as<fp8::CastStats>() + 1, nullptr, maxdq.as<float>() + 1};
  const double s = bench::run_timed(state, [&] {
    fp8::block_cast_transpose(in.as<bf16>(), int(rows), int(cols), mode, fp8::Format::e4m3, fp8::Overflow::satfinite, rule, d, t,
                              scratch.as<float>(), bench::stream(), sums ? partial.as<float>() : nullptr);
    if (sums)
      gpu_model::column_sum_add(dbias.as<float>(), partial.as<float>(), fp8::block_cast_sum_rows(int(rows)), int(cols), int(cols),
                                bench::stream());
  });
  report(state, s, double(n) * (mode == fp8::ScaleMode::outer_vec ? 6 : 4));
}

// The MLP's fused FP8 casts at fc1's output size: forward GELU -> FP8 with its transpose
// (reads the pre-activation, writes two FP8 copies); backward GELU gradient -> FP8 with its
// transpose and the bias gradient (reads the gradient and the pre-activation).
// e4m3_input: GPT-2's GELU input kept in E4M3 (gelu_input e4m3): forward also writes it (1 byte
// an element more), backward reads it instead of the BF16 pre-activation (1 byte less).
void bm_gelu_cast(benchmark::State& state, bool backward, bool e4m3_input = false) {
  if (skip(state)) return;
  const int cols = 4 * C;
  const std::int64_t n = N * cols;
  auto x = random_bf16(n, 1.0f, 1), dy = random_bf16(n, 1e-3f, 2);
  core::DeviceBuffer out(static_cast<std::size_t>(n)), out_t(static_cast<std::size_t>(n)), pre8(e4m3_input ? std::size_t(n) : 0);
  const CastTarget unit(1.0f);
  if (e4m3_input)  // the codes of x, as forward writes them
    gpu_model::gelu_cast_transpose(out.as<std::uint8_t>(), out_t.as<std::uint8_t>(), x.as<bf16>(), int(N), cols, unit.s(),
                                   fp8::Format::e4m3, fp8::Overflow::satfinite, nullptr, bench::stream(), pre8.as<std::uint8_t>());
  core::DeviceBuffer partial(std::size_t(fp8::dbias_partial_floats(int(N), cols)) * 4), dbias(std::size_t(cols) * 4);
  const CastTarget c(backward ? 1e4f : 100.0f);
  const double s = bench::run_timed(state, [&] {
    if (backward) {
      if (e4m3_input)
        gpu_model::dgelu_cast_transpose_dbias(out.as<std::uint8_t>(), out_t.as<std::uint8_t>(), partial.as<float>(), dy.as<bf16>(),
                                              pre8.as<std::uint8_t>(), int(N), cols, c.s(), fp8::Format::e5m2, fp8::Overflow::satfinite,
                                              c.st(), bench::stream());
      else
        gpu_model::dgelu_cast_transpose_dbias(out.as<std::uint8_t>(), out_t.as<std::uint8_t>(), partial.as<float>(), dy.as<bf16>(),
                                              x.as<bf16>(), int(N), cols, c.s(), fp8::Format::e5m2, fp8::Overflow::satfinite, c.st(),
                                              bench::stream());
      gpu_model::column_sum_add(dbias.as<float>(), partial.as<float>(), fp8::dbias_partial_rows(int(N)), cols, cols, bench::stream());
    } else {
      gpu_model::gelu_cast_transpose(out.as<std::uint8_t>(), out_t.as<std::uint8_t>(), x.as<bf16>(), int(N), cols, c.s(), fp8::Format::e4m3,
                                     fp8::Overflow::satfinite, c.st(), bench::stream(), e4m3_input ? pre8.as<std::uint8_t>() : nullptr);
    }
  });
  report(state, s, double(n) * ((backward ? 6 : 4) + (e4m3_input ? (backward ? -1 : 1) : 0)));
}

// The FP8 transpose an FP8 tensor written by another kernel needs for its wgrad GEMM: the
// LayerNorm output's (N x C) and the FP8 LM head gradient's (N x V, 824 MB each way).
void bm_transpose_fp8(benchmark::State& state, std::int64_t cols) {
  if (skip(state)) return;
  const std::int64_t n = N * cols;
  core::DeviceBuffer in(static_cast<std::size_t>(n)), out_t(static_cast<std::size_t>(n));
  FP8S_CUDA(cudaMemset(in.get(), 0x3C, in.size()));
  const double s = bench::run_timed(
      state, [&] { fp8::transpose_fp8(out_t.as<std::uint8_t>(), in.as<std::uint8_t>(), int(N), int(cols), bench::stream()); });
  report(state, s, 2.0 * double(n));
}

// The BF16 linear's bias gradient (column sums of its output gradient, partials then
// column_sum_add, both timed): reads N x cols BF16 once.
void bm_bias_backward(benchmark::State& state, std::int64_t cols) {
  if (skip(state)) return;
  auto dy = random_bf16(N * cols, 1.0f, 3);
  core::DeviceBuffer db(std::size_t(cols) * 4), scratch(std::size_t(gpu_model::bias_backward_scratch_floats(int(cols))) * 4);
  const double s = bench::run_timed(
      state, [&] { gpu_model::bias_backward(db.as<float>(), scratch.as<float>(), dy.as<bf16>(), int(N), int(cols), bench::stream()); });
  report(state, s, 2.0 * double(N * cols));
}

// The 48 block weights of GPT-2 124M (qkv, proj, fc1, fc2 of 12 layers; 85M parameters) cast
// to FP8 from BF16 with both copies, each with its own scale and statistics, as the model's FP8
// step did while it kept every layer's FP8 weights from forward to backward
// (quantize_transpose_many, 4 bytes a parameter; per_weight: the same, one launch each). Kept
// for comparison with the casts from the masters below: no target.
enum class WeightCasts { one_launch, per_weight };
void bm_cast_weights(benchmark::State& state, WeightCasts mode) {
  if (skip(state)) return;
  const int shapes[4][2] = {{3 * C, C}, {C, C}, {4 * C, C}, {C, 4 * C}};
  std::vector<core::DeviceBuffer> in, out, out_t;
  std::vector<fp8::CastTransposeJob> jobs;
  core::DeviceBuffer scales(48 * 4), stats(48 * sizeof(fp8::CastStats));
  const std::vector<float> sc(48, 100.0f);
  FP8S_CUDA(cudaMemcpy(scales.get(), sc.data(), scales.size(), cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemset(stats.get(), 0, stats.size()));
  double params = 0;
  int max_tiles = 0;
  for (int l = 0; l < 12; ++l)
    for (const auto& sh : shapes) {
      const std::int64_t n = std::int64_t(sh[0]) * sh[1];
      const int i = int(jobs.size());
      in.push_back(random_bf16(n, 0.02f, std::uint64_t(10 + i)));
      out.emplace_back(std::size_t(n)), out_t.emplace_back(std::size_t(n));
      jobs.push_back({in.back().as<bf16>(), out.back().as<std::uint8_t>(), out_t.back().as<std::uint8_t>(), scales.as<float>() + i,
                      stats.as<fp8::CastStats>() + i, sh[0], sh[1]});
      params += double(n);
      max_tiles = std::max(max_tiles, fp8::cast_tiles(sh[0], sh[1]));
    }
  core::DeviceBuffer d_jobs(jobs.size() * sizeof(fp8::CastTransposeJob));
  FP8S_CUDA(cudaMemcpy(d_jobs.get(), jobs.data(), d_jobs.size(), cudaMemcpyHostToDevice));
  const auto f = fp8::Format::e4m3;
  const auto o = fp8::Overflow::satfinite;
  const double s = bench::run_timed(state, [&] {
    if (mode == WeightCasts::one_launch)
      fp8::quantize_transpose_many(d_jobs.as<fp8::CastTransposeJob>(), int(jobs.size()), max_tiles, f, o, bench::stream());
    else
      for (const auto& j : jobs) fp8::quantize_transpose(j.out, j.out_t, j.in, j.rows, j.cols, j.scale, f, o, j.stats, bench::stream());
  });
  report(state, s, params * 4);
  state.counters.erase("frac_copy");
  state.counters.erase("frac_copy_same_bytes");
}

// A GPT-2 model's block weights (qkv, proj, fc1, fc2 of each layer) cast from their FP32 masters
// as the model's FP8 step does: a layer's four weights in one launch per pass, forward
// row-major with statistics (quantize_rows_many), backward transposed with forward's scale
// (quantize_many): 5 bytes a parameter per pass, no FP8 or BF16 copy kept. width / layers:
// GPT-2 124M (768, 12; 85M parameters) or 774M (1280, 36; 708M).
enum class MasterPasses { both, forward, backward };
void bm_cast_weights_from_master(benchmark::State& state, int width, int layers, MasterPasses passes) {
  if (skip(state)) return;
  const int shapes[4][2] = {{3 * width, width}, {width, width}, {4 * width, width}, {width, 4 * width}};
  const int n = 4 * layers;
  std::vector<core::DeviceBuffer> in, out, out_t;
  std::vector<fp8::CastJobF32> fwd, bwd;
  core::DeviceBuffer scales(std::size_t(n) * 4), stats(std::size_t(n) * sizeof(fp8::CastStats));
  const std::vector<float> sc(std::size_t(n), 100.0f);
  FP8S_CUDA(cudaMemcpy(scales.get(), sc.data(), scales.size(), cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemset(stats.get(), 0, stats.size()));
  double params = 0;
  fp8::ManyCastSizes layer;  // of one layer's four
  for (int l = 0; l < layers; ++l)
    for (const auto& sh : shapes) {
      const std::int64_t e = std::int64_t(sh[0]) * sh[1];
      const int i = int(fwd.size());
      in.push_back(random_f32(e, 0.02f, std::uint64_t(10 + i)));
      out.emplace_back(std::size_t(e)), out_t.emplace_back(std::size_t(e));
      const float* x = in.back().as<float>();
      fwd.push_back({x, out.back().as<std::uint8_t>(), nullptr, scales.as<float>() + i, stats.as<fp8::CastStats>() + i, sh[0], sh[1]});
      bwd.push_back({x, nullptr, out_t.back().as<std::uint8_t>(), scales.as<float>() + i, nullptr, sh[0], sh[1]});
      params += double(e);
      if (l == 0) layer.add(sh[0], sh[1]);
    }
  core::DeviceBuffer d_fwd(fwd.size() * sizeof(fp8::CastJobF32)), d_bwd(d_fwd.size());
  FP8S_CUDA(cudaMemcpy(d_fwd.get(), fwd.data(), d_fwd.size(), cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(d_bwd.get(), bwd.data(), d_bwd.size(), cudaMemcpyHostToDevice));
  const auto f = fp8::Format::e4m3;
  const auto o = fp8::Overflow::satfinite;
  const double s = bench::run_timed(state, [&] {
    if (passes != MasterPasses::backward)
      for (int l = 0; l < layers; ++l) fp8::quantize_rows_many(d_fwd.as<fp8::CastJobF32>() + 4 * l, 4, layer, f, o, bench::stream());
    if (passes != MasterPasses::forward)
      for (int l = 0; l < layers; ++l) fp8::quantize_many(d_bwd.as<fp8::CastJobF32>() + 4 * l, 4, layer, f, o, bench::stream());
  });
  report(state, s, params * (passes == MasterPasses::both ? 10 : 5));
}

enum class LnMode { forward, forward_fp8, backward };

// width: the rows' channels (GPT-2 124M's 768; 1280 and 1600 for GPT-2 large and XL); kind:
// the kernels (block_per_row: how rows above 1024 channels ran before a warp took them).
void bm_layernorm(benchmark::State& state, LnMode mode, int width = C, gpu_model::NormKernel kind = gpu_model::NormKernel::automatic) {
  if (skip(state)) return;
  auto x = random_bf16(N * width, 1.0f, 1), dy = random_bf16(N * width, 1.0f, 2), dx = random_bf16(N * width, 1.0f, 3);
  auto w = random_bf16(width, 1.0f, 4), b = random_bf16(width, 1.0f, 5), out = random_bf16(N * width, 1.0f, 6);
  core::DeviceBuffer mean(std::size_t(N) * 4), rstd(std::size_t(N) * 4), dw(std::size_t(width) * 4), db(std::size_t(width) * 4);
  core::DeviceBuffer scratch(std::size_t(gpu_model::layernorm_backward_scratch_floats(int(N), width)) * 4), out8(std::size_t(N * width));
  gpu_model::layernorm_forward(out.as<bf16>(), mean.as<float>(), rstd.as<float>(), x.as<bf16>(), w.as<bf16>(), b.as<bf16>(), int(N), width,
                               bench::stream());
  // The FP8 output's scale as delayed scaling would set it from this output's amax (margin 0):
  // a fixed scale would saturate a share of the values that depends on the random weights, and
  // saturated vectors take the cast's counting path, which a trained recipe rarely sees.
  const CastTarget c(fp8::info(fp8::Format::e4m3).max / bf16_amax(out, N * width));
  const double s = bench::run_timed(state, [&] {
    switch (mode) {
      case LnMode::backward:
        gpu_model::layernorm_backward(dx.as<bf16>(), dw.as<float>(), db.as<float>(), scratch.as<float>(), dy.as<bf16>(), x.as<bf16>(),
                                      w.as<bf16>(), mean.as<float>(), rstd.as<float>(), int(N), width, bench::stream(), kind);
        break;
      case LnMode::forward:
        gpu_model::layernorm_forward(out.as<bf16>(), mean.as<float>(), rstd.as<float>(), x.as<bf16>(), w.as<bf16>(), b.as<bf16>(), int(N),
                                     width, bench::stream(), kind);
        break;
      case LnMode::forward_fp8:
        gpu_model::layernorm_forward_fp8(out8.as<std::uint8_t>(), mean.as<float>(), rstd.as<float>(), x.as<bf16>(), w.as<bf16>(),
                                         b.as<bf16>(), int(N), width, c.s(), fp8::Format::e4m3, fp8::Overflow::satfinite, c.st(),
                                         bench::stream(), kind);
        break;
    }
  });
  // Bytes: x (+ dy, and dx read and written, for backward), the output, mean and rstd.
  const double rows = double(N) * 8;
  report(state, s, mode == LnMode::backward ? double(N) * width * 8 + rows : double(N) * width * (mode == LnMode::forward ? 4 : 3) + rows);
}

void bm_gelu(benchmark::State& state, bool backward) {
  if (skip(state)) return;
  const std::int64_t n = N * 4 * C;
  auto x = random_bf16(n, 1.0f, 1), dy = random_bf16(n, 1.0f, 2), out = random_bf16(n, 1.0f, 3);
  const double s = bench::run_timed(state, [&] {
    if (backward)
      gpu_model::gelu_backward(out.as<bf16>(), x.as<bf16>(), dy.as<bf16>(), n, bench::stream());
    else
      gpu_model::gelu_forward(out.as<bf16>(), x.as<bf16>(), n, bench::stream());
  });
  report(state, s, double(n) * (backward ? 6 : 4));
}

void bm_softmax(benchmark::State& state, bool backward) {
  if (skip(state)) return;
  const std::int64_t n = std::int64_t(B) * NH * T * T;
  auto scores = random_f32(n, 1.0f, 1);
  auto probs = random_bf16(n, 0.01f, 2), ds = random_bf16(n, 1.0f, 3);
  const double s = bench::run_timed(state, [&] {
    if (backward)
      gpu_model::softmax_causal_backward(ds.as<bf16>(), scores.as<float>(), probs.as<bf16>(), 0.125f, B * NH, T, bench::stream());
    else
      gpu_model::softmax_causal_forward(probs.as<bf16>(), scores.as<float>(), B * NH, T, bench::stream());
  });
  // Causal: half of each row is read; every element is written.
  report(state, s, backward ? double(n) * (1 + 2 + 2) : double(n) * (2 + 2));
}

// fp8: the gradient written as E5M2 codes with the cast's statistics (the FP8 LM head's path);
// bf16_logits: the head's BF16 output read instead of FP32 (logits: bf16).
void bm_cross_entropy(benchmark::State& state, bool fp8_grad, bool bf16_logits) {
  if (skip(state)) return;
  auto logits = random_f32(N * V, 1.0f, 1);
  core::DeviceBuffer logits16(std::size_t(N * V) * 2);
  gpu_model::cast_to_bf16(logits16.as<bf16>(), logits.as<float>(), N * V, bench::stream());
  core::DeviceBuffer dl(std::size_t(N * V) * 2), losses(std::size_t(N) * 4), targets(std::size_t(N) * 4);
  FP8S_CUDA(cudaMemset(targets.get(), 0, targets.size()));
  // The FP8 gradient as the step casts it: E5M2 (HYBRID's backward format) with the scale
  // delayed scaling sets from the gradient's amax (margin 0), taken from a BF16 gradient.
  gpu_model::cross_entropy_forward_backward(losses.as<float>(), dl.as<bf16>(), logits.as<float>(), targets.as<int>(), int(N), int(N),
                                            V - 47, V, bench::stream());
  const auto f = fp8::Format::e5m2;
  const CastTarget c(fp8::info(f).max / bf16_amax(dl, N * V));
  auto run = [&](const auto* z) {
    if (fp8_grad)
      gpu_model::cross_entropy_forward_backward_fp8(losses.as<float>(), dl.as<std::uint8_t>(), z, targets.as<int>(), int(N), int(N), V - 47,
                                                    V, c.s(), f, fp8::Overflow::satfinite, c.st(), bench::stream());
    else
      gpu_model::cross_entropy_forward_backward(losses.as<float>(), dl.as<bf16>(), z, targets.as<int>(), int(N), int(N), V - 47, V,
                                                bench::stream());
  };
  const double s = bench::run_timed(state, [&] {
    if (bf16_logits)
      run(logits16.as<bf16>());
    else
      run(logits.as<float>());
  });
  report(state, s, double(N) * V * ((bf16_logits ? 2 : 4) + (fp8_grad ? 1 : 2)));
}

void bm_residual(benchmark::State& state) {
  if (skip(state)) return;
  const std::int64_t n = N * C;
  auto a = random_bf16(n, 1.0f, 1), b = random_bf16(n, 1.0f, 2), out = random_bf16(n, 1.0f, 3);
  const double s =
      bench::run_timed(state, [&] { gpu_model::residual_forward(out.as<bf16>(), a.as<bf16>(), b.as<bf16>(), n, bench::stream()); });
  report(state, s, double(n) * 6);
}

// AdamW over GPT-2 124M's parameter count as one tensor, writing its BF16 copy, or (fp8) E4M3
// codes with the cast's statistics, as the FP8 model's block weights under delayed scaling.
void bm_adamw(benchmark::State& state, bool fp8) {
  if (skip(state)) return;
  const std::int64_t n = 124'475'904;
  auto p = random_f32(n, 0.02f, 1), g = random_f32(n, 1e-3f, 2), m = random_f32(n, 1e-3f, 3), v = random_f32(n, 1e-6f, 4);
  core::DeviceBuffer pb(std::size_t(n) * (fp8 ? 1 : 2));
  FP8S_CUDA(cudaMemset(v.get(), 0, v.size()));
  // One tensor, as the model's one launch.
  const std::vector<gpu_model::AdamwChunk> chunks = gpu_model::adamw_chunks({{0, n, true, 0, fp8 ? 0 : -1}});
  core::DeviceBuffer d_chunks(chunks.size() * sizeof(gpu_model::AdamwChunk));
  FP8S_CUDA(cudaMemcpy(d_chunks.get(), chunks.data(), d_chunks.size(), cudaMemcpyHostToDevice));
  // Step 10's scalars, and a gradient norm below the clip (no clipping).
  const gpu_model::AdamwStep step{6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f - std::pow(0.9f, 10.0f), 1.0f - std::pow(0.95f, 10.0f), 1.0f};
  const float grad_sq = 0.25f, scale = 448.0f / 0.2f;
  core::DeviceBuffer d_step(sizeof step), d_grad_sq(sizeof grad_sq), d_scale(sizeof scale), d_stats(sizeof(fp8::CastStats));
  FP8S_CUDA(cudaMemcpy(d_step.get(), &step, sizeof step, cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(d_grad_sq.get(), &grad_sq, sizeof grad_sq, cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemcpy(d_scale.get(), &scale, sizeof scale, cudaMemcpyHostToDevice));
  gpu_model::AdamwFp8Codes codes;
  if (fp8) codes = {pb.as<std::uint8_t>(), d_scale.as<float>(), 1, d_stats.as<fp8::CastStats>()};
  const double s = bench::run_timed(state, [&] {
    gpu_model::adamw_update_chunks(p.as<float>(), fp8 ? nullptr : pb.as<bf16>(), g.as<float>(), m.as<float>(), v.as<float>(),
                                   d_chunks.as<gpu_model::AdamwChunk>(), int(chunks.size()), d_step.as<gpu_model::AdamwStep>(),
                                   d_grad_sq.as<float>(), codes, bench::stream());
  });
  report(state, s, double(n) * (fp8 ? 29 : 30));
}

// The fused causal attention at GPT-2 124M's shape (12 heads of 64) or with heads of 128 (6 at
// C = 768), reading q/k/v inside the qkv tensor as the model does. Compute-bound, so its
// counter is TFLOP/s of the causal products' useful work (the usual count: forward 2 products
// of B*NH*T^2/2*HS multiply-adds, backward 5; the backward's recomputation of the scores for dQ
// is not counted).
// The kernels the model would pick (wgmma_tma on an H100/H200) unless `kernel` forces one kind.
void bm_attention(benchmark::State& state, bool backward, int hs, gpu_model::FlashKernel kernel = gpu_model::FlashKernel::automatic,
                  bool persistent = true) {
  if (skip(state)) return;
  const int nh = C / hs;
  auto qkv = random_bf16(N * 3 * C, 1.0f, 1), dy = random_bf16(N * C, 1.0f, 2);
  core::DeviceBuffer out(std::size_t(N * C) * 2), lse(std::size_t(B) * nh * T * 4), dsum(lse.size()), dqkv(std::size_t(N * 3 * C) * 2);
  gpu_model::AttentionHeads h{B, nh, T, 3 * C, C, 1.0f / std::sqrt(float(hs)), hs};
  h.kernel = kernel;
  h.persistent = persistent;
  if ((kernel == gpu_model::FlashKernel::wgmma || kernel == gpu_model::FlashKernel::wgmma_tma) &&
      !gpu_model::flash_attention_wgmma_fits(h)) {
    state.SkipWithError("no wgmma kernel here (needs compute capability 9.0 and an sm_90a build)");
    return;
  }
  const bf16* p = qkv.as<bf16>();
  bf16* g = dqkv.as<bf16>();
  auto forward = [&] { gpu_model::flash_attention_forward(h, out.as<bf16>(), lse.as<float>(), p, p + C, p + 2 * C, bench::stream()); };
  forward();  // backward reads the output and log-sum-exp
  const double s = bench::run_timed(state, [&] {
    if (backward)
      gpu_model::flash_attention_backward(h, g, g + C, g + 2 * C, dsum.as<float>(), dy.as<bf16>(), out.as<bf16>(), p, p + C, p + 2 * C,
                                          lse.as<float>(), bench::stream());
    else
      forward();
  });
  const double flops = (backward ? 5.0 : 2.0) * 2.0 * B * nh * (double(T) * T / 2) * hs;
  state.counters["TFLOP/s"] = flops * double(state.iterations()) / s / 1e12;
}

}  // namespace

int main(int argc, char** argv) {
  auto reg = [](const std::string& name, auto fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn)->UseManualTime()->Unit(benchmark::kMicrosecond);
  };
  reg("copy/d2d_1GiB", bm_copy);
  for (std::int64_t cols : {C, 4 * C}) {
    reg(fmt::format("cast_amax/e4m3/{}x{}", N, cols), [cols](benchmark::State& s) { bm_cast(s, cols, CastMode::plain); });
    reg(fmt::format("cast_transpose/e4m3/{}x{}", N, cols), [cols](benchmark::State& s) { bm_cast(s, cols, CastMode::transpose); });
    reg(fmt::format("cast_transpose_dbias/e4m3/{}x{}", N, cols),
        [cols](benchmark::State& s) { bm_cast(s, cols, CastMode::transpose_dbias); });
  }
  reg("cast_transpose_weights/gpt2_124m/one_launch", [](benchmark::State& s) { bm_cast_weights(s, WeightCasts::one_launch); });
  reg("cast_transpose_weights/gpt2_124m/per_weight", [](benchmark::State& s) { bm_cast_weights(s, WeightCasts::per_weight); });
  for (const auto& [model, width, layers] : {std::tuple<const char*, int, int>{"gpt2_124m", C, 12}, {"gpt2_774m", 1280, 36}}) {
    const std::string base = fmt::format("cast_weights/{}/from_master", model);
    const int w = width, l = layers;
    reg(base, [w, l](benchmark::State& s) { bm_cast_weights_from_master(s, w, l, MasterPasses::both); });
    reg(base + "/forward", [w, l](benchmark::State& s) { bm_cast_weights_from_master(s, w, l, MasterPasses::forward); });
    reg(base + "/backward", [w, l](benchmark::State& s) { bm_cast_weights_from_master(s, w, l, MasterPasses::backward); });
  }
  for (std::int64_t cols : {std::int64_t(C), std::int64_t(4 * C), std::int64_t(V)}) {
    reg(fmt::format("block_cast/vec128/{}x{}", N, cols),
        [cols](benchmark::State& s) { bm_block_cast(s, N, cols, fp8::ScaleMode::vec128); });
    reg(fmt::format("block_cast/vec128_pow2/{}x{}", N, cols), [cols](benchmark::State& s) {
      bm_block_cast(s, N, cols, fp8::ScaleMode::vec128, {0, true});
    });
    if (cols != V) {  // the head has no bias, and no row-wise benchmark (its cast is the 1x128 one)
      reg(fmt::format("block_cast/vec128_pow2_dbias/{}x{}", N, cols), [cols](benchmark::State& s) {
        bm_block_cast(s, N, cols, fp8::ScaleMode::vec128, {0, true}, true);
      });
      reg(fmt::format("block_cast/outer_vec/{}x{}", N, cols),
          [cols](benchmark::State& s) { bm_block_cast(s, N, cols, fp8::ScaleMode::outer_vec); });
    }
  }
  reg(fmt::format("block_cast/blk128/{}x{}", 4 * C, C), [](benchmark::State& s) { bm_block_cast(s, 4 * C, C, fp8::ScaleMode::blk128); });
  for (std::int64_t cols : {std::int64_t(C), std::int64_t(V)})
    reg(fmt::format("transpose_fp8/{}x{}", N, cols), [cols](benchmark::State& s) { bm_transpose_fp8(s, cols); });
  for (std::int64_t cols : {std::int64_t(C), std::int64_t(4 * C)})
    reg(fmt::format("bias_backward/{}x{}", N, cols), [cols](benchmark::State& s) { bm_bias_backward(s, cols); });
  reg("gelu_fp8/forward_cast_transpose", [](benchmark::State& s) { bm_gelu_cast(s, false); });
  reg("gelu_fp8/backward_cast_transpose_dbias", [](benchmark::State& s) { bm_gelu_cast(s, true); });
  reg("gelu_fp8/forward_cast_transpose/e4m3_input", [](benchmark::State& s) { bm_gelu_cast(s, false, true); });
  reg("gelu_fp8/backward_cast_transpose_dbias/e4m3_input", [](benchmark::State& s) { bm_gelu_cast(s, true, true); });
  reg("layernorm/forward", [](benchmark::State& s) { bm_layernorm(s, LnMode::forward); });
  reg("layernorm/forward_fp8", [](benchmark::State& s) { bm_layernorm(s, LnMode::forward_fp8); });
  reg("layernorm/backward", [](benchmark::State& s) { bm_layernorm(s, LnMode::backward); });
  for (int width : {1280, 1600, 2048})  // GPT-2 large and XL; the head-128 shape's and Llama's 2048
    for (auto kind : {gpu_model::NormKernel::automatic, gpu_model::NormKernel::block_per_row}) {
      const std::string suffix = fmt::format("/d{}{}", width, kind == gpu_model::NormKernel::block_per_row ? "/block_per_row" : "");
      for (auto [mode, name] :
           {std::pair{LnMode::forward, "forward"}, {LnMode::forward_fp8, "forward_fp8"}, {LnMode::backward, "backward"}})
        reg(fmt::format("layernorm/{}{}", name, suffix), [=](benchmark::State& s) { bm_layernorm(s, mode, width, kind); });
    }
  reg("gelu/forward", [](benchmark::State& s) { bm_gelu(s, false); });
  reg("gelu/backward", [](benchmark::State& s) { bm_gelu(s, true); });
  reg("attention_flash/forward", [](benchmark::State& s) { bm_attention(s, false, 64); });
  reg("attention_flash/backward", [](benchmark::State& s) { bm_attention(s, true, 64); });
  reg("attention_flash/forward/hs128", [](benchmark::State& s) { bm_attention(s, false, 128); });
  reg("attention_flash/forward/mma_sync", [](benchmark::State& s) { bm_attention(s, false, 64, gpu_model::FlashKernel::mma_sync); });
  reg("attention_flash/forward/hs128/mma_sync", [](benchmark::State& s) { bm_attention(s, false, 128, gpu_model::FlashKernel::mma_sync); });
  reg("attention_flash/backward/mma_sync", [](benchmark::State& s) { bm_attention(s, true, 64, gpu_model::FlashKernel::mma_sync); });
  reg("attention_flash/backward/hs128/mma_sync", [](benchmark::State& s) { bm_attention(s, true, 128, gpu_model::FlashKernel::mma_sync); });
  reg("attention_flash/backward/hs128", [](benchmark::State& s) { bm_attention(s, true, 128); });
  // The same wgmma products fed by every thread's cp.async instead of the model's warp-specialised
  // TMA kernels (FlashKernel::wgmma).
  reg("attention_flash/forward/cp_async", [](benchmark::State& s) { bm_attention(s, false, 64, gpu_model::FlashKernel::wgmma); });
  reg("attention_flash/backward/cp_async", [](benchmark::State& s) { bm_attention(s, true, 64, gpu_model::FlashKernel::wgmma); });
  reg("attention_flash/forward/hs128/cp_async", [](benchmark::State& s) { bm_attention(s, false, 128, gpu_model::FlashKernel::wgmma); });
  reg("attention_flash/backward/hs128/cp_async", [](benchmark::State& s) { bm_attention(s, true, 128, gpu_model::FlashKernel::wgmma); });
  // The TMA kernels with a block per work tile instead of the persistent grid.
  for (int hs : {64, 128}) {
    const std::string size = hs == 128 ? "/hs128" : "";
    reg("attention_flash/forward" + size + "/block_per_tile",
        [hs](benchmark::State& s) { bm_attention(s, false, hs, gpu_model::FlashKernel::wgmma_tma, false); });
    reg("attention_flash/backward" + size + "/block_per_tile",
        [hs](benchmark::State& s) { bm_attention(s, true, hs, gpu_model::FlashKernel::wgmma_tma, false); });
  }
  reg("softmax_causal/forward", [](benchmark::State& s) { bm_softmax(s, false); });
  reg("softmax_causal/backward", [](benchmark::State& s) { bm_softmax(s, true); });
  reg("cross_entropy/forward_backward", [](benchmark::State& s) { bm_cross_entropy(s, false, false); });
  reg("cross_entropy/forward_backward_fp8", [](benchmark::State& s) { bm_cross_entropy(s, true, false); });
  reg("cross_entropy/forward_backward/bf16_logits", [](benchmark::State& s) { bm_cross_entropy(s, false, true); });
  reg("cross_entropy/forward_backward_fp8/bf16_logits", [](benchmark::State& s) { bm_cross_entropy(s, true, true); });
  reg("residual/forward", bm_residual);
  reg("adamw/124M", [](benchmark::State& s) { bm_adamw(s, false); });
  reg("adamw/124M/e4m3_codes", [](benchmark::State& s) { bm_adamw(s, true); });
  benchmark::Initialize(&argc, argv);
  bench::add_env_context();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
