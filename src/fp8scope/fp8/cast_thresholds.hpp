#pragma once
// A cast's "saturated" and "underflow" tests as comparisons of the input's magnitude bits.
// For a fixed scale, fl(|x| * scale) never decreases as |x| grows, so
//   saturated:  x finite and fl(|x| * scale) > max       <=>  mag(x) > sat
//   underflow:  x != 0 and fl(|x| * scale) <= min_sub/2   <=>  0 < mag(x) <= under
// with mag the IEEE bit pattern of |x|. The fast cast kernels find the two thresholds once per
// thread and then count with integer compares; a CPU test checks the equivalence over every
// BF16 magnitude and sampled FP32 ones, for ordinary and degenerate scales.
#include "fp8scope/fp8/format.hpp"

#include <cstdint>

namespace fp8scope::fp8 {

struct CastThresholds {  // FP32 magnitude bit patterns
  std::uint32_t sat;     // largest magnitude that does not saturate
  std::uint32_t under;   // largest magnitude that underflows to zero
  // sat + 1 when the scale is finite and positive, else 0: magnitudes below it are finite,
  // do not saturate and cannot encode to a non-finite code, so a vector whose largest
  // magnitude is below it needs only its amax and underflows counted (the kernels' fast path).
  std::uint32_t clean = 0;
};

FP8S_HD float float_from_bits(std::uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
#endif
}

FP8S_HD std::uint32_t bits_of_float(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
#endif
}

// Largest finite FP32 magnitude b with fl(b * scale) <= limit. The quotient limit / scale is
// within an ulp or two of it, so a few checks finish it. (A negative or zero scale makes every
// product <= limit: nothing saturates and every nonzero value underflows, as in the plain cast.)
FP8S_HD std::uint32_t f32_bits_within(float limit, float scale) {
  constexpr std::uint32_t kMaxFinite = 0x7F7FFFFFu;
  std::uint32_t b = bits_of_float(limit / scale);
  if (b > kMaxFinite) b = kMaxFinite;  // inf, NaN or a negative quotient
  while (b > 0 && !(float_from_bits(b) * scale <= limit)) --b;
  while (b < kMaxFinite && float_from_bits(b + 1) * scale <= limit) ++b;
  return b;
}

// A NaN scale (never produced by the recipes) compares false everywhere, as in the plain
// cast: nothing saturates, nothing underflows.
FP8S_HD CastThresholds cast_thresholds(float scale, Format f) {
  if (scale != scale) return {0x7F7FFFFFu, 0u, 0u};
  const std::uint32_t sat = f32_bits_within(info(f).max, scale);
  const bool ordinary = scale > 0.0f && scale <= 3.4028234663852886e38f;
  return {sat, f32_bits_within(0.5f * info(f).min_sub, scale), ordinary ? sat + 1 : 0u};
}

// The same thresholds for BF16 magnitudes (the top 16 bits of the FP32 pattern):
// m << 16 <= t exactly when m <= t >> 16.
struct Bf16Thresholds {
  std::uint32_t sat, under, clean = 0;
};

FP8S_HD Bf16Thresholds bf16_thresholds(float scale, Format f) {
  const CastThresholds t = cast_thresholds(scale, f);
  return {t.sat >> 16, t.under >> 16, t.clean ? (t.sat >> 16) + 1 : 0u};
}

}  // namespace fp8scope::fp8
