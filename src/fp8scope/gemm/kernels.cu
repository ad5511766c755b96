#include "fp8scope/gemm/kernels.cuh"

#include "fp8scope/gemm/element_io.cuh"

namespace fp8scope::gemm {
namespace {

__global__ void fill_normal_kernel(void* p, DType t, std::int64_t count, float scale, std::uint64_t seed) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count; i += std::int64_t(gridDim.x) * blockDim.x)
    store(p, t, i, normal_at(seed, i) * scale);
}

__device__ __forceinline__ float gelu_tanh(float x) { return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))); }

// One thread per output (row i, sampled column jj); 16x16 tiles of op(A) and op(B) staged in
// shared memory. Plain on purpose: it is the oracle, not a competitor.
constexpr int kTile = 16;
__global__ void reference_kernel(ReferenceArgs r) {
  __shared__ float as[kTile][kTile + 1];
  __shared__ float bs[kTile][kTile + 1];
  const std::int64_t i = blockIdx.x * std::int64_t(kTile) + threadIdx.x;
  const std::int64_t jj = blockIdx.y * std::int64_t(kTile) + threadIdx.y;
  const std::int64_t bb = blockIdx.z;
  const void* a = static_cast<const char*>(r.a);
  const void* b = static_cast<const char*>(r.b);
  float acc = 0.0f;
  for (std::int64_t k0 = 0; k0 < r.k; k0 += kTile) {
    // as[x][y] = op(A)[blockrow + x][k0 + y]; bs[x][y] = op(B)[k0 + x][col(jj_y)]
    const std::int64_t ai = blockIdx.x * std::int64_t(kTile) + threadIdx.x, ak = k0 + threadIdx.y;
    float av = 0.0f;
    if (ai < r.m && ak < r.k) {
      const std::int64_t idx = bb * r.stride_a + (r.trans_a ? ak + ai * r.lda : ai + ak * r.lda);
      av = load(a, r.a_type, idx) * r.a_dequant;
      if (r.a_block_dequant) av *= r.a_block_dequant[r.a_geo.block_of(ai, ak)];
    }
    as[threadIdx.x][threadIdx.y] = av;
    const std::int64_t bk = k0 + threadIdx.x;
    float bv = 0.0f;
    if (jj < r.ncols && bk < r.k) {
      const std::int64_t j = r.cols[jj];
      const std::int64_t idx = bb * r.stride_b + (r.trans_b ? j + bk * r.ldb : bk + j * r.ldb);
      bv = load(b, r.b_type, idx) * r.b_dequant;
      if (r.b_block_dequant) bv *= r.b_block_dequant[r.b_geo.block_of(j, bk)];
    }
    bs[threadIdx.x][threadIdx.y] = bv;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTile; ++kk) acc = fmaf(as[threadIdx.x][kk], bs[kk][threadIdx.y], acc);
    __syncthreads();
  }
  if (i >= r.m || jj >= r.ncols) return;
  if (adds_bias(r.epilogue)) acc += load(r.bias, r.bias_type, i);
  if (applies_gelu(r.epilogue)) acc = gelu_tanh(acc);
  r.out[(bb * r.ncols + jj) * r.m + i] = acc;
}

__global__ void abs_max_kernel(const float* x, std::int64_t n, float* amax) {
  float m = 0.0f;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    m = fmaxf(m, fabsf(x[i]));
  for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  // Non-negative floats order like their bit patterns, so an integer max is a float max.
  if ((threadIdx.x & 31) == 0) atomicMax(reinterpret_cast<unsigned*>(amax), __float_as_uint(m));
}

