// Elementwise pieces: GELU (tanh approximation) forward/backward, residual adds, bias gradient.
#include "fp8scope/core/fast_math.cuh"
#include "fp8scope/fp8/cast_kernels.cuh"
#include "fp8scope/gpu_model/kernels.cuh"

#include <algorithm>

namespace fp8scope::gpu_model {
namespace {

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluA = 0.044715f;

// 0.5 (1 + tanh(u)) is the logistic function of 2u, 1 / (1 + e) with e = exp(-2u): one
// hardware exponential and one reciprocal instead of tanhf's software sequence (which made
// the fused GELU casts issue-bound), and accurate in relative terms over the whole range,
// where 1 + tanh(u) with an approximate tanh loses all digits in the negative tail. The
// exponent is capped at 2^126 (u < -43.7, where tanhf already gives exactly -1) so that
// e * s stays finite: s is then 0, as 1 + tanhf(u) was.
struct GeluParts {
  float s, e, du;  // s = 0.5 (1 + tanh(u)), e * s = 1 - s, du = u'(x)
};
__device__ __forceinline__ GeluParts gelu_parts(float x) {
  const float x2 = x * x;
  const float e = core::exp2_fast(fminf(-2.0f * core::kLog2e * kGeluC * x * fmaf(kGeluA, x2, 1.0f), 126.0f));
  const float s = __fdividef(1.0f, 1.0f + e);
  return {s, e, kGeluC * fmaf(3.0f * kGeluA, x2, 1.0f)};
}

__device__ __forceinline__ float gelu_value(float x) { return x * gelu_parts(x).s; }

// d/dx [x s(u)] = s + x * 2 s (1 - s) u'.
__device__ __forceinline__ float gelu_grad(float x) {
  const GeluParts p = gelu_parts(x);
  return fmaf(2.0f * x * p.s * (p.e * p.s), p.du, p.s);
}

// The GELU's input as the backward reads it when it is kept in E4M3 (gelu_input_e4m3): unit
// scale, saturating (see model::Fp8ModelConfig::gelu_input_e4m3), 8 values per 8 bytes.
__device__ __forceinline__ uint2 e4m3_unit8(const uint4& raw) {
  const __nv_bfloat162_raw* h = reinterpret_cast<const __nv_bfloat162_raw*>(&raw);
  unsigned c[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) c[i] = __nv_cvt_bfloat16raw2_to_fp8x2(h[i], __NV_SATFINITE, __NV_E4M3);
  return make_uint2(c[0] | c[1] << 16, c[2] | c[3] << 16);
}
__device__ __forceinline__ std::uint8_t e4m3_unit(bf16 x) {
  return std::uint8_t(__nv_cvt_bfloat16raw_to_fp8(static_cast<__nv_bfloat16_raw>(x), __NV_SATFINITE, __NV_E4M3));
}
__device__ __forceinline__ void unpack8_e4m3(const uint2& raw, float* out) {
  const unsigned w[2] = {raw.x, raw.y};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(w[i / 2] >> (16 * (i % 2))), __NV_E4M3);
    const float2 f = __half22float2(__half2(h));
    out[2 * i] = f.x, out[2 * i + 1] = f.y;
  }
}

