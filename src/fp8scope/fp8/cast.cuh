#pragma once
// FP8 quantisation on the GPU, fused with the statistics a scaling recipe and the taps need:
// one pass reads BF16, writes FP8 (x * scale, encoded with the chosen overflow mode) and
// accumulates amax of the finite inputs and the counts of non-finite inputs, saturated
// values (|x * scale| above the format's max), underflows (non-zero x that became zero) and
// non-finite FP8 outputs (non-finite inputs plus overflows without saturation).
// The transposing variant also writes the FP8 transpose that dgrad/wgrad GEMMs need.
// Statistics pointers may be null (no statistics).
#include "fp8scope/fp8/format.hpp"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace fp8scope::fp8 {

struct CastStats {  // device-side, zeroed by the caller before the cast
  float amax;
  unsigned long long nonfinite, saturated, underflow, nonfinite_out;
};

// scale: device pointer to the quantisation scale (the recipe's current one).
void quantize(std::uint8_t* out, const __nv_bfloat16* in, std::int64_t n, const float* scale, Format f, Overflow o, CastStats* stats,
              cudaStream_t s);

// in: `batch` row-major [rows][cols] matrices; out: the same layout; out_t: each transposed,
// row-major [cols][rows]. out may be null (only the transpose is wanted).
void quantize_transpose(std::uint8_t* out, std::uint8_t* out_t, const __nv_bfloat16* in, int rows, int cols, const float* scale, Format f,
                        Overflow o, CastStats* stats, cudaStream_t s, int batch = 1);

// The same casts from FP32 (a weight cast from its FP32 master copy; in 16-byte aligned). The
// statistics' thresholds are those of FP32 values.
void quantize(std::uint8_t* out, const float* in, std::int64_t n, const float* scale, Format f, Overflow o, CastStats* stats,
              cudaStream_t s);
void quantize_transpose(std::uint8_t* out, std::uint8_t* out_t, const float* in, int rows, int cols, const float* scale, Format f,
                        Overflow o, CastStats* stats, cudaStream_t s);

// One matrix of quantize_many / quantize_transpose_many: in [rows][cols] (In: FP32 or BF16) to
// out (the same layout) and out_t ([cols][rows]), with its own scale and statistics.
template <class In>
struct CastJob {
  const In* in;
  std::uint8_t* out;
  std::uint8_t* out_t;
  const float* scale;
  CastStats* stats;
  int rows, cols;
};
// FP32: out or out_t may be null (only the other copy), stats may be null; rows and cols
// multiples of 8.
using CastJobF32 = CastJob<float>;
using CastTransposeJob = CastJob<__nv_bfloat16>;
// quantize_transpose of n matrices of one format in one launch: a model's weights, which
// cast one launch each left most of the GPU idle (a few microseconds apiece). jobs: a device
// array of n jobs, each tile_cast_fits; max_tiles: the most kCastTile x kCastTile tiles of
// any of them (it sizes the grid).
void quantize_transpose_many(const CastTransposeJob* jobs, int n, int max_tiles, Format f, Overflow o, cudaStream_t s);

// The tile loop behind the transposing casts and the casts fused with them (here and in the
// MLP) works on kCastTile x kCastTile tiles and takes matrices whose rows and columns are
// multiples of 8; other shapes use element-wise fallbacks, or no fusion.
constexpr int kCastTile = 64;
inline bool tile_cast_fits(int rows, int cols) { return rows % 8 == 0 && cols % 8 == 0; }
__host__ __device__ inline int cast_tiles(int rows, int cols) {
  return ((rows + kCastTile - 1) / kCastTile) * ((cols + kCastTile - 1) / kCastTile);
}

