// Fused softmax cross-entropy over the real vocabulary (the padded columns take no part), with
// its gradient. The log-sum-exp is formed with an online maximum, and the gradient is
// exp(z - lse), so each logit takes one exponential per pass.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/core/fast_math.cuh"
#include "fp8scope/fp8/cast_kernels.cuh"
#include "fp8scope/gpu_model/kernels.cuh"
#include "fp8scope/model/fp8_plan.hpp"

#include <cooperative_groups.h>

#include <algorithm>
#include <cfloat>

namespace fp8scope::gpu_model {
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
  static constexpr bool kResident = false;  // see launch_parts
  bf16* out;
  __device__ void setup() {}
  __device__ void store8(std::int64_t i, const float (&g)[8]) { *reinterpret_cast<uint4*>(out + i) = fp8::pack8(g); }
  __device__ void finish() {}
};

template <class K>  // the format and overflow mode (fp8::with_kind)
struct Fp8Grad {
  static constexpr bool kResident = true;
  std::uint8_t* out;
  const float* scale_ptr;
  fp8::CastStats* stats;
  float scale = 0.0f;
  fp8::Bf16Thresholds th{};
  fp8::MagnitudeStats st{};
  __device__ void setup() {
    scale = *scale_ptr;
    th = fp8::bf16_thresholds(scale, K::format);
  }
  // The BF16 gradient in registers, cast as fp8::quantize casts the BF16 tensor.
  __device__ void store8(std::int64_t i, const float (&g)[8]) {
    *reinterpret_cast<uint2*>(out + i) = fp8::cast8_bf16<K>(fp8::pack8(g), scale, th, st);
  }
  __device__ void finish() { fp8::flush_block(st.local(), stats); }  // every thread of the block
};

// The fast path (Hopper; Vp a multiple of 8 * kParts, as 50304): a row is split over a cluster
// of kParts blocks, each keeping its part in shared memory (read from memory once, 16 bytes
// per load) for the gradient pass; the parts' (max, sum) pairs are combined through
// distributed shared memory, in part order, so every part has the same log-sum-exp. A whole
// row (201 KB at V = 50304) in one block allowed one block per SM, whose gradient pass then
// left the memory idle; quarter rows fit four blocks per SM at different phases (eighths: slower).
// With an FP8 gradient the clusters stay resident and walk the rows: with a cluster per row
// every quarter row paid the cast's setup (its thresholds) and statistics flush (with the
// maxima-first reduction below, 1.03 G -> 0.45 G instructions at GPT-2 124M sizes). The BF16
// gradient keeps a cluster per row: resident clusters measured slower for it (see the kernel),
// and rows taken from an atomic counter were slower for both gradients.
constexpr int kParts = 4, kPartThreads = 256, kPartWarps = kPartThreads / 32, kLoadBatch = 4;

// The row's (max, sum of exp(x - max)) over the whole cluster from each thread's (m, s):
// maxima first, then each sum rescaled once to the larger maximum (a pairwise combine at every
// step of a tree costs two exponentials a step). Fixed order at every level, so every part
// gets the same bits, on every run. Exponentials of (x - max) as exp2 of x log2 e - max log2 e
// (an empty side has m = -FLT_MAX / 2 and s = 0: it adds 0).
__device__ __forceinline__ float rescale(float s, float m, float to) { return s * core::exp2_fast((m - to) * core::kLog2e); }

