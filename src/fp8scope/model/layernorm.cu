// LayerNorm over C channels, one warp per row; statistics in FP32.
#include "fp8scope/model/kernels.cuh"

#include <cstdio>
#include <cstdlib>

namespace fp8scope::model {
namespace {

constexpr float kEps = 1e-5f;

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void layernorm_forward_kernel(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* w, const bf16* b, int N, int C) {
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const bf16* x = inp + std::int64_t(row) * C;
  float s = 0;
  for (int c = lane; c < C; c += 32) s += __bfloat162float(x[c]);
  const float m = warp_sum(s) / C;
  float v = 0;
  for (int c = lane; c < C; c += 32) {
    const float d = __bfloat162float(x[c]) - m;
    v += d * d;
  }
  const float r = rsqrtf(warp_sum(v) / C + kEps);
  for (int c = lane; c < C; c += 32)
    out[std::int64_t(row) * C + c] =
        __float2bfloat16((__bfloat162float(x[c]) - m) * r * __bfloat162float(w[c]) + __bfloat162float(b[c]));
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

// Each warp walks rows of the block's strip; every lane keeps its channels' dw/db partial sums
// in registers (channels lane, lane+32, ...; C <= 32 * kMaxChunks), so shared memory sees one
// add per channel and warp, and global memory one per channel and block.
constexpr int kMaxChunks = 32;  // C <= 1024

__global__ void layernorm_backward_kernel(bf16* dinp, float* dw, float* db, const bf16* dout, const bf16* inp, const bf16* w,
                                          const float* mean, const float* rstd, int N, int C, int rows_per_block) {
  extern __shared__ float shared[];
  float* sdw = shared;
  float* sdb = shared + C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) sdw[c] = sdb[c] = 0.0f;
  __syncthreads();
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int chunks = (C + 31) / 32;
  float acc_w[kMaxChunks], acc_b[kMaxChunks];
#pragma unroll
  for (int j = 0; j < kMaxChunks; ++j) acc_w[j] = acc_b[j] = 0.0f;
  const int first = blockIdx.x * rows_per_block;
  for (int row = first + warp; row < min(N, first + rows_per_block); row += warps) {
    const bf16* x = inp + std::int64_t(row) * C;
    const bf16* dy = dout + std::int64_t(row) * C;
    const float m = mean[row], r = rstd[row];
    float dnorm_mean = 0, dnorm_norm_mean = 0;
#pragma unroll
    for (int j = 0; j < kMaxChunks; ++j) {
      const int c = lane + 32 * j;
      if (j < chunks && c < C) {
        const float norm = (__bfloat162float(x[c]) - m) * r;
        const float dnorm = __bfloat162float(w[c]) * __bfloat162float(dy[c]);
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * norm;
      }
    }
    dnorm_mean = warp_sum(dnorm_mean) / C;
    dnorm_norm_mean = warp_sum(dnorm_norm_mean) / C;
#pragma unroll
    for (int j = 0; j < kMaxChunks; ++j) {
      const int c = lane + 32 * j;
      if (j < chunks && c < C) {
        const float norm = (__bfloat162float(x[c]) - m) * r;
        const float g = __bfloat162float(dy[c]);
        const float dnorm = __bfloat162float(w[c]) * g;
        acc_b[j] += g;
        acc_w[j] += norm * g;
        const std::int64_t i = std::int64_t(row) * C + c;
        dinp[i] = __float2bfloat16(__bfloat162float(dinp[i]) + (dnorm - dnorm_mean - norm * dnorm_norm_mean) * r);
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kMaxChunks; ++j) {
    const int c = lane + 32 * j;
    if (j < chunks && c < C) {
      atomicAdd(&sdw[c], acc_w[j]);
      atomicAdd(&sdb[c], acc_b[j]);
    }
  }
  __syncthreads();
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    atomicAdd(&dw[c], sdw[c]);
    atomicAdd(&db[c], sdb[c]);
  }
}

}  // namespace

void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* w, const bf16* b, int N, int C, cudaStream_t s) {
  const int rows_per_block = 8;
  layernorm_forward_kernel<<<(N + rows_per_block - 1) / rows_per_block, 32 * rows_per_block, 0, s>>>(out, mean, rstd, inp, w, b, N, C);
}

void layernorm_backward(bf16* dinp, float* dw, float* db, const bf16* dout, const bf16* inp, const bf16* w, const float* mean,
                        const float* rstd, int N, int C, cudaStream_t s) {
  // The register partials cover C <= 1024 (GPT-2 up to d=1024); wider models need another split.
  if (C > 32 * kMaxChunks) {
    fprintf(stderr, "layernorm_backward: C=%d is above %d\n", C, 32 * kMaxChunks);
    abort();
  }
  const int rows_per_block = 128;
  layernorm_backward_kernel<<<(N + rows_per_block - 1) / rows_per_block, 256, 2 * C * sizeof(float), s>>>(
      dinp, dw, db, dout, inp, w, mean, rstd, N, C, rows_per_block);
}

}  // namespace fp8scope::model
