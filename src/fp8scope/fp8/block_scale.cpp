#include "fp8scope/fp8/block_scale.hpp"

#include "fp8scope/core/enum_names.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace fp8scope::fp8 {
namespace {
constexpr std::pair<ScaleMode, const char*> kModes[] = {{ScaleMode::tensor, "tensor"},           {ScaleMode::outer_vec, "outer_vec"},
                                                        {ScaleMode::vec128, "vec128"},           {ScaleMode::blk128, "blk128"},
                                                        {ScaleMode::vec32_ue8m0, "vec32_ue8m0"}, {ScaleMode::vec16_ue4m3, "vec16_ue4m3"}};
}  // namespace

std::string to_string(ScaleMode m) { return core::name_of(kModes, m); }
std::optional<ScaleMode> parse_scale_mode(const std::string& s) { return core::value_of(kModes, s); }
std::vector<std::string> scale_mode_names() {
  std::vector<std::string> out;
  for (auto& [v, n] : kModes) out.push_back(n);
  return out;
}

ScaleGeometry scale_geometry(ScaleMode mode, std::int64_t outer, std::int64_t inner) {
  ScaleGeometry g;
  g.mode = mode;
  g.outer = std::max<std::int64_t>(1, outer);
  g.inner = std::max<std::int64_t>(1, inner);
  switch (mode) {
    case ScaleMode::tensor: g.bo = g.outer, g.bk = g.inner; break;
    case ScaleMode::outer_vec: g.bo = 1, g.bk = g.inner; break;
    case ScaleMode::vec128: g.bo = 1, g.bk = 128; break;
    case ScaleMode::blk128: g.bo = 128, g.bk = 128; break;
    case ScaleMode::vec32_ue8m0: g.bo = 1, g.bk = 32; break;
    case ScaleMode::vec16_ue4m3: g.bo = 1, g.bk = 16; break;
  }
  g.n_ob = (g.outer + g.bo - 1) / g.bo;
  g.n_kb = (g.inner + g.bk - 1) / g.bk;
  return g;
}

BlockQuantized quantize_blocks(const std::vector<float>& src, std::int64_t outer, std::int64_t inner, ScaleMode mode, Format f) {
  BlockQuantized q;
  q.geo = scale_geometry(mode, outer, inner);
  const ScaleGeometry& g = q.geo;
  std::vector<float> amax(std::size_t(g.blocks()), 0.0f);
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t k = 0; k < inner; ++k) {
      float& a = amax[std::size_t(g.block_of(o, k))];
      a = std::max(a, std::fabs(src[std::size_t(o * inner + k)]));
    }
  q.dequant.resize(amax.size());
  q.lt.assign(std::size_t(g.lt_elements() * g.lt_element_bytes()), 0);
  for (std::int64_t ob = 0; ob < g.n_ob; ++ob)
    for (std::int64_t kb = 0; kb < g.n_kb; ++kb) {
      std::uint8_t code = 0;
      const float d = block_dequant(mode, amax[std::size_t(ob * g.n_kb + kb)], f, &code);
      q.dequant[std::size_t(ob * g.n_kb + kb)] = d;
      const std::int64_t at = g.lt_offset(ob, kb);
      if (g.lt_element_bytes() == 1)
        q.lt[std::size_t(at)] = code;
      else
        std::memcpy(&q.lt[std::size_t(at) * 4], &d, 4);
    }
  q.codes.resize(src.size());
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t k = 0; k < inner; ++k) {
      const float x = src[std::size_t(o * inner + k)];
      const std::uint8_t c = encode(x / q.dequant[std::size_t(g.block_of(o, k))], f, Overflow::satfinite);
      q.codes[std::size_t(o * inner + k)] = c;
      if (x != 0.0f && (c & 0x7F) == 0) ++q.underflow;
    }
  return q;
}

}  // namespace fp8scope::fp8
