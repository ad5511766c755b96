// Scale modes of FP8 GEMM operands on the host: block geometry, the scale tensors' layouts as
// cuBLASLt documents them, block scales from amax, the host emulation of block quantisation,
// and the GEMM spec's rules for them.
#include "fp8scope/gemm/scale_mode.hpp"
#include "fp8scope/gemm/spec.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>

using namespace fp8scope;
using namespace fp8scope::gemm;

namespace {
// The BF16 value with bits b.
float bf16_value(unsigned b) { return std::bit_cast<float>(std::uint32_t(b) << 16); }
// The scales the GPU casts' fast path takes (block_cast_kernel.cuh, fast()).
bool in_fast_range(float d) { return d >= 0x1p-76f && d <= 0x1p100f; }

const ScaleMode kAll[] = {ScaleMode::tensor, ScaleMode::outer_vec,   ScaleMode::vec128,
                          ScaleMode::blk128, ScaleMode::vec32_ue8m0, ScaleMode::vec16_ue4m3};

// Values whose magnitude varies by row and by 128-block along the inner dimension.
std::vector<float> structured(std::int64_t outer, std::int64_t inner, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n01;
  std::uniform_int_distribution<int> e(-9, 9);
  std::vector<int> row(static_cast<std::size_t>(outer)), blk(static_cast<std::size_t>(outer * ((inner + 127) / 128)));
  for (auto& v : row) v = e(rng);
  for (auto& v : blk) v = e(rng);
  std::vector<float> x(std::size_t(outer * inner));
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t k = 0; k < inner; ++k)
      x[std::size_t(o * inner + k)] = std::ldexp(n01(rng), row[std::size_t(o)] + blk[std::size_t(o * ((inner + 127) / 128) + k / 128)]);
  return x;
}

double rel_error(const std::vector<float>& x, const BlockQuantized& q, fp8::Format f) {
  double e2 = 0, r2 = 0;
  for (std::int64_t o = 0; o < q.geo.outer; ++o)
    for (std::int64_t k = 0; k < q.geo.inner; ++k) {
      const std::size_t i = std::size_t(o * q.geo.inner + k);
      const double v = double(fp8::decode(q.codes[i], f)) * q.dequant[std::size_t(q.geo.block_of(o, k))];
      e2 += (v - x[i]) * (v - x[i]);
      r2 += double(x[i]) * x[i];
    }
  return std::sqrt(e2 / r2);
}
}  // namespace

TEST(ScaleMode, NamesRoundTrip) {
  for (ScaleMode m : kAll) EXPECT_EQ(parse_scale_mode(to_string(m)), m);
  EXPECT_FALSE(parse_scale_mode("rowwise"));
  for (auto p : {InputPattern::fp8_exact, InputPattern::normal, InputPattern::outliers}) EXPECT_EQ(parse_input_pattern(to_string(p)), p);
  EXPECT_EQ(scale_mode_names().size(), 6u);
}

TEST(ScaleMode, BlockGeometryPerMode) {
  struct Case {
    ScaleMode m;
    std::int64_t bo, bk, n_ob, n_kb;
  };
  // An operand of 300 outer rows and 520 inner (K) columns: partial blocks on both sides.
  for (auto c : {Case{ScaleMode::tensor, 300, 520, 1, 1}, Case{ScaleMode::outer_vec, 1, 520, 300, 1},
                 Case{ScaleMode::vec128, 1, 128, 300, 5}, Case{ScaleMode::blk128, 128, 128, 3, 5},
                 Case{ScaleMode::vec32_ue8m0, 1, 32, 300, 17}, Case{ScaleMode::vec16_ue4m3, 1, 16, 300, 33}}) {
    const ScaleGeometry g = scale_geometry(c.m, 300, 520);
    EXPECT_EQ(g.bo, c.bo) << to_string(c.m);
    EXPECT_EQ(g.bk, c.bk) << to_string(c.m);
    EXPECT_EQ(g.n_ob, c.n_ob) << to_string(c.m);
    EXPECT_EQ(g.n_kb, c.n_kb) << to_string(c.m);
    EXPECT_EQ(g.block_of(299, 519), g.blocks() - 1);
    EXPECT_EQ(g.block_of(0, 0), 0);
  }
}

