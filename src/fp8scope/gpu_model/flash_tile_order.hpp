#pragma once
// The order in which the persistent attention kernels (flash_attention_tma.cu) take their work
// tiles: sections of `section` consecutive (batch, head) indices whose tiles the loop reads (K
// and V in the forward) stay in L2 together; within a section the heaviest tiles first, all of
// the section's heads at one weight before the next lighter one, so the short tiles fill the
// tail. rank 0 is the heaviest tile of a head (the forward's and dQ's last query tile, dK/dV's
// first key tile). Host and device code: the kernels decode tiles with it, a cpu test checks
// that every tile comes out once.
#include <algorithm>
#include <cstddef>

#if defined(__CUDACC__)
#define FP8S_TILE_HD __host__ __device__ __forceinline__
#else
#define FP8S_TILE_HD inline
#endif

namespace fp8scope::gpu_model::flash {

struct TileOrder {
  int per_head, heads, section;
  FP8S_TILE_HD int tiles() const { return per_head * heads; }
  // Work tile t's rank (0 .. per_head - 1) and (batch, head) index.
  FP8S_TILE_HD void at(int t, int& rank, int& head) const {
    const int per_section = section * per_head, first = t / per_section * section, r = t % per_section;
    const int width = std::min(section, heads - first);
    rank = r / width;
    head = first + r % width;
  }
};

// The L2 bytes a section's loop tiles may fill: about a third of an H100's or H200's L2.
constexpr std::size_t kTileSectionBytes = std::size_t(16) << 20;

// per_head tiles for each of `heads` heads whose loop reads head_bytes each.
inline TileOrder tile_order(int per_head, int heads, std::size_t head_bytes) {
  const std::size_t fit = kTileSectionBytes / std::max<std::size_t>(1, head_bytes);
  return {per_head, heads, int(std::max<std::size_t>(1, std::min<std::size_t>(std::size_t(heads), fit)))};
}

}  // namespace fp8scope::gpu_model::flash
