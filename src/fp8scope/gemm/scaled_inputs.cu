#include "fp8scope/gemm/element_io.cuh"
#include "fp8scope/gemm/scaled_inputs.cuh"

namespace fp8scope::gemm {
namespace {

// A uniform in [-1, 1) from a hash.
__device__ __forceinline__ float uniform_pm1(std::uint64_t h) { return float(std::uint32_t(h >> 40)) * (2.0f / 16777216.0f) - 1.0f; }

// The outlier pattern's magnitude exponent at (o, k): per row 2^+-6, per 128 x 128 tile 2^+-5,
// per 1 x 128 block 2^+-4, rounded to an integer so the structure is exact in every format.
__device__ __forceinline__ int outlier_exponent(std::uint64_t seed, std::int64_t o, std::int64_t k) {
  const float row = uniform_pm1(splitmix64(seed ^ (0x1000000000ull + std::uint64_t(o))));
  const float tile = uniform_pm1(splitmix64(seed ^ (0x2000000000ull + std::uint64_t(o / 128) * 65536ull + std::uint64_t(k / 128))));
  const float vec = uniform_pm1(splitmix64(seed ^ (0x3000000000ull + std::uint64_t(o) * 65536ull + std::uint64_t(k / 128))));
  return int(rintf(6.0f * row + 5.0f * tile + 4.0f * vec));
}

__global__ void fill_source_kernel(float* src, OperandIndex idx, ScaleGeometry geo, std::int64_t count, InputPattern pattern,
                                   std::uint64_t seed) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count; i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t fast = i % idx.ld, slow = i / idx.ld;
    const std::int64_t o = idx.k_fastest ? slow : fast, k = idx.k_fastest ? fast : slow;
    float v = 0.0f;
    if (o < geo.outer && k < geo.inner) {
      v = normal_at(seed, o * geo.inner + k);
      if (pattern == InputPattern::outliers) v = ldexpf(v, outlier_exponent(seed, o, k));
    }
    src[i] = v;
  }
}

// Each thread takes a run of 16 inner elements of one outer row: 16 divides every block's
// inner extent, so a run lies in one block.
constexpr int kRun = 16;

__global__ void block_amax_kernel(const float* src, OperandIndex idx, ScaleGeometry geo, float* amax) {
  const std::int64_t runs_per_row = (geo.inner + kRun - 1) / kRun, total = geo.outer * runs_per_row;
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t base = blockIdx.x * std::int64_t(blockDim.x); base < total; base += stride) {
    const std::int64_t t = base + threadIdx.x;
    const bool valid = t < total;
    const std::int64_t o = valid ? t / runs_per_row : 0, k0 = valid ? (t % runs_per_row) * kRun : 0;
    float m = 0.0f;
    if (valid)
      for (int j = 0; j < kRun && k0 + j < geo.inner; ++j) m = fmaxf(m, fabsf(src[idx.at(o, k0 + j)]));
    const std::int64_t b = valid ? geo.block_of(o, k0) : -1;
    // One atomic per warp when the whole warp is in one block (per-tensor and per-row scales
    // of long rows), else one per thread. Non-negative floats order like their bits.
    const std::int64_t b0 = __shfl_sync(0xffffffffu, b, 0);
    if (__all_sync(0xffffffffu, b == b0)) {
      for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
      if ((threadIdx.x & 31) == 0 && valid) atomicMax(reinterpret_cast<unsigned*>(amax + b), __float_as_uint(m));
    } else if (valid) {
      atomicMax(reinterpret_cast<unsigned*>(amax + b), __float_as_uint(m));
    }
  }
}

__device__ __forceinline__ fp8::Format format_of(DType t) { return t == DType::e5m2 ? fp8::Format::e5m2 : fp8::Format::e4m3; }

__device__ __forceinline__ void write_lt(const ScaleGeometry& geo, void* lt, std::int64_t ob, std::int64_t kb, float d, std::uint8_t code) {
  const std::int64_t at = geo.lt_offset(ob, kb);
  if (geo.lt_element_bytes() == 1)
    static_cast<std::uint8_t*>(lt)[at] = code;
  else
    static_cast<float*>(lt)[at] = d;
}

__global__ void block_scales_kernel(const float* amax, ScaleGeometry geo, DType fmt, float* dequant, void* lt) {
  for (std::int64_t b = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; b < geo.blocks(); b += std::int64_t(gridDim.x) * blockDim.x) {
    std::uint8_t code = 0;
    const float d = block_dequant(geo.mode, amax[b], format_of(fmt), &code);
    dequant[b] = d;
    write_lt(geo, lt, b / geo.n_kb, b % geo.n_kb, d, code);
  }
}

