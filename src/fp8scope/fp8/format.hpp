#pragma once
// FP8 E4M3 and E5M2 (the OCP / NVIDIA formats), encode and decode, usable on host and device.
//   E4M3: bias 7, no infinities, NaN = S.1111.111, max 448, min subnormal 2^-9.
//   E5M2: bias 15, IEEE-like, inf = S.11111.00, NaN = S.11111.xx (xx != 0), max 57344, min 2^-16.
// Encoding rounds to nearest, ties to even. Overflow (a value whose rounding exceeds max):
//   satfinite -> +-max;  nosat -> NaN (E4M3) or +-inf (E5M2), as CUDA's __NV_NOSAT.
// Inputs of +-inf behave like overflow; NaN always encodes as NaN.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>

#if defined(__CUDACC__)
#define FP8S_HD __host__ __device__ __forceinline__
#else
#define FP8S_HD inline
#endif

namespace fp8scope::fp8 {

enum class Format : std::uint8_t { e4m3, e5m2 };
enum class Overflow : std::uint8_t { satfinite, nosat };

struct FormatInfo {
  int exp_bits, man_bits, bias;
  float max;         // largest finite value
  float min_normal;  // 2^(1-bias)
  float min_sub;     // 2^(1-bias-man_bits)
  bool has_inf;
};

FP8S_HD constexpr FormatInfo info(Format f) {
  return f == Format::e4m3 ? FormatInfo{4, 3, 7, 448.0f, 0.015625f, 0.001953125f, false}
                           : FormatInfo{5, 2, 15, 57344.0f, 6.103515625e-05f, 1.52587890625e-05f, true};
}

constexpr std::string_view name(Format f) { return f == Format::e4m3 ? "e4m3" : "e5m2"; }
constexpr std::string_view name(Overflow o) { return o == Overflow::satfinite ? "satfinite" : "nosat"; }

FP8S_HD std::uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
#endif
}

FP8S_HD float decode(std::uint8_t code, Format f) {
  const FormatInfo fi = info(f);
  const int man_mask = (1 << fi.man_bits) - 1;
  const int exp_mask = (1 << fi.exp_bits) - 1;
  const float sign = (code & 0x80) ? -1.0f : 1.0f;
  const int e = (code >> fi.man_bits) & exp_mask;
  const int m = code & man_mask;
  if (f == Format::e4m3 && e == exp_mask && m == man_mask) return NAN;
  if (f == Format::e5m2 && e == exp_mask) return m == 0 ? sign * INFINITY : NAN;
  if (e == 0) return sign * ldexpf(float(m), 1 - fi.bias - fi.man_bits);
  return sign * ldexpf(float(m + (1 << fi.man_bits)), e - fi.bias - fi.man_bits);
}

// Both formats use S.1111111 for the canonical NaN (E4M3: exponent and mantissa all ones;
// E5M2: exponent all ones with a non-zero mantissa).
inline constexpr std::uint8_t kNanCode = 0x7F;

FP8S_HD std::uint8_t encode(float x, Format f, Overflow ov) {
  const FormatInfo fi = info(f);
  const std::uint8_t sign = (float_bits(x) >> 24) & 0x80;
  if (x != x) return kNanCode;
  const float a = fabsf(x);
  // Overflow code: satfinite clamps to the largest finite value, nosat gives NaN/inf.
  const std::uint8_t max_code = f == Format::e4m3 ? 0x7E : 0x7B;
  const std::uint8_t over = ov == Overflow::satfinite ? max_code : (f == Format::e4m3 ? 0x7F : 0x7C);
  if (a == INFINITY) return std::uint8_t(sign | over);
  // The spacing of representable values around a (subnormal spacing below min_normal).
  int e = a < fi.min_normal ? 1 - fi.bias : int((float_bits(a) >> 23) & 0xFF) - 127;
  const float quantum = ldexpf(1.0f, e - fi.man_bits);
  const float steps = rintf(a / quantum);  // exact: power-of-two division; rintf ties to even
  const float r = steps * quantum;
  if (r > fi.max) return std::uint8_t(sign | over);
  if (r == 0.0f) return sign;
  if (r < fi.min_normal) return std::uint8_t(sign | int(steps));  // subnormal: exponent field 0
  // Normal: r = 1.m * 2^E (rounding may have carried into the next binade).
  const int E = int((float_bits(r) >> 23) & 0xFF) - 127;
  const int m = int((float_bits(r) >> (23 - fi.man_bits)) & ((1u << fi.man_bits) - 1));
  return std::uint8_t(sign | ((E + fi.bias) << fi.man_bits) | m);
}

// Round-trip through the format: what a value becomes after quantisation.
FP8S_HD float quantize(float x, Format f, Overflow ov) { return decode(encode(x, f, ov), f); }

}  // namespace fp8scope::fp8
