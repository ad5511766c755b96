// Deterministic reductions: kernels that sum over rows write one partial per block, and
// these kernels add the partials up in a fixed order. Float atomics would make every run
// round differently; probe_recipe promises bit-identical reruns.
#include "fp8scope/core/dependent_launch.cuh"
#include "fp8scope/gpu_model/kernels.cuh"

namespace fp8scope::gpu_model {
namespace {

// 8 columns per block (one 32-byte sector per row), 32 threads per column each summing every
// 32nd row with eight loads in flight, then one of them adds the 32 sums in a fixed order.
// Narrow blocks: a few hundred partial rows of 768 columns still spread over ~100 SMs
// (32-column blocks used 24 and took 6.5 us for 3 MB on an H200).
constexpr int kSumCols = 8, kSumRowThreads = 32;

// Columns [0, split) add into lo, [split, cols) into hi (a LayerNorm's dw and db in one launch).
// A dependent launch: the partials' kernel may still be running when its blocks start.
__global__ void column_sum_add_kernel(float* lo, float* hi, int split, const float* partial, int rows, int cols, int ld) {
  __shared__ float sh[kSumRowThreads][kSumCols];
  core::wait_for_prerequisite_grid();
  const int c = blockIdx.x * kSumCols + threadIdx.x;
  float s = 0;
  if (c < cols) {
#pragma unroll 8
    for (int r = threadIdx.y; r < rows; r += kSumRowThreads) s += partial[std::int64_t(r) * ld + c];
  }
  sh[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float t = 0;
    for (int k = 0; k < kSumRowThreads; ++k) t += sh[k][threadIdx.x];
    (c < split ? lo[c] : hi[c - split]) += t;
  }
}

__global__ void sum_all_kernel(float* out, const float* partial, int n) {
  __shared__ float sh[1024];
  float s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (int(threadIdx.x) < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = sh[0];
}

}  // namespace

void column_sum_add_split(float* lo, float* hi, int split, const float* partial, int rows, int cols, int ld, cudaStream_t s) {
  core::launch_dependent(column_sum_add_kernel, dim3(unsigned((cols + kSumCols - 1) / kSumCols)), dim3(kSumCols, kSumRowThreads), s, lo, hi,
                         split, partial, rows, cols, ld);
}

void column_sum_add(float* dst, const float* partial, int rows, int cols, int ld, cudaStream_t s) {
  column_sum_add_split(dst, nullptr, cols, partial, rows, cols, ld, s);
}

void sum_all(float* out, const float* partial, int n, cudaStream_t s) { sum_all_kernel<<<1, 1024, 0, s>>>(out, partial, n); }

namespace {
__global__ void add_bf16_into_kernel(float* dst, const bf16* src, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) dst[i] += __bfloat162float(src[i]);
}
}  // namespace

void add_bf16_into(float* dst, const bf16* src, int n, cudaStream_t s) {
  if (n > 0) add_bf16_into_kernel<<<unsigned((n + 255) / 256), 256, 0, s>>>(dst, src, n);
}

namespace {
// A block a range; float4 stores where the range's ends are 16-byte aligned (the layout's
// tensors are mostly multiples of 4 floats), else one float at a time.
__global__ void zero_ranges_kernel(float* base, const model::FloatRange* ranges) {
  const model::FloatRange r = ranges[blockIdx.x];
  float* p = base + r.offset;
  if (r.offset % 4 == 0 && r.count % 4 == 0) {
    float4* q = reinterpret_cast<float4*>(p);
    for (std::int64_t i = threadIdx.x; i < r.count / 4; i += blockDim.x) q[i] = make_float4(0.f, 0.f, 0.f, 0.f);
  } else {
    for (std::int64_t i = threadIdx.x; i < r.count; i += blockDim.x) p[i] = 0.0f;
  }
}
}  // namespace

void zero_ranges(float* base, const model::FloatRange* ranges, int n, cudaStream_t s) {
  if (n > 0) zero_ranges_kernel<<<unsigned(n), 256, 0, s>>>(base, ranges);
}

}  // namespace fp8scope::gpu_model
