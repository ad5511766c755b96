// fc1's output gradient cast straight from dout * GELU'(pre), the pre-activations in BF16
// (gelu_block_cast.cuh).
#include "fp8scope/gpu_model/gelu_block_cast.cuh"

namespace fp8scope::gpu_model {

void dgelu_block_cast_transpose_dbias(const bf16* dout, const bf16* pre, int rows, int cols, fp8::ScaleMode mode, fp8::Format f,
                                      fp8::Overflow o, fp8::BlockScaleRule rule, const fp8::BlockCastCopy& direct,
                                      const fp8::BlockCastCopy& transposed, float* scratch, float* bias_partial, cudaStream_t s) {
  fp8::block_cast_detail::cast_transpose_from(gelu_block_cast_detail::DgeluSrc<bf16>{dout, pre}, rows, cols, mode, f, o, rule, direct,
                                              transposed, scratch, bias_partial, s);
}

}  // namespace fp8scope::gpu_model
