#pragma once
// The sources of the per-row / per-block casts fused with the GELU (kernels.cuh): the block
// cast kernel (fp8/block_cast_kernel.cuh) staging the producer's input and computing the BF16
// values the elementwise GELU kernels (mlp.cu) would have written, with the same device
// functions (gelu.cuh), so the codes, scales and statistics are those of the unfused pair.
// gelu_block_cast.cu (forward), dgelu_block_cast.cu and dgelu_e4m3_block_cast.cu (backward
// from the BF16 or the E4M3 pre-activations) each instantiate one source's casts, so they build
// in parallel.
#include "fp8scope/fp8/block_cast_kernel.cuh"
#include "fp8scope/gpu_model/gelu.cuh"
#include "fp8scope/gpu_model/kernels.cuh"

namespace fp8scope::gpu_model::gelu_block_cast_detail {

namespace bc = fp8::block_cast_detail;

// fc2's input: GELU of fc1's output (gelu_forward's values; GELU(0) = 0 keeps the padding),
// and where pre8 is not null the pre-activations in E4M3 at unit scale as gelu_forward writes
// them (the copy the backward then reads).
struct GeluSrc {
  const bf16* pre;
  std::uint8_t* pre8;
  static constexpr bool kTransforms = true, kWeights = false;
  __host__ __device__ const bf16* staged() const { return pre; }
  __host__ __device__ bool aligned16() const { return reinterpret_cast<std::uintptr_t>(pre8) % 8 == 0; }
  __host__ __device__ GeluSrc amax_pass() const { return {pre, nullptr}; }  // the side copy once, by the cast
  __device__ void transform(uint4 (&raw)[8], int rows, int cols, int r, int c, bool vec) const {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if (pre8 && r + 16 * i < rows) {
        std::uint8_t* dst = pre8 + std::size_t(r + 16 * i) * cols + c;
        if (vec && c + 8 <= cols) {
          *reinterpret_cast<uint2*>(dst) = e4m3_unit8(raw[i]);
        } else {
          for (int j = 0; j < 8 && c + j < cols; ++j) dst[j] = e4m3_unit(__ushort_as_bfloat16(std::uint16_t(bc::bf16_bits(raw[i], j))));
        }
      }
      raw[i] = map_bf16x8(raw[i], [](int, float x) { return gelu_value(x); });
    }
  }
};

// 8 pre-activations of row r from column c as floats (zeros outside the matrix), from BF16 or
// from the E4M3 copy (gelu_backward's two inputs).
__device__ __forceinline__ void load_pre8(const bf16* pre, int rows, int cols, int r, int c, bool vec, float (&x)[8]) {
  const uint4 raw = bc::load8(pre, rows, cols, r, c, vec);
#pragma unroll
  for (int j = 0; j < 8; ++j) x[j] = bc::bf16_at(raw, j);
}
__device__ __forceinline__ void load_pre8(const std::uint8_t* pre8, int rows, int cols, int r, int c, bool vec, float (&x)[8]) {
  uint2 raw = make_uint2(0, 0);
  if (r < rows && vec && c + 8 <= cols) {
    raw = *reinterpret_cast<const uint2*>(pre8 + std::size_t(r) * cols + c);
  } else {
    for (int j = 0; j < 8; ++j) {
      const unsigned b = r < rows && c + j < cols ? pre8[std::size_t(r) * cols + c + j] : 0u;
      (j < 4 ? raw.x : raw.y) |= b << (8 * (j % 4));
    }
  }
  unpack8_e4m3(raw, x);
}

// fc1's output gradient: dout * GELU'(pre) (gelu_backward's values), the pre-activations in
// BF16 or E4M3 (Pre). The gradient is staged, the pre-activations read where the transform
// needs them; dout = 0 keeps the padding zero.
template <class Pre>
struct DgeluSrc {
  const bf16* dout;
  const Pre* pre;
  static constexpr bool kTransforms = true, kWeights = false;
  __host__ __device__ const bf16* staged() const { return dout; }
  // 8 values a load: 16 bytes of BF16 or 8 of E4M3.
  __host__ __device__ bool aligned16() const { return reinterpret_cast<std::uintptr_t>(pre) % (8 * sizeof(Pre)) == 0; }
  __host__ __device__ DgeluSrc amax_pass() const { return *this; }
  __device__ void transform(uint4 (&raw)[8], int rows, int cols, int r, int c, bool vec) const {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      float x[8];
      load_pre8(pre, rows, cols, r + 16 * i, c, vec, x);
      raw[i] = map_bf16x8(raw[i], [&](int j, float d) { return gelu_grad(x[j]) * d; });
    }
  }
};

}  // namespace fp8scope::gpu_model::gelu_block_cast_detail