__global__ void compare_sampled_kernel(CompareArgs c, CompareResult* res) {
  double e2 = 0, r2 = 0;
  const std::int64_t total = c.batch * c.ncols * c.m;
  for (std::int64_t t = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; t < total; t += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t i = t % c.m, jj = (t / c.m) % c.ncols, bb = t / (c.m * c.ncols);
    const float d = load(c.d, c.d_type, bb * c.stride_d + c.cols[jj] * c.ldd + i) * c.d_dequant;
    const float ref = c.ref[t];
    if (isfinite(d)) e2 += double(d - ref) * double(d - ref);
    r2 += double(ref) * double(ref);
  }
  for (int o = 16; o > 0; o /= 2) {
    e2 += __shfl_xor_sync(0xffffffffu, e2, o);
    r2 += __shfl_xor_sync(0xffffffffu, r2, o);
  }
  if ((threadIdx.x & 31) == 0) {
    atomicAdd(&res->err_sq, e2);
    atomicAdd(&res->ref_sq, r2);
  }
}

__global__ void line_errors_kernel(CompareArgs c, LineErrors out) {
  const std::int64_t total = c.batch * c.ncols * c.m;
  for (std::int64_t t = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; t < total; t += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t i = t % c.m, jj = (t / c.m) % c.ncols, bb = t / (c.m * c.ncols);
    const float d = load(c.d, c.d_type, bb * c.stride_d + c.cols[jj] * c.ldd + i) * c.d_dequant;
    const double ref = c.ref[t], e = isfinite(d) ? double(d) - ref : ref;
    atomicAdd(out.row_err2 + i, e * e);
    atomicAdd(out.row_ref2 + i, ref * ref);
    atomicAdd(out.col_err2 + jj, e * e);
    atomicAdd(out.col_ref2 + jj, ref * ref);
  }
}

__global__ void scan_output_kernel(CompareArgs c, CompareResult* res) {
  unsigned long long bad = 0;
  float mx = 0.0f;
  const std::int64_t total = c.batch * c.n * c.m;
  for (std::int64_t t = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; t < total; t += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t i = t % c.m, j = (t / c.m) % c.n, bb = t / (c.m * c.n);
    const float d = load(c.d, c.d_type, bb * c.stride_d + j * c.ldd + i) * c.d_dequant;
    if (!isfinite(d))
      ++bad;
    else
      mx = fmaxf(mx, fabsf(d));
  }
  for (int o = 16; o > 0; o /= 2) {
    bad += __shfl_xor_sync(0xffffffffu, bad, o);
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  }
  if ((threadIdx.x & 31) == 0) {
    if (bad) atomicAdd(&res->nonfinite, bad);
    atomicMax(reinterpret_cast<unsigned*>(&res->max_abs_d), __float_as_uint(mx));
  }
}

}  // namespace

void fill_normal(void* p, DType t, std::int64_t count, float quant_scale, std::uint64_t seed, cudaStream_t s) {
  fill_normal_kernel<<<grid_for(count, 256), 256, 0, s>>>(p, t, count, quant_scale, seed);
}

void reference_gemm(const ReferenceArgs& args, cudaStream_t s) {
  dim3 block(kTile, kTile);
  dim3 grid(unsigned((args.m + kTile - 1) / kTile), unsigned((args.ncols + kTile - 1) / kTile), unsigned(args.batch));
  reference_kernel<<<grid, block, 0, s>>>(args);
}

void abs_max(const float* x, std::int64_t n, float* amax, cudaStream_t s) { abs_max_kernel<<<grid_for(n, 256), 256, 0, s>>>(x, n, amax); }

void compare(const CompareArgs& args, CompareResult* result, cudaStream_t s) {
  compare_sampled_kernel<<<grid_for(args.batch * args.ncols * args.m, 256), 256, 0, s>>>(args, result);
  scan_output_kernel<<<grid_for(args.batch * args.n * args.m, 256), 256, 0, s>>>(args, result);
}

void line_errors(const CompareArgs& args, const LineErrors& out, cudaStream_t s) {
  line_errors_kernel<<<grid_for(args.batch * args.ncols * args.m, 256), 256, 0, s>>>(args, out);
}

}  // namespace fp8scope::gemm
