// The Llama block's elementwise kernels: SwiGLU (forward and backward, and each fused with the
// FP8 cast next to it) and rotary positions on q and k. 16-byte vectors of 8 BF16 values,
// arithmetic in FP32. (RMSNorm shares LayerNorm's kernels: layernorm.cu.)
#include "fp8scope/fp8/cast_kernels.cuh"
#include "fp8scope/gpu_model/kernels.cuh"

namespace fp8scope::gpu_model {
namespace {

// silu(x) = x sigmoid(x); sigmoid from one hardware exponential (relative error ~2^-22, far
// below the BF16 output's 2^-9). For x < -88 the exponential is inf and sigmoid 0, as it should.
__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + __expf(-x)); }

// SwiGLU and its two gradients in FP32, one expression each: the plain kernels and the ones
// fused with the FP8 cast must round the same values (a gpu test compares their codes).
__device__ __forceinline__ float swiglu_value(float g, float u) { return g * sigmoid(g) * u; }
// d gate = dy up silu'(gate), silu'(x) = s (1 + x (1 - s)); d up = dy silu(gate).
__device__ __forceinline__ float swiglu_dgate(float d, float g, float u) {
  const float s = sigmoid(g);
  return d * u * s * fmaf(g, 1.0f - s, 1.0f);
}
__device__ __forceinline__ float swiglu_dup(float d, float g) { return d * g * sigmoid(g); }

// Thread per 8 outputs of row n: gate at fc[n][f..], up at fc[n][F + f..].
__global__ void swiglu_forward_kernel(bf16* out, const bf16* fc, int N, int F) {
  const std::int64_t v = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x, per_row = F / 8;
  if (v >= std::int64_t(N) * per_row) return;
  const std::int64_t n = v / per_row, f = (v % per_row) * 8;
  float g[8], u[8], y[8];
  fp8::unpack8(*reinterpret_cast<const uint4*>(fc + n * 2 * F + f), g);
  fp8::unpack8(*reinterpret_cast<const uint4*>(fc + n * 2 * F + F + f), u);
#pragma unroll
  for (int e = 0; e < 8; ++e) y[e] = swiglu_value(g[e], u[e]);
  *reinterpret_cast<uint4*>(out + n * F + f) = fp8::pack8(y);
}

__global__ void swiglu_backward_kernel(bf16* dfc, const bf16* fc, const bf16* dout, int N, int F) {
  const std::int64_t v = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x, per_row = F / 8;
  if (v >= std::int64_t(N) * per_row) return;
  const std::int64_t n = v / per_row, f = (v % per_row) * 8;
  float g[8], u[8], d[8], dg[8], du[8];
  fp8::unpack8(*reinterpret_cast<const uint4*>(fc + n * 2 * F + f), g);
  fp8::unpack8(*reinterpret_cast<const uint4*>(fc + n * 2 * F + F + f), u);
  fp8::unpack8(*reinterpret_cast<const uint4*>(dout + n * F + f), d);
#pragma unroll
  for (int e = 0; e < 8; ++e) dg[e] = swiglu_dgate(d[e], g[e], u[e]), du[e] = swiglu_dup(d[e], g[e]);
  *reinterpret_cast<uint4*>(dfc + n * 2 * F + f) = fp8::pack8(dg);
  *reinterpret_cast<uint4*>(dfc + n * 2 * F + F + f) = fp8::pack8(du);
}

// The SwiGLU of fc1's output [N][2F] (gate, then up) rounded to BF16 as swiglu_forward writes
// it, then cast: fc2's FP8 input and its transpose are those of swiglu_forward +
// quantize_transpose, code for code, without the BF16 activation reaching memory.
// SwigluCastOp<K>{{scale}, fc, F}, tile loop over the [N][F] output.
template <class K>
struct SwigluCastOp : fp8::ScaledCast<fp8::Bf16Thresholds, K> {
  struct Raw {  // stream 0: gate, stream 1: up
    uint4 g, u;
  };
  static constexpr int kStreams = 2, kVecBytes = 16;
  static constexpr bool kStats = true;
  const bf16* fc;
  int F;
  __device__ const void* stream(int s) const { return fc + (s == 0 ? 0 : F); }
  __device__ std::int64_t offset(int, int r, int c) const { return std::int64_t(r) * 2 * F + c; }
  __device__ uint2 cast(const Raw& r, fp8::MagnitudeStats& st, float* hp) const {
    float g[8], u[8], y[8];
    fp8::unpack8(r.g, g);
    fp8::unpack8(r.u, u);
#pragma unroll
    for (int e = 0; e < 8; ++e) y[e] = swiglu_value(g[e], u[e]);
    const uint4 v = fp8::pack8(y);
    if (hp) fp8::unpack8(v, hp);
    return fp8::cast8_bf16<K>(v, this->scale, this->th, st);
  }
};

