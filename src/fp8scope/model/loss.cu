// Fused softmax cross-entropy over the real vocabulary (the padded columns take no part), with
// its gradient: one block per row. The log-sum-exp is formed with an online maximum, and the
// gradient is exp(z - lse), so each logit takes one exponential per pass.
#include "fp8scope/fp8/cast_device.cuh"
#include "fp8scope/model/kernels.cuh"

#include <cfloat>

namespace fp8scope::model {
namespace {

// (m, s) pairs of running maximum and sum of exponentials combine as m = max,
// s = s_a e^(m_a - m) + s_b e^(m_b - m); an empty side (s == 0) contributes nothing.
__device__ __forceinline__ void combine(float& m, float& s, float m2, float s2) {
  const float mm = fmaxf(m, m2);
  s = (s == 0.0f ? 0.0f : s * __expf(m - mm)) + (s2 == 0.0f ? 0.0f : s2 * __expf(m2 - mm));
  m = mm;
}

// Every thread of the block gets the block's (m, s).
__device__ __forceinline__ void block_combine(float& m, float& s) {
  __shared__ float sm[32], ss[32];
  for (int o = 16; o > 0; o /= 2) combine(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  if (lane == 0) sm[warp] = m, ss[warp] = s;
  __syncthreads();
  m = lane < warps ? sm[lane] : -FLT_MAX;
  s = lane < warps ? ss[lane] : 0.0f;
  for (int o = 16; o > 0; o /= 2) combine(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
}

// Where the fast path puts the gradient, eight columns at a time: BF16, or (the FP8 LM head
// with delayed scaling) the FP8 codes of that BF16 gradient, with the cast's statistics, so the
// BF16 gradient never reaches memory and the head's backward only transposes the codes.
struct Bf16Grad {
  bf16* out;
  __device__ void setup() {}
  __device__ void store8(std::int64_t i, const float (&g)[8]) {
    uint4 packed;
    bf16* h = reinterpret_cast<bf16*>(&packed);
#pragma unroll
    for (int j = 0; j < 8; ++j) h[j] = __float2bfloat16(g[j]);
    *reinterpret_cast<uint4*>(out + i) = packed;
  }
  __device__ void finish() {}
};

struct Fp8Grad {
  std::uint8_t* out;
  const float* scale_ptr;
  fp8::Format f;
  fp8::Overflow o;
  fp8::CastStats* stats;
  float scale = 0.0f;
  fp8::CastThresholds th{};
  fp8::MagnitudeStats st{};
  __device__ void setup() {
    scale = *scale_ptr;
    th = fp8::cast_thresholds(scale, f);
  }
  __device__ void store8(std::int64_t i, const float (&g)[8]) {
    float y[8];  // the BF16 gradient's values: the codes and counts of casting the BF16 tensor
#pragma unroll
    for (int j = 0; j < 8; ++j) y[j] = __bfloat162float(__float2bfloat16(g[j]));
    *reinterpret_cast<uint2*>(out + i) = fp8::cast8_f32(y, scale, f, o, th, st);
  }
  __device__ void finish() { fp8::flush_block(st.local(), stats); }  // every thread of the block
};

// The fast path (Vp a multiple of 8 and a row that fits in shared memory, as at V = 50304):
// the row is read from memory once, 16 bytes per load, kept in shared memory for the
// gradient pass; one block per row, one block per SM.
constexpr int kRowThreads = 1024;

template <class Grad>
__global__ void __launch_bounds__(kRowThreads) cross_entropy_row_in_smem_kernel(float* losses, Grad grad, const float* logits,
                                                                               const int* targets, int N, int V, int Vp) {
  extern __shared__ float4 row4[];
  const std::int64_t row = blockIdx.x;
  const float4* z = reinterpret_cast<const float4*>(logits + row * Vp);
  const int V4 = Vp / 4;
  grad.setup();
  float m = -FLT_MAX, s = 0.0f;
#pragma unroll 4
  for (int i = threadIdx.x; i < V4; i += kRowThreads) {
    const float4 x = z[i];
    row4[i] = x;
    const int c = 4 * i;  // padded columns (c >= V) take no part
    const float a = c < V ? x.x : -INFINITY, b = c + 1 < V ? x.y : -INFINITY, d = c + 2 < V ? x.z : -INFINITY,
                e = c + 3 < V ? x.w : -INFINITY;
    const float mx = fmaxf(fmaxf(a, b), fmaxf(d, e));
    if (mx > m) s *= __expf(m - mx), m = mx;
    s += __expf(a - m) + __expf(b - m) + __expf(d - m) + __expf(e - m);
  }
  block_combine(m, s);  // its __syncthreads also publishes the row in shared memory
  const float lse = m + __logf(s), inv_n = 1.0f / N;
  const int target = targets[row];
  const float* zs = reinterpret_cast<const float*>(row4);
  if (threadIdx.x == 0) losses[row] = lse - zs[target];
  for (int i = threadIdx.x; i < V4 / 2; i += kRowThreads) {
    const float4 x0 = row4[2 * i], x1 = row4[2 * i + 1];
    const int c = 8 * i;
    float g[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float p = c + j < V ? __expf(g[j] - lse) : 0.0f;
      g[j] = (p - (c + j == target ? 1.0f : 0.0f)) * inv_n;
    }
    grad.store8(row * Vp + c, g);
  }
  grad.finish();
}

// Any V and Vp: one pass for the running max and the sum of exponentials (rescaled when the
// max moves), combined across the block; a second pass over memory writes the gradient.
__global__ void cross_entropy_kernel(float* losses, bf16* dlogits, const float* logits, const int* targets, int N, int V, int Vp) {
  const std::int64_t row = blockIdx.x;
  const float* z = logits + row * Vp;
  float m = -FLT_MAX, s = 0.0f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float x = z[v];
    if (x > m) s *= __expf(m - x), m = x;
    s += __expf(x - m);
  }
  block_combine(m, s);
  const int target = targets[row];
  const float lse = m + __logf(s), inv_n = 1.0f / N;
  if (threadIdx.x == 0) losses[row] = lse - z[target];
  for (int v = threadIdx.x; v < Vp; v += blockDim.x) {
    const float p = v < V ? __expf(z[v] - lse) : 0.0f;
    dlogits[row * Vp + v] = __float2bfloat16((p - (v == target ? 1.0f : 0.0f)) * inv_n);
  }
}

int max_smem_per_block() {
  static const int bytes = [] {
    int dev = 0, v = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    return v;
  }();
  return bytes;
}

bool row_fits(int Vp) { return Vp % 8 == 0 && std::size_t(Vp) * sizeof(float) <= std::size_t(max_smem_per_block()); }

template <class Grad>
void launch_row_in_smem(float* losses, Grad grad, const float* logits, const int* targets, int N, int V, int Vp, cudaStream_t s) {
  const int row_bytes = Vp * int(sizeof(float));
  cudaFuncSetAttribute(cross_entropy_row_in_smem_kernel<Grad>, cudaFuncAttributeMaxDynamicSharedMemorySize, row_bytes);
  cross_entropy_row_in_smem_kernel<Grad><<<N, kRowThreads, row_bytes, s>>>(losses, grad, logits, targets, N, V, Vp);
}

}  // namespace

void cross_entropy_forward_backward(float* losses, bf16* dlogits, const float* logits, const int* targets, int N, int V, int Vp,
                                    cudaStream_t s) {
  if (row_fits(Vp)) launch_row_in_smem(losses, Bf16Grad{dlogits}, logits, targets, N, V, Vp, s);
  else cross_entropy_kernel<<<N, 512, 0, s>>>(losses, dlogits, logits, targets, N, V, Vp);
}

bool cross_entropy_fp8_fits(int Vp) { return row_fits(Vp); }

void cross_entropy_forward_backward_fp8(float* losses, std::uint8_t* dlogits, const float* logits, const int* targets, int N, int V, int Vp,
                                        const float* scale, fp8::Format f, fp8::Overflow o, fp8::CastStats* stats, cudaStream_t s) {
  launch_row_in_smem(losses, Fp8Grad{dlogits, scale, f, o, stats}, logits, targets, N, V, Vp, s);
}

}  // namespace fp8scope::model
