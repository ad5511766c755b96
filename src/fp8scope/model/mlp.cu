// Elementwise pieces: GELU (tanh approximation) forward/backward, residual adds, bias gradient.
#include "fp8scope/model/kernels.cuh"

namespace fp8scope::model {
namespace {

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/pi)

__global__ void gelu_forward_kernel(bf16* out, const bf16* inp, std::int64_t n) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float x = __bfloat162float(inp[i]);
  out[i] = __float2bfloat16(0.5f * x * (1.0f + tanhf(kGeluC * (x + 0.044715f * x * x * x))));
}

__global__ void gelu_backward_kernel(bf16* dinp, const bf16* inp, const bf16* dout, std::int64_t n) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float x = __bfloat162float(inp[i]);
  const float th = tanhf(kGeluC * (x + 0.044715f * x * x * x));
  const float du = kGeluC * (1.0f + 3.0f * 0.044715f * x * x);
  const float g = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
  dinp[i] = __float2bfloat16(g * __bfloat162float(dout[i]));
}

__global__ void residual_kernel(bf16* out, const bf16* a, const bf16* b, std::int64_t n) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16(__bfloat162float(a[i]) + __bfloat162float(b[i]));
}

// One thread per output channel column strip: 32 columns x 8 row groups per block, reduced
// in shared memory, one atomic per column and block.
__global__ void bias_backward_kernel(float* dbias, const bf16* dout, int N, int OC) {
  __shared__ float part[8][32];
  const int col = blockIdx.x * 32 + threadIdx.x;
  float s = 0;
  if (col < OC)
    for (int n = blockIdx.y * 8 + threadIdx.y; n < N; n += 8 * gridDim.y) s += __bfloat162float(dout[std::int64_t(n) * OC + col]);
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < OC) {
    for (int r = 1; r < 8; ++r) s += part[r][threadIdx.x];
    atomicAdd(&dbias[col], s);
  }
}

unsigned blocks(std::int64_t n) { return unsigned((n + 255) / 256); }

}  // namespace

void gelu_forward(bf16* out, const bf16* inp, std::int64_t n, cudaStream_t s) { gelu_forward_kernel<<<blocks(n), 256, 0, s>>>(out, inp, n); }
void gelu_backward(bf16* dinp, const bf16* inp, const bf16* dout, std::int64_t n, cudaStream_t s) {
  gelu_backward_kernel<<<blocks(n), 256, 0, s>>>(dinp, inp, dout, n);
}
void residual_forward(bf16* out, const bf16* a, const bf16* b, std::int64_t n, cudaStream_t s) {
  residual_kernel<<<blocks(n), 256, 0, s>>>(out, a, b, n);
}
void add_inplace(bf16* acc, const bf16* x, std::int64_t n, cudaStream_t s) { residual_kernel<<<blocks(n), 256, 0, s>>>(acc, acc, x, n); }
void bias_backward(float* dbias, const bf16* dout, int N, int OC, cudaStream_t s) {
  dim3 grid(unsigned((OC + 31) / 32), unsigned(min(64, (N + 7) / 8)));
  bias_backward_kernel<<<grid, dim3(32, 8), 0, s>>>(dbias, dout, N, OC);
}

}  // namespace fp8scope::model