// The GELU of BF16 pre-activations cast to FP8 from FP32 (no BF16 rounding in between), for
// the vector and tile loops of cast_kernels.cuh: GeluCastOp<K>{{scale}, {pre}, pre8}, which
// also writes the pre-activations in E4M3 to pre8 where it is not null.
template <class K>
struct GeluCastOp : fp8::ScaledCast<fp8::CastThresholds, K>, fp8::Bf16Input {
  static constexpr bool kStats = true;
  std::uint8_t* pre8 = nullptr;
  __device__ void side(std::int64_t i, const Raw& r) const {
    if (pre8) *reinterpret_cast<uint2*>(pre8 + i) = e4m3_unit8(r);
  }
  __device__ void side_one(std::int64_t i) const {
    if (pre8) pre8[i] = e4m3_unit(in[i]);
  }
  __device__ uint2 cast(const Raw& r, fp8::MagnitudeStats& st, float* hp) const {
    float y[8];
    fp8::unpack8(r, y);
#pragma unroll
    for (int e = 0; e < 8; ++e) y[e] = gelu_value(y[e]);
    if (hp)
#pragma unroll
      for (int e = 0; e < 8; ++e) hp[e] = y[e];
    return fp8::cast8_f32<K>(y, this->scale, this->th, st);
  }
  __device__ std::uint8_t cast_one(std::int64_t i, fp8::LocalStats& st) const {
    return this->cast_value(gelu_value(__bfloat162float(in[i])), st);
  }
};

// The GELU backward (dout * gelu'(pre)) rounded to BF16, as gelu_backward writes it, then
// cast: the FP8 gradient and the bias sums are those of the unfused gelu_backward +
// quantize_transpose + bias gradient, without the BF16 gradient ever reaching memory:
// DgeluCastOp<K>{{scale}, dout, pre}.
template <class K>
__device__ __forceinline__ uint2 dgelu_cast8(const float (&d)[8], const float (&x)[8], float scale, const fp8::Bf16Thresholds& th,
                                             fp8::MagnitudeStats& st, float* hp) {
  uint4 g;
  bf16* gv = reinterpret_cast<bf16*>(&g);
#pragma unroll
  for (int e = 0; e < 8; ++e) gv[e] = __float2bfloat16(gelu_grad(x[e]) * d[e]);
  if (hp) fp8::unpack8(g, hp);
  return fp8::cast8_bf16<K>(g, scale, th, st);
}
template <class K>
struct DgeluCastOp : fp8::ScaledCast<fp8::Bf16Thresholds, K> {
  struct Raw {  // stream 0: the gradient, stream 1: the pre-activation
    uint4 d, x;
  };
  static constexpr int kStreams = 2, kVecBytes = 16;
  static constexpr bool kStats = true;
  const bf16* dout;
  const bf16* pre;
  __device__ const void* stream(int s) const { return s == 0 ? static_cast<const void*>(dout) : static_cast<const void*>(pre); }
  __device__ uint2 cast(const Raw& r, fp8::MagnitudeStats& st, float* hp) const {
    float d[8], x[8];
    fp8::unpack8(r.d, d);
    fp8::unpack8(r.x, x);
    return dgelu_cast8<K>(d, x, this->scale, this->th, st, hp);
  }
};
// The same with the pre-activation kept in E4M3: the gradient is staged, the 8 bytes of
// pre-activations per vector are the tile loop's extra input. DgeluE4m3CastOp<K>{{scale}, {dout}, pre8}.
template <class K>
struct DgeluE4m3CastOp : fp8::ScaledCast<fp8::Bf16Thresholds, K>, fp8::Bf16Input {
  using Extra = uint2;
  static constexpr bool kStats = true;
  const std::uint8_t* pre8;
  __device__ Extra extra(std::int64_t i) const { return *reinterpret_cast<const uint2*>(pre8 + i); }
  __device__ uint2 cast(const Raw& r, const Extra& e, fp8::MagnitudeStats& st, float* hp) const {
    float d[8], x[8];
    fp8::unpack8(r, d);
    unpack8_e4m3(e, x);
    return dgelu_cast8<K>(d, x, this->scale, this->th, st, hp);
  }
};