// SwiGLU's backward rounded to BF16 as swiglu_backward writes it, then cast: fc1's FP8 output
// gradient [N][2F] and its transpose without the BF16 gradient reaching memory. A 64-column
// tile lies in the gate half or in the up half (F % 64 == 0); both read the output gradient,
// the gate and the up value at column c mod F. DswigluCastOp<K>{{scale}, dout, fc, F}.
template <class K>
struct DswigluCastOp : fp8::ScaledCast<fp8::Bf16Thresholds, K> {
  struct Raw {  // stream 0: swiglu's output gradient, 1: gate, 2: up
    uint4 d, g, u;
  };
  static constexpr int kStreams = 3, kVecBytes = 16;
  static constexpr bool kStats = true;
  const bf16* dout;
  const bf16* fc;
  int F;
  bool up_half = false;  // this tile's columns are the up values' gradient
  __device__ const void* stream(int s) const { return s == 0 ? dout : fc + (s == 1 ? 0 : F); }
  __device__ std::int64_t offset(int s, int r, int c) const {
    const int cc = c >= F ? c - F : c;
    return std::int64_t(r) * (s == 0 ? F : 2 * F) + cc;
  }
  __device__ void begin_tile(int c0) { up_half = c0 >= F; }
  __device__ uint2 cast(const Raw& r, fp8::MagnitudeStats& st, float* hp) const {
    float d[8], g[8], u[8], y[8];
    fp8::unpack8(r.d, d);
    fp8::unpack8(r.g, g);
    fp8::unpack8(r.u, u);
#pragma unroll
    for (int e = 0; e < 8; ++e) y[e] = up_half ? swiglu_dup(d[e], g[e]) : swiglu_dgate(d[e], g[e], u[e]);
    const uint4 v = fp8::pack8(y);
    if (hp) fp8::unpack8(v, hp);
    return fp8::cast8_bf16<K>(v, this->scale, this->th, st);
  }
};

// Thread per 8 channels (4 pairs) of the q and k heads of row n (position n % T).
__global__ void rope_kernel(bf16* qkv, const float* cos_sin, int N, int T, int ld, int heads, int HS, int sign) {
  const std::int64_t v = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x, per_row = std::int64_t(heads) * HS / 8;
  if (v >= std::int64_t(N) * per_row) return;
  const std::int64_t n = v / per_row;
  const int c = int(v % per_row) * 8, t = int(n % T), i0 = (c % HS) / 2;
  bf16* p = qkv + n * ld + c;
  float x[8];
  fp8::unpack8(*reinterpret_cast<const uint4*>(p), x);
  const float4* cs = reinterpret_cast<const float4*>(cos_sin + (std::int64_t(t) * (HS / 2) + i0) * 2);  // pairs i0 .. i0 + 3
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const float4 a = cs[k];  // cos, sin of pair i0 + 2k, then of i0 + 2k + 1
    const float c0 = a.x, s0 = sign * a.y, c1 = a.z, s1 = sign * a.w;
    const float x0 = x[4 * k], x1 = x[4 * k + 1], x2 = x[4 * k + 2], x3 = x[4 * k + 3];
    x[4 * k] = x0 * c0 - x1 * s0, x[4 * k + 1] = x0 * s0 + x1 * c0;
    x[4 * k + 2] = x2 * c1 - x3 * s1, x[4 * k + 3] = x2 * s1 + x3 * c1;
  }
  *reinterpret_cast<uint4*>(p) = fp8::pack8(x);
}

unsigned blocks(std::int64_t threads) { return unsigned((threads + 255) / 256); }

}  // namespace

void swiglu_forward(bf16* out, const bf16* fc, int N, int F, cudaStream_t s) {
  swiglu_forward_kernel<<<blocks(std::int64_t(N) * F / 8), 256, 0, s>>>(out, fc, N, F);
}

void swiglu_backward(bf16* dfc, const bf16* fc, const bf16* dout, int N, int F, cudaStream_t s) {
  swiglu_backward_kernel<<<blocks(std::int64_t(N) * F / 8), 256, 0, s>>>(dfc, fc, dout, N, F);
}

bool swiglu_cast_fits(int N, int F) { return fp8::tile_cast_fits(N, F) && F % fp8::kCastTile == 0; }

void swiglu_cast_transpose(std::uint8_t* out, std::uint8_t* out_t, const bf16* fc, int N, int F, const float* scale, fp8::Format f,
                           fp8::Overflow o, fp8::CastStats* stats, cudaStream_t s) {
  fp8::with_kind(f, o, [&](auto k) {
    using Op = SwigluCastOp<decltype(k)>;
    fp8::launch_tile_cast_transpose<Op, false>(Op{{scale}, fc, F}, out, out_t, nullptr, N, F, stats, s);
  });
}

void dswiglu_cast_transpose(std::uint8_t* out, std::uint8_t* out_t, const bf16* dout, const bf16* fc, int N, int F, const float* scale,
                            fp8::Format f, fp8::Overflow o, fp8::CastStats* stats, cudaStream_t s) {
  fp8::with_kind(f, o, [&](auto k) {
    using Op = DswigluCastOp<decltype(k)>;
    fp8::launch_tile_cast_transpose<Op, false>(Op{{scale}, dout, fc, F}, out, out_t, nullptr, N, 2 * F, stats, s);
  });
}

void rope_apply(bf16* qkv, const float* cos_sin, int N, int T, int ld, int heads, int HS, int sign, cudaStream_t s) {
  rope_kernel<<<blocks(std::int64_t(N) * heads * HS / 8), 256, 0, s>>>(qkv, cos_sin, N, T, ld, heads, HS, sign);
}

}  // namespace fp8scope::gpu_model