TEST(ScaleMode, ScaleTensorLayoutsAreInjectiveAndPadded) {
  for (ScaleMode m : kAll)
    for (auto [outer, inner] : {std::pair<std::int64_t, std::int64_t>{300, 520}, {128, 128}, {4096, 768}, {50304, 768}, {5, 16}}) {
      const ScaleGeometry g = scale_geometry(m, outer, inner);
      std::set<std::int64_t> seen;
      for (std::int64_t ob = 0; ob < g.n_ob; ++ob)
        for (std::int64_t kb = 0; kb < g.n_kb; ++kb) {
          const std::int64_t at = g.lt_offset(ob, kb);
          ASSERT_GE(at, 0);
          ASSERT_LT(at, g.lt_elements()) << to_string(m) << " " << outer << "x" << inner;
          ASSERT_TRUE(seen.insert(at).second) << to_string(m) << ": two blocks share scale slot " << at;
        }
      // Every column of block scales starts on a 16-byte boundary.
      if (g.lt_ld()) EXPECT_EQ(g.lt_ld() * g.lt_element_bytes() % 16, 0) << to_string(m);
    }
}

TEST(ScaleMode, LayoutsFollowCublasLtsDocumentation) {
  // 1x128 blocks: the scales of one K-block for every outer row are contiguous (outer index
  // fastest), each K-block's column padded to a multiple of 4 floats.
  ScaleGeometry v = scale_geometry(ScaleMode::vec128, 6, 300);
  EXPECT_EQ(v.lt_ld(), 8);
  EXPECT_EQ(v.lt_offset(5, 0), 5);
  EXPECT_EQ(v.lt_offset(0, 2), 16);
  // 128x128 blocks: the K-blocks of one outer block are contiguous, padded to 4.
  ScaleGeometry b = scale_geometry(ScaleMode::blk128, 300, 640);
  EXPECT_EQ(b.lt_ld(), 8);
  EXPECT_EQ(b.lt_offset(0, 4), 4);
  EXPECT_EQ(b.lt_offset(2, 0), 16);
  // Microscaling: 128 x 4 tiles of 512 bytes; row 33 of a tile is at 1 * 16 + 1 * 4.
  ScaleGeometry mx = scale_geometry(ScaleMode::vec32_ue8m0, 256, 256);
  EXPECT_EQ(mx.lt_elements(), 256 * 8);
  EXPECT_EQ(mx.lt_offset(33, 2), 16 + 4 + 2);
  EXPECT_EQ(mx.lt_offset(0, 4), 512);        // next tile along K
  EXPECT_EQ(mx.lt_offset(128, 0), 2 * 512);  // next tile along the outer dimension
  EXPECT_EQ(scale_geometry(ScaleMode::tensor, 7, 9).lt_elements(), 1);
  EXPECT_EQ(scale_geometry(ScaleMode::outer_vec, 7, 9).lt_elements(), 7);
}

TEST(ScaleMode, BlockDequantFromAmax) {
  std::uint8_t code = 0;
  EXPECT_FLOAT_EQ(block_dequant(ScaleMode::vec128, 448.0f * 3, fp8::Format::e4m3, &code), 3.0f);
  EXPECT_FLOAT_EQ(block_dequant(ScaleMode::vec128, 57344.0f, fp8::Format::e5m2, &code), 1.0f);
  EXPECT_FLOAT_EQ(block_dequant(ScaleMode::blk128, 0.0f, fp8::Format::e4m3, &code), 1.0f);
  // UE8M0: the power of two at or above amax / 448 (so nothing saturates), stored as 127 + e.
  EXPECT_FLOAT_EQ(block_dequant(ScaleMode::vec32_ue8m0, 448.0f * 3, fp8::Format::e4m3, &code), 4.0f);
  EXPECT_EQ(code, 129);
  EXPECT_FLOAT_EQ(block_dequant(ScaleMode::vec32_ue8m0, 448.0f * 0.25f, fp8::Format::e4m3, &code), 0.25f);
  EXPECT_EQ(code, 125);
  EXPECT_FLOAT_EQ(block_dequant(ScaleMode::vec32_ue8m0, 0.0f, fp8::Format::e4m3, &code), 1.0f);
  EXPECT_EQ(code, 127);
  // UE4M3: the E4M3 value at or above amax / 448.
  for (float amax : {1.0f, 3.7f, 100.0f, 1000.0f}) {
    const float d = block_dequant(ScaleMode::vec16_ue4m3, amax, fp8::Format::e4m3, &code);
    EXPECT_GE(d, amax / 448.0f);
    EXPECT_EQ(fp8::decode(code, fp8::Format::e4m3), d);
    // At most one step above: 2^-3 relative for normal E4M3 values, 2^-9 for subnormals.
    EXPECT_LE(d, std::max(amax / 448.0f * 1.125f, amax / 448.0f + 0.001953125f));
  }
}