// 8 BF16 values (16 bytes) per thread and load; the tail (n not a multiple of 8) one by one.
// pre8 (may be null): the inputs in E4M3 too. out may be inp (each thread reads its values
// before it writes them).
__global__ void gelu_forward_kernel(bf16* out, std::uint8_t* pre8, const bf16* inp, std::int64_t n) {
  const std::int64_t base = (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) * 8;
  if (base + 8 <= n) {
    uint4 raw = *reinterpret_cast<const uint4*>(inp + base);
    const bf16* x = reinterpret_cast<const bf16*>(&raw);
    uint4 res;
    bf16* y = reinterpret_cast<bf16*>(&res);
#pragma unroll
    for (int j = 0; j < 8; ++j) y[j] = __float2bfloat16(gelu_value(__bfloat162float(x[j])));
    if (pre8) *reinterpret_cast<uint2*>(pre8 + base) = e4m3_unit8(raw);
    *reinterpret_cast<uint4*>(out + base) = res;
  } else {
    for (std::int64_t i = base; i < n; ++i) {
      const bf16 x = inp[i];
      if (pre8) pre8[i] = e4m3_unit(x);
      out[i] = __float2bfloat16(gelu_value(__bfloat162float(x)));
    }
  }
}

// The pre-activations in BF16 (bf16) or E4M3 (std::uint8_t); dinp may be dout.
__device__ __forceinline__ void load8(const bf16* p, float* x) { fp8::unpack8(*reinterpret_cast<const uint4*>(p), x); }
__device__ __forceinline__ void load8(const std::uint8_t* p, float* x) { unpack8_e4m3(*reinterpret_cast<const uint2*>(p), x); }
__device__ __forceinline__ float load1(const bf16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ float load1(const std::uint8_t* p) { return fp8::decode(*p, fp8::Format::e4m3); }

template <class Pre>
__global__ void gelu_backward_kernel(bf16* dinp, const Pre* inp, const bf16* dout, std::int64_t n) {
  const std::int64_t base = (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) * 8;
  if (base + 8 <= n) {
    float x[8];
    load8(inp + base, x);
    uint4 rd = *reinterpret_cast<const uint4*>(dout + base);
    const bf16* d = reinterpret_cast<const bf16*>(&rd);
    uint4 res;
    bf16* g = reinterpret_cast<bf16*>(&res);
#pragma unroll
    for (int j = 0; j < 8; ++j) g[j] = __float2bfloat16(gelu_grad(x[j]) * __bfloat162float(d[j]));
    *reinterpret_cast<uint4*>(dinp + base) = res;
  } else {
    for (std::int64_t i = base; i < n; ++i) dinp[i] = __float2bfloat16(gelu_grad(load1(inp + i)) * __bfloat162float(dout[i]));
  }
}

// Eight elements (16 bytes) per thread, as the GELU kernels; the buffers are whole allocations.
__global__ void residual_kernel(bf16* out, const bf16* a, const bf16* b, std::int64_t n) {
  const std::int64_t base = (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) * 8;
  if (base + 8 <= n) {
    const uint4 ra = *reinterpret_cast<const uint4*>(a + base), rb = *reinterpret_cast<const uint4*>(b + base);
    const __nv_bfloat162* x = reinterpret_cast<const __nv_bfloat162*>(&ra);
    const __nv_bfloat162* y = reinterpret_cast<const __nv_bfloat162*>(&rb);
    uint4 res;
    __nv_bfloat162* z = reinterpret_cast<__nv_bfloat162*>(&res);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 u = __bfloat1622float2(x[j]), v = __bfloat1622float2(y[j]);
      z[j] = __floats2bfloat162_rn(u.x + v.x, u.y + v.y);
    }
    *reinterpret_cast<uint4*>(out + base) = res;
  } else {
    for (std::int64_t i = base; i < n; ++i) out[i] = __float2bfloat16(__bfloat162float(a[i]) + __bfloat162float(b[i]));
  }
}