// What a one-launch cast of several matrices sizes its grid by: add() each matrix.
struct ManyCastSizes {
  int max_tiles = 0;  // kCastTile x kCastTile tiles of the largest, and of all together
  std::int64_t total_tiles = 0;
  std::int64_t max_elements = 0, total_elements = 0;  // rows x cols
  void add(int rows, int cols) {
    const int t = cast_tiles(rows, cols);
    const std::int64_t e = std::int64_t(rows) * cols;
    max_tiles = t > max_tiles ? t : max_tiles, total_tiles += t;
    max_elements = e > max_elements ? e : max_elements, total_elements += e;
  }
};
// The casts of n FP32 matrices of one format in one launch (a layer's weights from their FP32
// masters): jobs, a device array; sizes: of those n matrices.
void quantize_many(const CastJobF32* jobs, int n, const ManyCastSizes& sizes, Format f, Overflow o, cudaStream_t s);
// The same where every job wants only the row-major codes (out_t null, ignored): the flat
// vector loop, no shared-memory staging.
void quantize_rows_many(const CastJobF32* jobs, int n, const ManyCastSizes& sizes, Format f, Overflow o, cudaStream_t s);
// Rows of a bias gradient's per-tile column sums (see quantize_transpose_dbias), and floats.
inline int dbias_partial_rows(int rows) { return (rows + kCastTile - 1) / kCastTile; }
inline std::int64_t dbias_partial_floats(int rows, int cols) { return std::int64_t(dbias_partial_rows(rows)) * cols; }
// quantize_transpose of one matrix that also sums each column of `in` over every tile's rows
// (the bias gradient of a linear whose output gradient is `in`, from the values before the
// cast, as FP8 frameworks take it) into bias_partial[dbias_partial_rows(rows)][cols]; the
// caller reduces those rows in a fixed order. Only where tile_cast_fits(rows, cols).
void quantize_transpose_dbias(std::uint8_t* out, std::uint8_t* out_t, float* bias_partial, const __nv_bfloat16* in, int rows, int cols,
                              const float* scale, Format f, Overflow o, CastStats* stats, cudaStream_t s);
// Quantise-dequantise in BF16 (out may be in): what a tensor becomes when the next GEMM reads
// it in FP8, for the backward pass of FP8 attention.
void fake_quantize(__nv_bfloat16* out, const __nv_bfloat16* in, std::int64_t n, const float* scale, Format f, Overflow o, CastStats* stats,
                   cudaStream_t s);

// Byte transpose of an FP8 matrix (row-major [rows][cols] -> [cols][rows]).
void transpose_fp8(std::uint8_t* out_t, const std::uint8_t* in, int rows, int cols, cudaStream_t s);
// The same for `cols` columns of a matrix whose rows are `ld` bytes apart (in points at the
// slice's first column): out_t is [cols][rows]. Rows, columns and ld multiples of 16, unless the
// slice is the whole matrix (ld == cols: transpose_fp8).
void transpose_fp8_columns(std::uint8_t* out_t, const std::uint8_t* in, int rows, int cols, std::int64_t ld, cudaStream_t s);
// The same for codes that something other than a cast wrote (a cuBLASLt epilogue), counting in
// them what a cast counts from its inputs, as far as the codes tell: NaN/inf codes (nonfinite and
// nonfinite_out), codes at the format's largest magnitude (saturated: also values that merely
// rounded to it), zero codes (underflow: also exact zeros). amax is left to the writer. Rows and
// columns multiples of 16.
void transpose_fp8_counting(std::uint8_t* out_t, const std::uint8_t* in, int rows, int cols, Format f, CastStats* stats, cudaStream_t s);

// Statistics only: amax of the finite values and the non-finite count (also nonfinite_out).
void tensor_stats(const __nv_bfloat16* in, std::int64_t n, CastStats* stats, cudaStream_t s);
void tensor_stats(const float* in, std::int64_t n, CastStats* stats, cudaStream_t s);

// For reducing statistics across data-parallel ranks: amax (NaN where the slot saw a
// non-finite input) and non-finite counts of n slots into plain arrays, and back.
void pack_amax(float* amax, unsigned long long* nonfinite, const CastStats* stats, int n, cudaStream_t s);
void unpack_amax(CastStats* stats, const float* amax, const unsigned long long* nonfinite, int n, cudaStream_t s);

}  // namespace fp8scope::fp8