TEST(ScaleMode, QuantizedBlocksNeverSaturateAndReachTheFormatsMax) {
  const auto x = structured(300, 520, 7);
  for (ScaleMode m : {ScaleMode::tensor, ScaleMode::outer_vec, ScaleMode::vec128, ScaleMode::blk128}) {
    const BlockQuantized q = quantize_blocks(x, 300, 520, m, fp8::Format::e4m3);
    std::vector<float> block_max(q.dequant.size(), 0.0f);
    for (std::int64_t o = 0; o < 300; ++o)
      for (std::int64_t k = 0; k < 520; ++k) {
        float& bm = block_max[std::size_t(q.geo.block_of(o, k))];
        bm = std::max(bm, std::fabs(fp8::decode(q.codes[std::size_t(o * 520 + k)], fp8::Format::e4m3)));
      }
    for (float bm : block_max) EXPECT_EQ(bm, 448.0f) << to_string(m);  // the block's amax maps to the max
    // The scale tensor holds each block's scale where cuBLASLt looks for it.
    for (std::int64_t ob = 0; ob < q.geo.n_ob; ++ob)
      for (std::int64_t kb = 0; kb < q.geo.n_kb; ++kb) {
        float d;
        std::memcpy(&d, &q.lt[std::size_t(q.geo.lt_offset(ob, kb)) * 4], 4);
        EXPECT_EQ(d, q.dequant[std::size_t(ob * q.geo.n_kb + kb)]);
      }
  }
}

TEST(ScaleMode, FinerBlocksLoseLessOfStructuredData) {
  // Magnitudes spread over 2^+-18 exceed E4M3's range at one scale: per-tensor scaling flushes
  // the small rows to zero, per-row keeps rows but not blocks, 1x128 keeps both.
  const auto x = structured(256, 1024, 11);
  const auto t = quantize_blocks(x, 256, 1024, ScaleMode::tensor, fp8::Format::e4m3);
  const auto r = quantize_blocks(x, 256, 1024, ScaleMode::outer_vec, fp8::Format::e4m3);
  const auto v = quantize_blocks(x, 256, 1024, ScaleMode::vec128, fp8::Format::e4m3);
  const auto mx = quantize_blocks(x, 256, 1024, ScaleMode::vec32_ue8m0, fp8::Format::e4m3);
  EXPECT_GT(t.underflow, r.underflow);
  EXPECT_GT(r.underflow, v.underflow);
  EXPECT_LT(rel_error(x, v, fp8::Format::e4m3), rel_error(x, t, fp8::Format::e4m3));
  // 1x128 blocks with exact FP32 scales round like a well-scaled tensor: about 2^-4 / sqrt(3).
  EXPECT_LT(rel_error(x, v, fp8::Format::e4m3), 0.05);
  EXPECT_LT(rel_error(x, mx, fp8::Format::e4m3), 0.05);
}

TEST(ScaleMode, SpecRulesAndJson) {
  GemmSpec s;
  s.m = s.n = s.k = 256;
  s.a_scale = ScaleMode::vec128;
  EXPECT_EQ(structural_error(s), "");
  EXPECT_TRUE(s.from_sources());
  s.a = DType::bf16;
  EXPECT_EQ(structural_error(s), "a_scale=vec128 scales an FP8 A; A is bf16");
  s.a = DType::e4m3;
  s.b = DType::fp16;
  s.b_scale = ScaleMode::blk128;
  EXPECT_EQ(structural_error(s), "b_scale=blk128 scales an FP8 B; B is fp16");
  s.b = DType::e4m3;
  s.batch = 2;
  EXPECT_EQ(structural_error(s), "scale modes other than tensor are probed with batch 1");
  s.batch = 1;
  const auto j = to_json(s);
  EXPECT_EQ(j["a_scale"], "vec128");
  EXPECT_EQ(j["b_scale"], "blk128");
  EXPECT_EQ(j["inputs"], "fp8_exact");
  // FP32 sources and a second reference are counted in the memory a point needs.
  GemmSpec plain = s;
  plain.a_scale = plain.b_scale = ScaleMode::tensor;
  EXPECT_FALSE(plain.from_sources());
  EXPECT_GT(s.device_bytes(256), plain.device_bytes(256) + 4.0 * 2 * 256 * 256);
}

