// The per-row and per-block FP8 casts (fp8/block_cast.cuh) against the CPU emulation the
// model's FP8 training is checked with (cpu::Fp8Emulation::quantize_operand): every
// dequantised value of both copies (the matrix scaled along its rows, its transpose along the
// columns) bit for bit, the scale tensors at the offsets cuBLASLt reads them from, and the
// statistics the taps report (saturated, underflow and non-finite counts, smallest scale,
// smallest non-zero and median block amax). Shapes with partial tiles and with rows or columns
// not a multiple of 8 take the kernels' scalar edges. Also the column sums a gradient's cast
// writes for the bias gradient.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/cpu/fp8_emulation.hpp"
#include "fp8scope/fp8/block_cast.cuh"
#include "gpu_test_util.hpp"

#include <cuda_bf16.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace fp8scope;

namespace {

struct Case {
  int rows, cols;
  fp8::Scaling scaling;
  bool weight;  // block scaling: 128x128 blocks (a weight) instead of 1x128
  fp8::Format format;
  fp8::Overflow overflow;
  int margin;
  bool plant_nan;
  bool pow2 = false;  // power-of-two scales (BlockScaleRule::pow2)
};

std::string name_of(const Case& c) {
  return std::to_string(c.rows) + "x" + std::to_string(c.cols) + "_" + fp8::to_string(c.scaling) + (c.weight ? "_weight" : "") + "_" +
         std::string(fp8::name(c.format)) + "_" + std::string(fp8::name(c.overflow)) + (c.margin < 0 ? "_margin_minus" : "_margin") +
         std::to_string(std::abs(c.margin)) + (c.plant_nan ? "_nan" : "") + (c.pow2 ? "_pow2" : "");
}

// Values whose magnitude varies by row, by column band and by element (2^-40 .. 2^14), so
// blocks have very different amaxes, some values underflow and, without saturation margin,
// some saturate; a few exact zeros.
std::vector<__nv_bfloat16> values(int rows, int cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> row_e(-12, 8), el_e(-20, 4);
  std::vector<int> re(std::size_t(rows), 0), ce(std::size_t((cols + 127) / 128), 0);
  for (auto& e : re) e = row_e(rng);
  for (auto& e : ce) e = row_e(rng) / 2;
  std::vector<__nv_bfloat16> v(std::size_t(rows) * cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const int e = re[std::size_t(r)] + ce[std::size_t(c / 128)] + (rng() % 16 == 0 ? el_e(rng) : 0);
      v[std::size_t(r) * cols + c] = __float2bfloat16(rng() % 50 == 0 ? 0.0f : std::ldexp(nd(rng), e));
    }
  return v;
}

class BlockCastGpu : public ::testing::TestWithParam<Case> {};

TEST_P(BlockCastGpu, BothCopiesEqualTheCpuEmulationBitForBit) {
  FP8SCOPE_REQUIRE_GPU();
  const Case k = GetParam();
  const fp8::ScaleMode mode = k.weight ? model::weight_scale_mode(k.scaling) : model::activation_scale_mode(k.scaling);
  auto host = values(k.rows, k.cols, unsigned(k.rows * 7 + k.cols));
  if (k.plant_nan) host[std::size_t(k.rows / 2) * k.cols + k.cols / 3] = __float2bfloat16(NAN);
  const std::size_t n = host.size();
  const fp8::ScaleGeometry gd = fp8::scale_geometry(mode, k.rows, k.cols), gt = fp8::scale_geometry(mode, k.cols, k.rows);

  core::DeviceBuffer in(n * 2), codes(n), codes_t(n), lt(std::size_t(gd.lt_elements()) * 4), lt_t(std::size_t(gt.lt_elements()) * 4),
      stats(2 * sizeof(fp8::CastStats)), bamax(std::size_t(gd.blocks()) * 4), bamax_t(std::size_t(gt.blocks()) * 4), maxdq(2 * 4),
      scratch(fp8::block_cast_scratch_floats(k.rows, k.cols) * 4), quant(4 * 4);
  const std::int64_t most = std::max(gd.blocks(), gt.blocks());
  const std::size_t temp_bytes = fp8::block_amax_sort_temp_bytes(most);
  core::DeviceBuffer sorted(std::size_t(most) * 4), temp(std::max<std::size_t>(temp_bytes, 1));
  FP8S_CUDA(cudaMemcpy(in.get(), host.data(), n * 2, cudaMemcpyHostToDevice));
  for (auto* b : {&codes, &codes_t}) FP8S_CUDA(cudaMemset(b->get(), 0xAB, b->size()));  // poisoned
  for (auto* b : {&lt, &lt_t, &stats, &maxdq}) FP8S_CUDA(cudaMemset(b->get(), 0, b->size()));
  fp8::BlockCastCopy d{codes.as<std::uint8_t>(), lt.as<float>(), stats.as<fp8::CastStats>(), bamax.as<float>(), maxdq.as<float>()};
  fp8::BlockCastCopy t{codes_t.as<std::uint8_t>(), lt_t.as<float>(), stats.as<fp8::CastStats>() + 1, bamax_t.as<float>(),
                       maxdq.as<float>() + 1};
  fp8::block_cast_transpose(in.as<__nv_bfloat16>(), k.rows, k.cols, mode, k.format, k.overflow, fp8::BlockScaleRule{k.margin, k.pow2}, d, t,
                            scratch.as<float>(), nullptr);
  fp8::block_amax_quantiles(bamax.as<float>(), gd.blocks(), sorted.as<float>(), temp.get(), temp_bytes, quant.as<float>(), nullptr);
  fp8::block_amax_quantiles(bamax_t.as<float>(), gt.blocks(), sorted.as<float>(), temp.get(), temp_bytes, quant.as<float>() + 2, nullptr);
  FP8S_CUDA(cudaDeviceSynchronize());

  // The CPU emulation of the same operand, both ways.
  model::Fp8ModelConfig opt;
  opt.recipe.scaling = k.scaling;
  opt.recipe.format = k.format == fp8::Format::e4m3 ? fp8::RecipeFormat::e4m3 : fp8::RecipeFormat::hybrid;
  opt.recipe.margin = k.margin;
  opt.recipe.pow2_block_scales = k.pow2;
  opt.overflow = k.overflow;
  const std::string role = k.weight ? "weight" : k.format == fp8::Format::e5m2 ? "grad" : "input";
  std::vector<double> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = __bfloat162float(host[i]);
  cpu::Fp8Emulation emu(opt);
  const double* ref = emu.quantize_operand(0, "x", role, x.data(), k.rows, k.cols, true);
  const std::vector<double> ref_d(ref, ref + n);
  const double* ref_t = emu.quantize_operand(0, "x_t", role, x.data(), k.rows, k.cols, false);

  const auto q = download<std::uint8_t>(codes, n), qt = download<std::uint8_t>(codes_t, n);
  const auto s = download<float>(lt, std::size_t(gd.lt_elements())), st = download<float>(lt_t, std::size_t(gt.lt_elements()));
  int bad = 0;
  auto same = [&](double got, double want) { return got == want || (std::isnan(got) && std::isnan(want)); };
  for (int r = 0; r < k.rows; ++r)
    for (int c = 0; c < k.cols; ++c) {
      const std::size_t i = std::size_t(r) * k.cols + c;
      const double dq = s[std::size_t(gd.lt_offset(r / gd.bo, c / gd.bk))];
      const double got = double(fp8::decode(q[i], k.format)) * dq;
      if (!same(got, ref_d[i]) && ++bad <= 5) ADD_FAILURE() << "matrix (" << r << "," << c << "): " << got << " vs CPU " << ref_d[i];
      const double dqt = st[std::size_t(gt.lt_offset(c / gt.bo, r / gt.bk))];
      const double got_t = double(fp8::decode(qt[std::size_t(c) * k.rows + r], k.format)) * dqt;
      if (!same(got_t, ref_t[i]) && ++bad <= 5) ADD_FAILURE() << "transpose (" << c << "," << r << "): " << got_t << " vs CPU " << ref_t[i];
    }
  EXPECT_EQ(bad, 0);

  // Statistics: the GPU's against the CPU taps of the same copies.
  fp8::CastStats gs[2];
  FP8S_CUDA(cudaMemcpy(gs, stats.get(), sizeof gs, cudaMemcpyDeviceToHost));
  const auto mdq = download<float>(maxdq, 2), qs = download<float>(quant, 4);
  ASSERT_EQ(emu.taps().size(), 2u);
  for (int copy = 0; copy < 2; ++copy) {
    const fp8::Tap& tap = emu.taps()[std::size_t(copy)];
    SCOPED_TRACE(copy ? "transpose" : "matrix");
    EXPECT_EQ((long long)gs[copy].saturated, tap.saturated);
    EXPECT_EQ((long long)gs[copy].underflow, tap.underflow);
    EXPECT_EQ((long long)gs[copy].nonfinite_out, tap.nonfinite);
    EXPECT_EQ(1.0f / mdq[std::size_t(copy)], tap.scale);
    EXPECT_EQ(double(qs[std::size_t(2 * copy)]), tap.block_amax_min);
    EXPECT_EQ(double(qs[std::size_t(2 * copy + 1)]), tap.block_amax_median);
    EXPECT_EQ(copy ? gt.blocks() : gd.blocks(), tap.blocks);
    if (!k.plant_nan) EXPECT_EQ(double(gs[copy].amax), tap.amax);
  }
  // E5M2's range covers the data's spread within a block; E4M3's does not.
  if (!k.plant_nan && k.format == fp8::Format::e4m3) EXPECT_GT(gs[0].underflow, 0u) << "the data should exercise underflow";
}

// The casts divide by a block's scale through its reciprocal (two corrections, as CUDA's own
// division; a power-of-two scale by one product); the same bits as __fdiv_rn (and the
// emulation's division) for every finite BF16 value and every scale the casts can derive: each
// positive finite BF16 amax, both formats, margins -16..16, both scale rules, and the scale 1
// of all-zero and non-finite blocks.
TEST(BlockCastDivision, EqualsIeeeDivisionForEveryBf16ValueAndScale) {
  FP8SCOPE_REQUIRE_GPU();
  std::vector<float> scales{1.0f};
  for (fp8::Format f : {fp8::Format::e4m3, fp8::Format::e5m2})
    for (int margin = -16; margin <= 16; ++margin)
      for (unsigned b = 1; b < 0x7F80u; ++b) {
        const float amax = std::bit_cast<float>(std::uint32_t(b) << 16);  // the BF16 value with bits b
        scales.push_back(fp8::model_block_dequant(fp8::ScaleMode::vec128, amax, f, {margin, false}));
      }
  // The power-of-two scales: 2^e for every e whose scale the fast path takes (the rule derives
  // only powers of two, each BF16 amax one of these).
  for (int e = -76; e <= 100; ++e) scales.push_back(std::ldexp(1.0f, e));
  core::DeviceBuffer d(scales.size() * 4), bad(8);
  FP8S_CUDA(cudaMemcpy(d.get(), scales.data(), scales.size() * 4, cudaMemcpyHostToDevice));
  FP8S_CUDA(cudaMemset(bad.get(), 0, 8));
  fp8::block_division_mismatches(d.as<float>(), int(scales.size()), bad.as<unsigned long long>(), nullptr);
  FP8S_CUDA(cudaDeviceSynchronize());
  EXPECT_EQ(download<unsigned long long>(bad, 1)[0], 0ull) << "over " << scales.size() << " scales x 65280 values";
}

// A gradient's cast with the bias gradient's column sums (partial rows per 128-row tile): the
// codes, scales and statistics are those of the cast without them, and the sums match double
// sums of the BF16 input (FP32 sums of at most 128 values, then of the tiles; relative to the
// sum of magnitudes, 1e-5). 1x128 blocks and row-wise, partial tiles, columns not a multiple of 8.
TEST(BlockCastColumnSums, SumsMatchDoubleSumsAndLeaveTheCastAsItWas) {
  FP8SCOPE_REQUIRE_GPU();
  for (auto [rows, cols] : {std::pair{256, 384}, {300, 136}, {130, 77}})
    for (fp8::ScaleMode mode : {fp8::ScaleMode::vec128, fp8::ScaleMode::outer_vec}) {
      SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols) + " " + fp8::to_string(mode));
      const auto host = values(rows, cols, unsigned(rows + cols));
      const std::size_t n = host.size();
      const fp8::ScaleGeometry gd = fp8::scale_geometry(mode, rows, cols), gt = fp8::scale_geometry(mode, cols, rows);
      const int sum_rows = fp8::block_cast_sum_rows(rows);
      core::DeviceBuffer in(n * 2), scratch(fp8::block_cast_scratch_floats(rows, cols) * 4), sums(std::size_t(sum_rows) * cols * 4);
      FP8S_CUDA(cudaMemcpy(in.get(), host.data(), n * 2, cudaMemcpyHostToDevice));
      std::vector<std::uint8_t> codes[2];
      std::vector<fp8::CastStats> stats[2];
      for (int with_sums = 0; with_sums < 2; ++with_sums) {
        core::DeviceBuffer q(n), qt(n), lt(std::size_t(gd.lt_elements()) * 4), lt_t(std::size_t(gt.lt_elements()) * 4),
            st(2 * sizeof(fp8::CastStats));
        FP8S_CUDA(cudaMemset(st.get(), 0, st.size()));
        fp8::block_cast_transpose(in.as<__nv_bfloat16>(), rows, cols, mode, fp8::Format::e5m2, fp8::Overflow::satfinite, {0, false},
                                  {q.as<std::uint8_t>(), lt.as<float>(), st.as<fp8::CastStats>()},
                                  {qt.as<std::uint8_t>(), lt_t.as<float>(), st.as<fp8::CastStats>() + 1}, scratch.as<float>(), nullptr,
                                  with_sums ? sums.as<float>() : nullptr);
        FP8S_CUDA(cudaDeviceSynchronize());
        codes[with_sums] = download<std::uint8_t>(q, n);
        const auto t = download<std::uint8_t>(qt, n);
        codes[with_sums].insert(codes[with_sums].end(), t.begin(), t.end());
        stats[with_sums] = download<fp8::CastStats>(st, 2);
      }
      EXPECT_EQ(codes[0], codes[1]);
      EXPECT_EQ(std::memcmp(stats[0].data(), stats[1].data(), 2 * sizeof(fp8::CastStats)), 0);
      const auto part = download<float>(sums, std::size_t(sum_rows) * cols);
      for (int c = 0; c < cols; ++c) {
        double want = 0, mag = 0, got = 0;
        for (int r = 0; r < rows; ++r) {
          const double x = double(__bfloat162float(host[std::size_t(r) * cols + c]));
          want += x, mag += std::fabs(x);
        }
        for (int t = 0; t < sum_rows; ++t) got += part[std::size_t(t) * cols + c];
        ASSERT_NEAR(got, want, 1e-5 * mag) << "column " << c;
      }
    }
}

