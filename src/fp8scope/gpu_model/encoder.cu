#include "fp8scope/gpu_model/kernels.cuh"

namespace fp8scope::gpu_model {
namespace {

__global__ void encoder_forward_kernel(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe, int T, int C, std::int64_t total) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const std::int64_t bt = i / C;
  const int c = int(i % C), t = int(bt % T);
  const float pos = wpe ? __bfloat162float(wpe[std::int64_t(t) * C + c]) : 0.0f;  // Llama: no position table
  out[i] = __float2bfloat16(__bfloat162float(wte[std::int64_t(tokens[bt]) * C + c]) + pos);
}

// Deterministic backward without atomics. Positions: dwpe[t] sums the B rows of position t in
// order. Tokens: the host groups the positions by token (TokenBuckets); one block row per
// distinct token sums its positions in order.
__global__ void encoder_backward_wpe_kernel(float* dwpe, const bf16* dout, int B, int T, int C) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= std::int64_t(T) * C) return;
  float s = 0;
  for (int b = 0; b < B; ++b) s += __bfloat162float(dout[std::int64_t(b) * T * C + i]);
  dwpe[i] += s;
}

__global__ void encoder_backward_wte_kernel(float* dwte, const bf16* dout, const int* token, const int* start, const int* position, int C) {
  const int u = blockIdx.x;  // x: up to 2^31 - 1 distinct tokens
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0;
  for (int k = start[u]; k < start[u + 1]; ++k) s += __bfloat162float(dout[std::int64_t(position[k]) * C + c]);
  dwte[std::int64_t(token[u]) * C + c] += s;
}

}  // namespace

void encoder_forward(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe, int B, int T, int C, cudaStream_t s) {
  const std::int64_t total = std::int64_t(B) * T * C;
  encoder_forward_kernel<<<unsigned((total + 255) / 256), 256, 0, s>>>(out, tokens, wte, wpe, T, C, total);
}

void encoder_backward(float* dwte, float* dwpe, const bf16* dout, const int* bucket_token, const int* bucket_start,
                      const int* bucket_position, int buckets, int B, int T, int C, cudaStream_t s) {
  const std::int64_t tc = std::int64_t(T) * C;
  if (dwpe) encoder_backward_wpe_kernel<<<unsigned((tc + 255) / 256), 256, 0, s>>>(dwpe, dout, B, T, C);
  if (buckets > 0)
    encoder_backward_wte_kernel<<<dim3(unsigned(buckets), unsigned((C + 127) / 128)), 128, 0, s>>>(dwte, dout, bucket_token, bucket_start,
                                                                                                   bucket_position, C);
}

}  // namespace fp8scope::gpu_model