__device__ __forceinline__ void row_max_sum(float& m, float& s) {
  // Each warp's (max, sum); then slot 0 holds the part's, which the other parts read.
  __shared__ float2 warp_ms[kPartWarps];
  float wm = m;
  for (int o = 16; o > 0; o /= 2) wm = fmaxf(wm, __shfl_xor_sync(0xffffffffu, wm, o));
  float ws = rescale(s, m, wm);
  for (int o = 16; o > 0; o /= 2) ws += __shfl_xor_sync(0xffffffffu, ws, o);
  if (threadIdx.x % 32 == 0) warp_ms[threadIdx.x / 32] = make_float2(wm, ws);
  __syncthreads();  // also publishes the part in shared memory for the gradient pass
  if (threadIdx.x == 0) {
    float bm = warp_ms[0].x, bs = 0.0f;
#pragma unroll
    for (int w = 1; w < kPartWarps; ++w) bm = fmaxf(bm, warp_ms[w].x);
#pragma unroll
    for (int w = 0; w < kPartWarps; ++w) bs += rescale(warp_ms[w].y, warp_ms[w].x, bm);
    warp_ms[0] = make_float2(bm, bs);
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();
  float2 p[kParts];
#pragma unroll
  for (int k = 0; k < kParts; ++k) p[k] = *cluster.map_shared_rank(&warp_ms[0], k);
  m = p[0].x;
#pragma unroll
  for (int k = 1; k < kParts; ++k) m = fmaxf(m, p[k].x);
  s = 0.0f;
#pragma unroll
  for (int k = 0; k < kParts; ++k) s += rescale(p[k].y, p[k].x, m);
  cluster.sync();  // no block writes its pair (next row) while another may still read it
#else
  __trap();
#endif
}

// The logits as the head wrote them: FP32, or BF16 (half the bytes; the loss computes in FP32
// either way). A 16-byte load holds kPerLoad of them.
template <class In>
constexpr int kPerLoad = 16 / int(sizeof(In));

// The running (max, sum) over four logits: one rescale when the max moves.
__device__ __forceinline__ void add4(float& m, float& s, float a, float b, float d, float e) {
  const float mx = fmaxf(fmaxf(a, b), fmaxf(d, e));
  if (mx > m) s *= core::exp2_fast((m - mx) * core::kLog2e), m = mx;
  const float ml = m * core::kLog2e;
  s += core::exp2_fast(fmaf(a, core::kLog2e, -ml)) + core::exp2_fast(fmaf(b, core::kLog2e, -ml)) +
       core::exp2_fast(fmaf(d, core::kLog2e, -ml)) + core::exp2_fast(fmaf(e, core::kLog2e, -ml));
}

// One row's part: its logits into shared memory (part4, as FP32) with the running (max, sum),
// the row's log-sum-exp from the cluster, then the loss and the gradient of the part.
template <class Grad, class In>
__device__ __forceinline__ void cross_entropy_part_row(float4* part4, std::int64_t row, float* losses, Grad& grad, const In* logits,
                                                       const int* targets, int n_mean, int V, int Vp) {
  constexpr int W = kPerLoad<In>;                      // logits per 16-byte load
  const int part = int(blockIdx.x % kParts);           // the block's rank in its cluster
  const int P4 = Vp / 4 / kParts, c0 = part * P4 * 4;  // float4s per part, first column
  const int PL = P4 * 4 / W;                           // loads per part
  const float inv_n = 1.0f / n_mean, log2_n = log2f(float(n_mean));
  const float* zs = reinterpret_cast<const float*>(part4);
  const uint4* z = reinterpret_cast<const uint4*>(logits + row * Vp + c0);
  // m starts at -FLT_MAX / 2 so that m log2 e stays finite (a padded column's -inf gives 0).
  float m = -FLT_MAX / 2, s = 0.0f;
  // kLoadBatch loads issued before any is used, so each thread keeps 64 bytes in flight (the
  // plain loop's branches left one 16-byte load in flight per thread); the elements are then
  // taken in the same order as before, so the sums round the same.
  for (int i0 = threadIdx.x; i0 < PL; i0 += kLoadBatch * kPartThreads) {
    uint4 xs[kLoadBatch];
#pragma unroll
    for (int u = 0; u < kLoadBatch; ++u) {
      const int i = i0 + u * kPartThreads;
      xs[u] = i < PL ? z[i] : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kLoadBatch; ++u) {
      const int i = i0 + u * kPartThreads;
      if (i >= PL) break;
      float x[W];
      if constexpr (W == 4)
        *reinterpret_cast<uint4*>(x) = xs[u];
      else
        fp8::unpack8(xs[u], x);
#pragma unroll
      for (int q = 0; q < W / 4; ++q) {
        part4[i * (W / 4) + q] = make_float4(x[4 * q], x[4 * q + 1], x[4 * q + 2], x[4 * q + 3]);
        const int c = c0 + W * i + 4 * q;
        float a = x[4 * q], b = x[4 * q + 1], d = x[4 * q + 2], e = x[4 * q + 3];
        if (c + 4 > V) {  // padded columns (c >= V) take no part
          a = c < V ? a : -INFINITY, b = c + 1 < V ? b : -INFINITY, d = c + 2 < V ? d : -INFINITY, e = c + 3 < V ? e : -INFINITY;
        }
        add4(m, s, a, b, d, e);
      }
    }
  }
  row_max_sum(m, s);
  const float lse = m + __logf(s);
  // exp(z - lse) / N = 2^(z log2 e - (lse log2 e + log2 N)).
  const float shift = fmaf(lse, core::kLog2e, log2_n);
  const int target = targets[row];
  if (threadIdx.x == 0 && target >= c0 && target < c0 + 4 * P4) losses[row] = lse - zs[target - c0];
  for (int i = threadIdx.x; i < P4 / 2; i += kPartThreads) {
    const float4 x0 = part4[2 * i], x1 = part4[2 * i + 1];
    const int c = c0 + 8 * i;
    float g[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
    if (c + 8 <= V && (target < c || target >= c + 8)) {  // most chunks: no padding, no target
#pragma unroll
      for (int j = 0; j < 8; ++j) g[j] = core::exp2_fast(fmaf(g[j], core::kLog2e, -shift));
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float p = c + j < V ? core::exp2_fast(fmaf(g[j], core::kLog2e, -shift)) : 0.0f;
        g[j] = p - (c + j == target ? inv_n : 0.0f);
      }
    }
    grad.store8(row * Vp + c, g);
  }
}

// Resident clusters walk the rows; otherwise a cluster per row, with no loop around it (with
// the batched loads, the BF16 launch measured 1395 us so, 1487 us inside a one-pass row loop and
// 1534 us as resident clusters, side by side on an H200; 8 loads per batch: slower for both).
template <class Grad, class In>
__global__ void __launch_bounds__(kPartThreads)
    cross_entropy_parts_kernel(float* losses, Grad grad, const In* logits, const int* targets, int N, int n_mean, int V, int Vp) {
  extern __shared__ float4 part4[];
  grad.setup();
  if constexpr (Grad::kResident) {
    for (std::int64_t row = blockIdx.x / kParts; row < N; row += gridDim.x / kParts) {
      cross_entropy_part_row(part4, row, losses, grad, logits, targets, n_mean, V, Vp);
      __syncthreads();  // the next row overwrites the part
    }
  } else {
    cross_entropy_part_row(part4, blockIdx.x / kParts, losses, grad, logits, targets, n_mean, V, Vp);
  }
  grad.finish();
}

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __bfloat162float(x); }