// The model's scales under both rules, over every positive finite BF16 amax, both formats and
// a few margins. FP32 scales: amax / fmt_max times 2^margin. Power-of-two scales: 1 / (fmt_max /
// amax rounded down to a power of two), as TransformerEngine's Float8BlockScaling takes them, so
// that at margin 0 the block's largest value lands in (fmt_max / 2, fmt_max] and none
// saturates; non-finite amaxes keep 1.
TEST(ScaleMode, ModelBlockScalesUnderBothRules) {
  for (fp8::Format f : {fp8::Format::e4m3, fp8::Format::e5m2}) {
    const double fmax = fp8::info(f).max;
    for (int margin : {-2, 0, 3})
      for (unsigned b = 1; b < 0x7F80u; ++b) {
        const float amax = bf16_value(b);
        const float exact = model_block_dequant(ScaleMode::vec128, amax, f, {margin, false});
        ASSERT_EQ(exact, std::ldexp(amax / float(fmax), margin)) << amax;
        const float d = model_block_dequant(ScaleMode::blk128, amax, f, {margin, true});
        int e = 0;
        ASSERT_EQ(std::frexp(d, &e), 0.5f) << "a power of two: " << amax;
        // (fmt_max / amax) rounded to FP32, its power of two, inverted, times 2^margin.
        const float q = std::min(float(fmax) / amax, std::numeric_limits<float>::max());
        int eq = 0;
        std::frexp(q, &eq);
        ASSERT_EQ(d, std::ldexp(1.0f, 1 - eq + margin)) << amax;
        if (margin == 0) {
          // The block's largest value in codes: exactly representable (a BF16 value times a
          // power of two), at most fmt_max, so nothing saturates; above half of it, so at most
          // one binade is given up.
          const double y = double(amax) / double(d);
          ASSERT_LE(y, fmax) << amax;
          if (amax > 1e-30f) ASSERT_GT(y, fmax / 2 * (1 - 1e-7)) << amax;
        }
      }
    EXPECT_EQ(model_block_dequant(ScaleMode::vec128, 0.0f, f, {0, true}), 1.0f);
    EXPECT_EQ(model_block_dequant(ScaleMode::vec128, INFINITY, f, {0, true}), 1.0f);
    EXPECT_EQ(model_block_dequant(ScaleMode::vec128, NAN, f, {2, true}), 1.0f);
  }
  // E4M3, amax 3 x 448: fmt_max / amax = 1/3, whose power of two is 1/4: the scale is 4 (FP32: 3).
  EXPECT_EQ(model_block_dequant(ScaleMode::vec128, 448.0f * 3, fp8::Format::e4m3, {0, true}), 4.0f);
  EXPECT_EQ(model_block_dequant(ScaleMode::vec128, 448.0f * 3, fp8::Format::e4m3, {1, true}), 8.0f);
  EXPECT_EQ(model_block_dequant(ScaleMode::vec128, 448.0f, fp8::Format::e4m3, {0, true}), 1.0f);
  EXPECT_EQ(model_block_dequant(ScaleMode::vec128, 300.0f, fp8::Format::e4m3, {0, true}), 1.0f);
}

// The GPU casts count saturations from the block amax alone at margin >= 0 (block_cast_kernel.cuh,
// Quot::pow2; FP32 scales did so from f059679 until measured no faster): only values equal to the amax can saturate there. Checked for
// every finite BF16 amax whose scale the casts' fast path takes (2^-76 <= d <= 2^100; smaller
// and larger scales go value by value), both formats and both rules: the next BF16 magnitude
// below the amax, and with it every smaller one, divides (FP32, as the emulation divides) to at
// most fmt_max. At a negative margin it does not, which is why those casts compare every value.
TEST(ScaleMode, AtNonNegativeMarginsOnlyTheBlockAmaxCanSaturate) {
  for (fp8::Format f : {fp8::Format::e4m3, fp8::Format::e5m2}) {
    const float fmax = fp8::info(f).max;
    for (bool pow2 : {false, true}) {
      for (int margin : {0, 1, 2, 4, 8}) {
        long amax_saturates = 0;
        for (unsigned b = 2; b < 0x7F80u; ++b) {
          const float amax = bf16_value(b);
          const float below = bf16_value(b - 1);
          const float d = model_block_dequant(ScaleMode::vec128, amax, f, {margin, pow2});
          if (!in_fast_range(d)) continue;
          ASSERT_LE(below / d, fmax) << "amax " << amax << " margin " << margin << (pow2 ? " pow2" : "");
          amax_saturates += amax / d > fmax;
        }
        // FP32 scales at margin 0: amax / d rounds above fmt_max for some amaxes (so the key is
        // needed); powers of two never put the amax above it.
        if (pow2 || margin > 0)
          EXPECT_EQ(amax_saturates, 0) << "margin " << margin << (pow2 ? " pow2" : "");
        else
          EXPECT_GT(amax_saturates, 0);
      }
      bool any = false;
      for (unsigned b = 2; b < 0x7F80u && !any; ++b) {
        const float amax = bf16_value(b);
        const float d = model_block_dequant(ScaleMode::vec128, amax, f, {-1, pow2});
        any = in_fast_range(d) && bf16_value(b - 1) / d > fmax;
      }
      EXPECT_TRUE(any) << "at margin -1 values below the amax saturate too";
    }
  }
}