// The bias gradient: column sums of dout (N x OC) as per-row-block partials, one per column
// and block row (summed by column_sum_add in a fixed order, so the result does not depend on
// scheduling). Where OC % 8 == 0 a thread sums 8 columns with 16-byte loads (a block: 256
// columns x 8 row phases); the 2-byte loads of one column per thread took 50 us for a
// 16384 x 3072 gradient that moves 100 MB. Other widths: one column per thread.
// Row blocks: enough blocks for about one wave of 8 per SM on an H100/H200 (132 SMs), so a
// narrow gradient keeps as many loads in flight as a wide one (128 row blocks gave a 768-wide
// one 384 blocks: 1.2 TB/s); at most kBiasRowBlocks (the scratch holds that many partial rows).
// Against two waves with four loads in flight, measured side by side on an H200: 16384 x 3072
// 39.6 -> 37.9 us, 16384 x 768 15.8 -> 16.0 us.
constexpr int kBiasRowBlocks = 512, kBiasBlocksWanted = 132 * 8, kBiasLoads = 8;

int bias_row_blocks(int N, int col_blocks) {
  const int want = (kBiasBlocksWanted + col_blocks - 1) / col_blocks;
  return std::max(1, std::min({want, kBiasRowBlocks, (N + 7) / 8}));
}

__global__ void bias_backward_vec_kernel(float* partial, const bf16* dout, int N, int OC) {
  __shared__ float part[8][256];
  core::allow_dependent_launch();  // column_sum_add's blocks may start and wait
  const int c = (blockIdx.x * 32 + threadIdx.x) * 8;
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  if (c < OC) {
    // kBiasLoads rows' loads issued before any is summed (a missing row reads as +0), so each
    // thread keeps up to 128 bytes in flight; a plain unrolled loop issued them one at a time.
    const int stride = 8 * int(gridDim.y);
    for (int n0 = blockIdx.y * 8 + threadIdx.y; n0 < N; n0 += kBiasLoads * stride) {
      uint4 raw[kBiasLoads];
#pragma unroll
      for (int u = 0; u < kBiasLoads; ++u) {
        const int n = n0 + u * stride;
        raw[u] = n < N ? *reinterpret_cast<const uint4*>(dout + std::int64_t(n) * OC + c) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kBiasLoads; ++u) {
        float v[8];
        fp8::unpack8(raw[u], v);
#pragma unroll
        for (int e = 0; e < 8; ++e) s[e] += v[e];
      }
    }
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) part[threadIdx.y][threadIdx.x * 8 + e] = s[e];
  __syncthreads();
  const int t = threadIdx.y * 32 + threadIdx.x, col = blockIdx.x * 256 + t;
  if (col < OC) {
    float sum = 0;
#pragma unroll
    for (int r = 0; r < 8; ++r) sum += part[r][t];
    partial[std::int64_t(blockIdx.y) * OC + col] = sum;
  }
}

__global__ void bias_backward_kernel(float* partial, const bf16* dout, int N, int OC) {
  __shared__ float part[8][32];
  core::allow_dependent_launch();
  const int col = blockIdx.x * 32 + threadIdx.x;
  float s = 0;
  if (col < OC)
    for (int n = blockIdx.y * 8 + threadIdx.y; n < N; n += 8 * gridDim.y) s += __bfloat162float(dout[std::int64_t(n) * OC + col]);
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < OC) {
    for (int r = 1; r < 8; ++r) s += part[r][threadIdx.x];
    partial[std::int64_t(blockIdx.y) * OC + col] = s;
  }
}

unsigned blocks(std::int64_t n) { return unsigned((n + 255) / 256); }

}  // namespace

