#include "fp8scope/model/kernels.cuh"

namespace fp8scope::model {
namespace {

__global__ void encoder_forward_kernel(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe, int T, int C, std::int64_t total) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const std::int64_t bt = i / C;
  const int c = int(i % C), t = int(bt % T);
  out[i] = __float2bfloat16(__bfloat162float(wte[std::int64_t(tokens[bt]) * C + c]) + __bfloat162float(wpe[std::int64_t(t) * C + c]));
}

// Several positions can share a token, so the token-embedding gradient needs atomics.
__global__ void encoder_backward_kernel(float* dwte, float* dwpe, const bf16* dout, const int* tokens, int T, int C, std::int64_t total) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const std::int64_t bt = i / C;
  const int c = int(i % C), t = int(bt % T);
  const float d = __bfloat162float(dout[i]);
  atomicAdd(&dwte[std::int64_t(tokens[bt]) * C + c], d);
  atomicAdd(&dwpe[std::int64_t(t) * C + c], d);
}

}  // namespace

void encoder_forward(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe, int B, int T, int C, cudaStream_t s) {
  const std::int64_t total = std::int64_t(B) * T * C;
  encoder_forward_kernel<<<unsigned((total + 255) / 256), 256, 0, s>>>(out, tokens, wte, wpe, T, C, total);
}

void encoder_backward(float* dwte, float* dwpe, const bf16* dout, const int* tokens, int B, int T, int C, cudaStream_t s) {
  const std::int64_t total = std::int64_t(B) * T * C;
  encoder_backward_kernel<<<unsigned((total + 255) / 256), 256, 0, s>>>(dwte, dwpe, dout, tokens, T, C, total);
}

}  // namespace fp8scope::model
