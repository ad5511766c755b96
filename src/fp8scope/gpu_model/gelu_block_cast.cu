// fc2's FP8 input cast straight from the GELU of fc1's output (gelu_block_cast.cuh).
#include "fp8scope/gpu_model/gelu_block_cast.cuh"

namespace fp8scope::gpu_model {

void gelu_block_cast_transpose(const bf16* pre, int rows, int cols, fp8::ScaleMode mode, fp8::Format f, fp8::Overflow o,
                               fp8::BlockScaleRule rule, const fp8::BlockCastCopy& direct, const fp8::BlockCastCopy& transposed,
                               float* scratch, cudaStream_t s, std::uint8_t* pre8) {
  fp8::block_cast_detail::cast_transpose_from(gelu_block_cast_detail::GeluSrc{pre, pre8}, rows, cols, mode, f, o, rule, direct, transposed,
                                              scratch, nullptr, s);
}

}  // namespace fp8scope::gpu_model
