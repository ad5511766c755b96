#include "fp8scope/model/gradient_ranges.hpp"

#include <algorithm>
#include <iterator>
#include <stdexcept>

namespace fp8scope::model {

bool gradient_written_whole(const GptConfig& c, const std::string& name) {
  if (name == "lm_head") return true;
  if (name == "wte") return c.tied;
  const auto dot = name.find('.');
  if (name.empty() || name[0] != 'h' || dot == std::string::npos) return false;
  const std::string w = name.substr(dot + 1);
  return std::any_of(std::begin(kBlockWeightNames), std::end(kBlockWeightNames), [&](const char* b) { return w == b; });
}

std::vector<FloatRange> gradient_ranges_to_zero(const GptConfig& c, std::int64_t piece) {
  if (piece <= 0) throw std::invalid_argument("gradient_ranges_to_zero: piece must be positive");
  std::vector<FloatRange> merged;
  for (const auto& t : param_layout(c)) {
    if (gradient_written_whole(c, t.name)) continue;
    if (!merged.empty() && merged.back().offset + merged.back().count == t.offset)
      merged.back().count += t.size;
    else
      merged.push_back({t.offset, t.size});
  }
  std::vector<FloatRange> out;
  for (const FloatRange& r : merged)
    for (std::int64_t o = 0; o < r.count; o += piece) out.push_back({r.offset + o, std::min(piece, r.count - o)});
  return out;
}

}  // namespace fp8scope::model