// The vector loads need 16-byte aligned tensors (cudaMalloc'd buffers and offsets that are
// multiples of 8 elements, as every activation of the model is).
void gelu_forward(bf16* out, const bf16* inp, std::int64_t n, cudaStream_t s, std::uint8_t* pre8) {
  gelu_forward_kernel<<<blocks((n + 7) / 8), 256, 0, s>>>(out, pre8, inp, n);
}
void gelu_backward(bf16* dinp, const bf16* inp, const bf16* dout, std::int64_t n, cudaStream_t s) {
  gelu_backward_kernel<<<blocks((n + 7) / 8), 256, 0, s>>>(dinp, inp, dout, n);
}
void gelu_backward(bf16* dinp, const std::uint8_t* pre8, const bf16* dout, std::int64_t n, cudaStream_t s) {
  gelu_backward_kernel<<<blocks((n + 7) / 8), 256, 0, s>>>(dinp, pre8, dout, n);
}
void residual_forward(bf16* out, const bf16* a, const bf16* b, std::int64_t n, cudaStream_t s) {
  residual_kernel<<<blocks((n + 7) / 8), 256, 0, s>>>(out, a, b, n);
}
void bias_backward(float* dbias, float* scratch, const bf16* dout, int N, int OC, cudaStream_t s) {
  const bool vec = OC % 8 == 0;
  const int rows = bias_row_blocks(N, vec ? (OC + 255) / 256 : (OC + 31) / 32);
  if (vec) {
    bias_backward_vec_kernel<<<dim3(unsigned((OC + 255) / 256), unsigned(rows)), dim3(32, 8), 0, s>>>(scratch, dout, N, OC);
  } else {
    bias_backward_kernel<<<dim3(unsigned((OC + 31) / 32), unsigned(rows)), dim3(32, 8), 0, s>>>(scratch, dout, N, OC);
  }
  column_sum_add(dbias, scratch, rows, OC, OC, s);
}
std::int64_t bias_backward_scratch_floats(int OC) { return std::int64_t(kBiasRowBlocks) * OC; }

void gelu_forward_fp8(std::uint8_t* out, const bf16* inp, std::int64_t n, const float* scale, fp8::Format f, fp8::Overflow o,
                      fp8::CastStats* stats, cudaStream_t s, std::uint8_t* pre8) {
  fp8::with_kind(f, o, [&](auto k) {
    using Op = GeluCastOp<decltype(k)>;
    fp8::vector_cast_kernel<<<fp8::cast_blocks((n + 31) / 32, 256), 256, 0, s>>>(Op{{scale}, {inp}, pre8}, out, n, stats);
  });
}

void gelu_cast_transpose(std::uint8_t* out, std::uint8_t* out_t, const bf16* pre, int rows, int cols, const float* scale, fp8::Format f,
                         fp8::Overflow o, fp8::CastStats* stats, cudaStream_t s, std::uint8_t* pre8) {
  fp8::with_kind(f, o, [&](auto k) {
    using Op = GeluCastOp<decltype(k)>;
    fp8::launch_tile_cast_transpose<Op, false>(Op{{scale}, {pre}, pre8}, out, out_t, nullptr, rows, cols, stats, s);
  });
}

void dgelu_cast_transpose_dbias(std::uint8_t* out, std::uint8_t* out_t, float* bias_partial, const bf16* dout, const bf16* pre, int rows,
                                int cols, const float* scale, fp8::Format f, fp8::Overflow o, fp8::CastStats* stats, cudaStream_t s) {
  fp8::with_kind(f, o, [&](auto k) {
    using Op = DgeluCastOp<decltype(k)>;
    fp8::launch_tile_cast_transpose<Op, true>(Op{{scale}, dout, pre}, out, out_t, bias_partial, rows, cols, stats, s);
  });
}
void dgelu_cast_transpose_dbias(std::uint8_t* out, std::uint8_t* out_t, float* bias_partial, const bf16* dout, const std::uint8_t* pre8,
                                int rows, int cols, const float* scale, fp8::Format f, fp8::Overflow o, fp8::CastStats* stats,
                                cudaStream_t s) {
  fp8::with_kind(f, o, [&](auto k) {
    using Op = DgeluE4m3CastOp<decltype(k)>;
    fp8::launch_tile_cast_transpose<Op, true>(Op{{scale}, {dout}, pre8}, out, out_t, bias_partial, rows, cols, stats, s);
  });
}

}  // namespace fp8scope::gpu_model