std::vector<Case> cases() {
  using fp8::Format, fp8::Overflow, fp8::Scaling;
  std::vector<Case> out;
  for (auto [r, c] : {std::pair{256, 384}, {200, 136}, {130, 77}, {64, 320}})
    for (Scaling sc : {Scaling::rowwise, Scaling::block})
      for (bool w : {false, true}) {
        if (sc == Scaling::rowwise && w) continue;  // rowwise scales a weight like any operand
        out.push_back({r, c, sc, w, Format::e4m3, Overflow::satfinite, 0, false});
      }
  out.push_back({256, 384, Scaling::block, false, Format::e5m2, Overflow::satfinite, 0, false});
  out.push_back({256, 384, Scaling::block, false, Format::e4m3, Overflow::nosat, -2, false});  // margin -2: saturation
  out.push_back({200, 136, Scaling::rowwise, false, Format::e5m2, Overflow::nosat, -1, false});
  out.push_back({256, 384, Scaling::block, true, Format::e4m3, Overflow::satfinite, 1, true});
  out.push_back({256, 384, Scaling::block, false, Format::e4m3, Overflow::satfinite, 0, true});
  out.push_back({130, 77, Scaling::rowwise, false, Format::e4m3, Overflow::nosat, 0, true});
  // Power-of-two scales: 1x128 and 128x128 blocks, row-wise, E5M2, a negative margin, a NaN.
  out.push_back({256, 384, Scaling::block, false, Format::e4m3, Overflow::satfinite, 0, false, true});
  out.push_back({200, 136, Scaling::block, true, Format::e4m3, Overflow::satfinite, 0, false, true});
  out.push_back({130, 77, Scaling::rowwise, false, Format::e4m3, Overflow::satfinite, 0, false, true});
  out.push_back({256, 384, Scaling::block, false, Format::e5m2, Overflow::nosat, -1, true, true});
  // At margin >= 0 saturations are counted from the block amax (FP32 and power-of-two scales):
  // without saturating conversion (nosat), with a NaN's block value by value, at margin 1.
  out.push_back({200, 136, Scaling::rowwise, false, Format::e5m2, Overflow::nosat, 0, false});
  out.push_back({256, 384, Scaling::block, false, Format::e4m3, Overflow::nosat, 0, true, true});
  out.push_back({130, 77, Scaling::block, true, Format::e4m3, Overflow::nosat, 1, false, true});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Shapes, BlockCastGpu, ::testing::ValuesIn(cases()), [](const auto& i) { return name_of(i.param); });

}  // namespace
