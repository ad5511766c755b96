#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/gpu_model/kernels.cuh"

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_run_length_encode.cuh>
#include <cub/device/device_scan.cuh>

#include <algorithm>

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
// order. Tokens: the positions grouped by token (TokenBuckets, group_tokens); a block row
// walks the distinct tokens, each summing its positions in order. The count of distinct tokens
// is read on the device, so the launch does not depend on the batch (a CUDA graph replays it).
__global__ void encoder_backward_wpe_kernel(float* dwpe, const bf16* dout, int B, int T, int C) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= std::int64_t(T) * C) return;
  float s = 0;
  for (int b = 0; b < B; ++b) s += __bfloat162float(dout[std::int64_t(b) * T * C + i]);
  dwpe[i] += s;
}

__global__ void encoder_backward_wte_kernel(float* dwte, const bf16* dout, TokenBuckets tb, int C) {
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int buckets = *tb.count;
  for (int u = blockIdx.x; u < buckets; u += gridDim.x) {
    float s = 0;
    for (int k = tb.start[u]; k < tb.start[u + 1]; ++k) s += __bfloat162float(dout[std::int64_t(tb.position[k]) * C + c]);
    dwte[std::int64_t(tb.token[u]) * C + c] += s;
  }
}

__global__ void iota_kernel(int* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = i;
}

// Bits a radix sort of token ids below `vocab` needs.
int token_bits(int vocab) {
  int bits = 1;
  while (bits < 31 && (1 << bits) < vocab) ++bits;
  return bits;
}

}  // namespace

void encoder_forward(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe, int B, int T, int C, cudaStream_t s) {
  const std::int64_t total = std::int64_t(B) * T * C;
  encoder_forward_kernel<<<unsigned((total + 255) / 256), 256, 0, s>>>(out, tokens, wte, wpe, T, C, total);
}

void encoder_backward(float* dwte, float* dwpe, const bf16* dout, TokenBuckets buckets, int B, int T, int C, cudaStream_t s) {
  const std::int64_t tc = std::int64_t(T) * C;
  if (dwpe) encoder_backward_wpe_kernel<<<unsigned((tc + 255) / 256), 256, 0, s>>>(dwpe, dout, B, T, C);
  // Enough block rows to fill the GPU however many distinct tokens the batch has (at most
  // B*T, a few thousand in practice); each walks every gridDim.x-th token.
  const int rows = std::min(B * T, 2048);
  encoder_backward_wte_kernel<<<dim3(unsigned(rows), unsigned((C + 127) / 128)), 128, 0, s>>>(dwte, dout, buckets, C);
}

std::size_t group_tokens_temp_bytes(int N, int vocab) {
  std::size_t sort = 0, rle = 0, scan = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, sort, static_cast<const int*>(nullptr), static_cast<int*>(nullptr),
                                  static_cast<const int*>(nullptr), static_cast<int*>(nullptr), N, 0, token_bits(vocab));
  cub::DeviceRunLengthEncode::Encode(nullptr, rle, static_cast<const int*>(nullptr), static_cast<int*>(nullptr), static_cast<int*>(nullptr),
                                     static_cast<int*>(nullptr), N);
  cub::DeviceScan::InclusiveSum(nullptr, scan, static_cast<const int*>(nullptr), static_cast<int*>(nullptr), N);
  return std::max({sort, rle, scan, std::size_t(1)});
}

void fill_iota(int* out, int n, cudaStream_t s) { iota_kernel<<<unsigned((n + 255) / 256), 256, 0, s>>>(out, n); }

void group_tokens(TokenBuckets b, int* scratch, const int* tokens, const int* iota, int N, int vocab, void* temp, std::size_t temp_bytes,
                  cudaStream_t s) {
  int *sorted = scratch, *counts = scratch + N;
  // A stable sort by token of the positions 0..N-1: each token's positions stay in increasing
  // order, as the sum of its rows wants them.
  FP8S_CUDA(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, tokens, sorted, iota, b.position, N, 0, token_bits(vocab), s));
  // Counts past the last distinct token stay 0, so the scan leaves start[u] = N there.
  FP8S_CUDA(cudaMemsetAsync(counts, 0, std::size_t(N) * sizeof(int), s));
  FP8S_CUDA(cub::DeviceRunLengthEncode::Encode(temp, temp_bytes, sorted, b.token, counts, b.count, N, s));
  FP8S_CUDA(cudaMemsetAsync(b.start, 0, sizeof(int), s));
  FP8S_CUDA(cub::DeviceScan::InclusiveSum(temp, temp_bytes, counts, b.start + 1, N, s));
}

}  // namespace fp8scope::gpu_model
