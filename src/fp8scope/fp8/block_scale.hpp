#pragma once
// How an FP8 GEMM operand is scaled: one FP32 scale for the tensor (per-tensor scaling), one
// per row (cuBLASLt's OUTER_VEC_32F, torchao's row-wise recipe), one per 1x128 or 128x128 block
// (VEC128_32F / BLK128x128_32F, TransformerEngine's Float8BlockScaling), or the Blackwell
// microscaling modes (VEC32_UE8M0 = MXFP8, VEC16_UE4M3). The geometry of the blocks, and where
// each block's scale sits in the tensor cuBLASLt reads, as cuBLASLt documents it. Header-only
// index math, usable in kernels; the host-side emulation of block quantisation is in
// block_scale.cpp. The GEMM probe sweeps these modes; the CPU FP8 emulation scales the model's
// operands with them.
//
// Terms: an operand is `outer` x `inner` logically, inner = K (the reduction dimension), outer =
// m for A and n for B. A block is `bo` outer x `bk` inner elements; block (ob, kb) covers outer
// rows ob*bo .. and inner columns kb*bk ... Its dequantisation scale multiplies the stored codes.
#include "fp8scope/fp8/format.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fp8scope::fp8 {

enum class ScaleMode : std::uint8_t { tensor, outer_vec, vec128, blk128, vec32_ue8m0, vec16_ue4m3 };

std::string to_string(ScaleMode m);
std::optional<ScaleMode> parse_scale_mode(const std::string& s);
std::vector<std::string> scale_mode_names();

#if defined(__CUDACC__)
#define FP8S_GEO_HD __host__ __device__ __forceinline__
#else
#define FP8S_GEO_HD inline
#endif

struct ScaleGeometry {
  ScaleMode mode = ScaleMode::tensor;
  std::int64_t outer = 1, inner = 1;  // logical operand extent (outer x K)
  std::int64_t bo = 1, bk = 1;        // block extent
  std::int64_t n_ob = 1, n_kb = 1;    // blocks along outer and inner

  FP8S_GEO_HD std::int64_t blocks() const { return n_ob * n_kb; }
  // The block of a logical element, as an index into a [n_ob][n_kb] array.
  FP8S_GEO_HD std::int64_t block_of(std::int64_t o, std::int64_t k) const { return (o / bo) * n_kb + k / bk; }

  // FP32 scales (tensor, outer_vec, vec128, blk128) or one byte each (the microscaling modes).
  FP8S_GEO_HD int lt_element_bytes() const { return mode == ScaleMode::vec32_ue8m0 || mode == ScaleMode::vec16_ue4m3 ? 1 : 4; }
  // Leading dimension of the scale tensor in elements (padded so each column of scales starts
  // 16-byte aligned, as cuBLASLt requires of scale tensors).
  FP8S_GEO_HD std::int64_t lt_ld() const {
    switch (mode) {
      case ScaleMode::vec128: return (n_ob + 3) / 4 * 4;  // outer index fastest: [n_kb][roundup(outer, 4)]
      case ScaleMode::blk128: return (n_kb + 3) / 4 * 4;  // inner block fastest: [n_ob][roundup(n_kb, 4)]
      default: return 0;
    }
  }
  // Elements of the scale tensor, padding included.
  FP8S_GEO_HD std::int64_t lt_elements() const {
    switch (mode) {
      case ScaleMode::tensor: return 1;
      case ScaleMode::outer_vec: return n_ob;
      case ScaleMode::vec128: return n_kb * lt_ld();
      case ScaleMode::blk128: return n_ob * lt_ld();
      default: return (n_ob + 127) / 128 * 128 * ((n_kb + 3) / 4 * 4);  // whole 128 x 4 tiles
    }
  }
  // Where the scale of block (ob, kb) sits in the scale tensor cuBLASLt reads.
  FP8S_GEO_HD std::int64_t lt_offset(std::int64_t ob, std::int64_t kb) const {
    switch (mode) {
      case ScaleMode::tensor: return 0;
      case ScaleMode::outer_vec: return ob;
      case ScaleMode::vec128: return kb * lt_ld() + ob;
      case ScaleMode::blk128: return ob * lt_ld() + kb;
      default: {
        // Microscaling: 128 x 4 tiles (outer x inner blocks) of 512 bytes, tiles along the
        // inner dimension first; inside a tile, outer row r sits at (r % 32) * 16 + (r / 32) * 4.
        const std::int64_t col_tiles = (n_kb + 3) / 4;
        const std::int64_t tile = (ob / 128) * col_tiles + kb / 4;
        return tile * 512 + (ob % 32) * 16 + ((ob % 128) / 32) * 4 + kb % 4;
      }
    }
  }
};