__global__ void random_block_scales_kernel(ScaleGeometry geo, float base, std::uint64_t seed, float* dequant, void* lt) {
  for (std::int64_t b = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; b < geo.blocks(); b += std::int64_t(gridDim.x) * blockDim.x) {
    const int r = int(splitmix64(seed ^ (0x4000000000ull + std::uint64_t(b))) % 7) - 3;
    const float d = ldexpf(base, r);
    std::uint8_t code = 0;
    if (geo.mode == ScaleMode::vec32_ue8m0) code = std::uint8_t(((__float_as_uint(d) >> 23) & 0xFF));
    if (geo.mode == ScaleMode::vec16_ue4m3) code = fp8::encode(d, fp8::Format::e4m3, fp8::Overflow::satfinite);
    // The reference must use what cuBLASLt decodes.
    dequant[b] = geo.mode == ScaleMode::vec16_ue4m3 ? fp8::decode(code, fp8::Format::e4m3) : d;
    write_lt(geo, lt, b / geo.n_kb, b % geo.n_kb, dequant[b], code);
  }
}

__global__ void quantize_kernel(const float* src, OperandIndex idx, ScaleGeometry geo, const float* dequant, void* codes, DType type,
                                unsigned long long* underflow) {
  const std::int64_t runs_per_row = (geo.inner + kRun - 1) / kRun, total = geo.outer * runs_per_row;
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  const bool fp8 = type == DType::e4m3 || type == DType::e5m2;
  for (std::int64_t base = blockIdx.x * std::int64_t(blockDim.x); base < total; base += stride) {
    const std::int64_t t = base + threadIdx.x;
    unsigned long long lost = 0;
    if (t < total) {
      const std::int64_t o = t / runs_per_row, k0 = (t % runs_per_row) * kRun;
      const float d = dequant[geo.block_of(o, k0)];
      for (int j = 0; j < kRun && k0 + j < geo.inner; ++j) {
        const std::int64_t at = idx.at(o, k0 + j);
        const float x = src[at];
        if (fp8) {
          const std::uint8_t c = fp8::encode(x / d, format_of(type), fp8::Overflow::satfinite);
          static_cast<std::uint8_t*>(codes)[at] = c;
          lost += x != 0.0f && (c & 0x7F) == 0;
        } else {
          store(codes, type, at, x / d);
          lost += x != 0.0f && load(codes, type, at) == 0.0f;
        }
      }
    }
    for (int off = 16; off > 0; off /= 2) lost += __shfl_xor_sync(0xffffffffu, lost, off);
    if ((threadIdx.x & 31) == 0 && lost) atomicAdd(underflow, lost);
  }
}

}  // namespace

void fill_source(float* src, const OperandIndex& idx, const ScaleGeometry& geo, std::int64_t count, InputPattern pattern,
                 std::uint64_t seed, cudaStream_t s) {
  fill_source_kernel<<<grid_for(count, 256), 256, 0, s>>>(src, idx, geo, count, pattern, seed);
}

void block_amax(const float* src, const OperandIndex& idx, const ScaleGeometry& geo, float* amax, cudaStream_t s) {
  block_amax_kernel<<<grid_for(geo.outer * ((geo.inner + kRun - 1) / kRun), 256), 256, 0, s>>>(src, idx, geo, amax);
}

void block_scales(const float* amax, const ScaleGeometry& geo, DType fmt, float* dequant, void* lt, cudaStream_t s) {
  block_scales_kernel<<<grid_for(geo.blocks(), 256), 256, 0, s>>>(amax, geo, fmt, dequant, lt);
}

void random_block_scales(const ScaleGeometry& geo, float base, std::uint64_t seed, float* dequant, void* lt, cudaStream_t s) {
  random_block_scales_kernel<<<grid_for(geo.blocks(), 256), 256, 0, s>>>(geo, base, seed, dequant, lt);
}

void quantize_operand(const float* src, const OperandIndex& idx, const ScaleGeometry& geo, const float* dequant, void* codes, DType type,
                      unsigned long long* underflow, cudaStream_t s) {
  quantize_kernel<<<grid_for(geo.outer * ((geo.inner + kRun - 1) / kRun), 256), 256, 0, s>>>(src, idx, geo, dequant, codes, type,
                                                                                             underflow);
}

}  // namespace fp8scope::gemm