// Any V and Vp: one pass for the running max and the sum of exponentials (rescaled when the
// max moves), combined across the block; a second pass over memory writes the gradient.
template <class In>
__global__ void cross_entropy_kernel(float* losses, bf16* dlogits, const In* logits, const int* targets, int n_mean, int V, int Vp) {
  const std::int64_t row = blockIdx.x;
  const In* z = logits + row * Vp;
  float m = -FLT_MAX, s = 0.0f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float x = to_float(z[v]);
    if (x > m) s *= __expf(m - x), m = x;
    s += __expf(x - m);
  }
  block_combine(m, s);
  const int target = targets[row];
  const float lse = m + __logf(s), inv_n = 1.0f / n_mean;
  if (threadIdx.x == 0) losses[row] = lse - to_float(z[target]);
  for (int v = threadIdx.x; v < Vp; v += blockDim.x) {
    const float p = v < V ? __expf(to_float(z[v]) - lse) : 0.0f;
    dlogits[row * Vp + v] = __float2bfloat16((p - (v == target ? 1.0f : 0.0f)) * inv_n);
  }
}

// The parts kernel's conditions: clusters (compute capability 9.0) and the shape (in the model
// spec, whose memory estimate depends on it).
static_assert(kParts == model::kCrossEntropyParts);
bool parts_fit(int Vp) { return core::device_compute_capability() >= 90 && model::cross_entropy_parts_shape_fits(Vp); }

