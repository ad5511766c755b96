#pragma once
// Tensor maps for Hopper's TMA loads (core/tma.cuh), made on the host: the driver's
// cuTensorMapEncodeTiled, found through the runtime so that nothing links libcuda itself.
#include <cuda.h>

#include <cstdint>

namespace fp8scope::core {

// A row-major BF16 matrix of `rows` rows of `cols` elements, `ld` elements from one row to the
// next (16-byte aligned base, ld a multiple of 8), loaded in boxes of `box_rows` rows by 64
// columns (128 bytes) with the 128-byte swizzle, wgmma's layout (core/wgmma.cuh). A kernel
// takes it as a __grid_constant__ parameter. Throws std::runtime_error naming the driver's
// error when the map can't be made.
CUtensorMap bf16_swizzled_tile_map(const void* base, std::uint64_t rows, std::uint64_t cols, std::uint64_t ld, std::uint32_t box_rows);

}  // namespace fp8scope::core