ScaleGeometry scale_geometry(ScaleMode mode, std::int64_t outer, std::int64_t inner);

// The dequantisation scale a block gets from its amax: amax / fmt_max, rounded as the mode
// stores it (a power of two at or above it for UE8M0; the next UE4M3 value at or above it for
// UE4M3, clamped to that format's range), and 1 for an all-zero block. *lt_code receives the
// byte a microscaling mode stores. Host and device give the same bits.
FP8S_GEO_HD float block_dequant(ScaleMode mode, float amax, Format f, std::uint8_t* lt_code) {
  *lt_code = 0;
  if (!(amax > 0.0f)) {
    if (mode == ScaleMode::vec32_ue8m0) *lt_code = 127;  // 2^0
    if (mode == ScaleMode::vec16_ue4m3) *lt_code = encode(1.0f, Format::e4m3, Overflow::satfinite);
    return 1.0f;
  }
  const float s = amax / info(f).max;
  if (mode == ScaleMode::vec32_ue8m0) {
    // UE8M0: 2^(e - 127); the smallest power of two >= s, so no block value saturates.
    int e = int((float_bits(s) >> 23) & 0xFF);
    if ((float_bits(s) & 0x7FFFFF) != 0) ++e;
    e = e < 1 ? 1 : (e > 254 ? 254 : e);
    *lt_code = std::uint8_t(e);
    return ldexpf(1.0f, e - 127);
  }
  if (mode == ScaleMode::vec16_ue4m3) {
    // Unsigned E4M3: round up to a representable value so no block value saturates.
    const FormatInfo fi = info(Format::e4m3);
    const float c = s < fi.min_sub ? fi.min_sub : (s > fi.max ? fi.max : s);
    std::uint8_t code = encode(c, Format::e4m3, Overflow::satfinite);
    if (decode(code, Format::e4m3) < c && code < 0x7E) ++code;
    *lt_code = code;
    return decode(code, Format::e4m3);
  }
  return s;
}

// How the model's per-row / per-block scales follow from their amaxes: the recipe's
// power-of-two margin, and whether each scale is the FP32 ratio amax / fmt_max or a power of
// two. TransformerEngine's Float8BlockScaling takes powers of two by default (its
// quantisation scale fmt_max / amax with the mantissa cleared: amax times it is a BF16 value at
// most fmt_max, so at margin >= 0 no value saturates); then the codes are x times an exact
// power of two, rounded once, and the scales survive any rescaling exactly.
struct BlockScaleRule {
  int margin = 0;
  bool pow2 = false;
};

// The model's per-row / per-block dequantisation scale: block_dequant (FP32 scale modes: amax /
// fmt_max) or, under rule.pow2, 1 / (fmt_max / amax rounded down to a power of two), with the
// margin on top; a block holding a non-finite value (amax NaN or inf) keeps 1, so the value
// reaches the cast and the NaN onset sees it. The CPU emulation and the GPU casts
// (block_cast.cuh) both use it.
FP8S_GEO_HD float model_block_dequant(ScaleMode mode, float amax, Format f, BlockScaleRule rule) {
  if (!(amax <= 3.40282347e38f)) return 1.0f;
  if (rule.pow2 && amax > 0.0f) {
    // fmt_max / amax as TransformerEngine computes it (FP32, inf clamped to FLT_MAX), its
    // exponent kept: a normal number for every finite amax (>= 448 / 3.4e38), so the inverse
    // 2^-e is exact (2^-127 at the smallest amaxes is an FP32 subnormal, still exact).
    float q = info(f).max / amax;
    if (q > 3.40282347e38f) q = 3.40282347e38f;
    const int e = int((float_bits(q) >> 23) & 0xFF) - 127;
    return ldexpf(1.0f, rule.margin - e);
  }
  std::uint8_t code = 0;
  return ldexpf(block_dequant(mode, amax, f, &code), rule.margin);
}

// Host emulation of the GPU's block quantisation of one operand given logically as
// src[o * inner + k]: per-block amax, dequantisation scales (block_dequant) and saturating codes
// round(x / scale). The GPU kernels must give the same bits (a gpu test checks it).
struct BlockQuantized {
  ScaleGeometry geo;
  std::vector<float> dequant;       // [n_ob][n_kb]
  std::vector<std::uint8_t> codes;  // [outer][inner]
  std::vector<std::uint8_t> lt;     // the scale tensor as cuBLASLt reads it (bytes)
  std::int64_t underflow = 0;       // non-zero inputs whose code is zero
};
BlockQuantized quantize_blocks(const std::vector<float>& src, std::int64_t outer, std::int64_t inner, ScaleMode mode, Format f);

}  // namespace fp8scope::fp8