template <class Grad, class In>
void launch_parts(float* losses, Grad grad, const In* logits, const int* targets, int N, int n_mean, int V, int Vp, cudaStream_t s) {
  const int part_bytes = Vp / kParts * int(sizeof(float));
  const auto kernel = cross_entropy_parts_kernel<Grad, In>;
  core::allow_dynamic_smem(kernel, part_bytes);
  cudaLaunchConfig_t cfg{};
  cfg.blockDim = dim3(kPartThreads);
  cfg.dynamicSmemBytes = std::size_t(part_bytes);
  cfg.stream = s;
  cudaLaunchAttribute cluster{};
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = kParts, cluster.val.clusterDim.y = 1, cluster.val.clusterDim.z = 1;
  cfg.attrs = &cluster;
  cfg.numAttrs = 1;
  // Resident: as many clusters as fit on the GPU at once (each walks rows), never more than
  // rows; asked once per part size (per thread: a data-parallel run drives a GPU per thread).
  // Otherwise a cluster per row.
  thread_local int asked_bytes = -1, resident = 0;
  if (Grad::kResident && asked_bytes != part_bytes) {
    cfg.gridDim = dim3(unsigned(N * kParts));
    if (cudaOccupancyMaxActiveClusters(&resident, kernel, &cfg) != cudaSuccess || resident <= 0) {
      cudaGetLastError();
      resident = 1 << 20;  // unknown: a cluster per row
    }
    asked_bytes = part_bytes;
  }
  cfg.gridDim = dim3(unsigned((Grad::kResident ? std::min(N, resident) : N) * kParts));
  cudaLaunchKernelEx(&cfg, kernel, losses, grad, logits, targets, N, n_mean, V, Vp);
}

template <class In>
void bf16_grad(float* losses, bf16* dlogits, const In* logits, const int* targets, int N, int n_mean, int V, int Vp, cudaStream_t s) {
  if (parts_fit(Vp))
    launch_parts(losses, Bf16Grad{dlogits}, logits, targets, N, n_mean, V, Vp, s);
  else
    cross_entropy_kernel<<<N, 512, 0, s>>>(losses, dlogits, logits, targets, n_mean, V, Vp);
}

template <class In>
void fp8_grad(float* losses, std::uint8_t* dlogits, const In* logits, const int* targets, int N, int n_mean, int V, int Vp,
              const float* scale, fp8::Format f, fp8::Overflow o, fp8::CastStats* stats, cudaStream_t s) {
  fp8::with_kind(f, o, [&](auto k) {
    launch_parts(losses, Fp8Grad<decltype(k)>{dlogits, scale, stats}, logits, targets, N, n_mean, V, Vp, s);
  });
}

}  // namespace

void cross_entropy_forward_backward(float* losses, bf16* dlogits, const float* logits, const int* targets, int N, int n_mean, int V, int Vp,
                                    cudaStream_t s) {
  bf16_grad(losses, dlogits, logits, targets, N, n_mean, V, Vp, s);
}
void cross_entropy_forward_backward(float* losses, bf16* dlogits, const bf16* logits, const int* targets, int N, int n_mean, int V, int Vp,
                                    cudaStream_t s) {
  bf16_grad(losses, dlogits, logits, targets, N, n_mean, V, Vp, s);
}

bool cross_entropy_fp8_fits(int Vp) { return parts_fit(Vp); }

void cross_entropy_forward_backward_fp8(float* losses, std::uint8_t* dlogits, const float* logits, const int* targets, int N, int n_mean,
                                        int V, int Vp, const float* scale, fp8::Format f, fp8::Overflow o, fp8::CastStats* stats,
                                        cudaStream_t s) {
  fp8_grad(losses, dlogits, logits, targets, N, n_mean, V, Vp, scale, f, o, stats, s);
}
void cross_entropy_forward_backward_fp8(float* losses, std::uint8_t* dlogits, const bf16* logits, const int* targets, int N, int n_mean,
                                        int V, int Vp, const float* scale, fp8::Format f, fp8::Overflow o, fp8::CastStats* stats,
                                        cudaStream_t s) {
  fp8_grad(losses, dlogits, logits, targets, N, n_mean, V, Vp, scale, f, o, stats, s);
}

}  // namespace fp8scope::gpu_model
