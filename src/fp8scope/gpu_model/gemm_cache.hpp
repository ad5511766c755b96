#pragma once
// The model's GEMMs through cuBLASLt: a plan (descriptors + the heuristic's first algorithm)
// is made once per distinct problem and reused every step. Column-major, as cuBLASLt sees
// it; gpt_gpu.cpp spells out how each row-major tensor maps onto it.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/core/record.hpp"
#include "fp8scope/gemm/lt_matmul.hpp"

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>

namespace fp8scope::gpu_model {

struct GemmCall {
  bool ta = false, tb = false;
  std::int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldd = 0, batch = 1;
  gemm::DType a = gemm::DType::bf16, b = gemm::DType::bf16, d = gemm::DType::bf16;
  float alpha = 1.0f, beta = 0.0f;
  const void* bias = nullptr;  // per row of D (BF16), or none
  // FP8 operands: device pointers to their dequantisation scales (1 / the cast's scale, or the
  // scale tensor of a per-row / per-block mode), and Hopper's fast accumulation.
  const void* a_scale = nullptr;
  const void* b_scale = nullptr;
  fp8::ScaleMode a_mode = fp8::ScaleMode::tensor, b_mode = fp8::ScaleMode::tensor;
  bool fast_accum = false;
};

// cuBLASLt refused a GEMM of the model: the availability outcome (heuristic_unsupported,
// no_algorithm, run_rejected) and cuBLASLt's reason, so a training run records it instead of
// crashing (e.g. an FP8 LM head whose vocabulary is not a multiple of 16).
class GemmRefused : public std::runtime_error {
 public:
  GemmRefused(core::Outcome o, const std::string& what) : std::runtime_error(what), outcome(o) {}
  core::Outcome outcome;
};

class GemmCache {
 public:
  explicit GemmCache(cudaStream_t stream);
  // D = alpha op(A) op(B) (+ bias) + beta D. Throws GemmRefused if cuBLASLt refuses; `what`
  // names the GEMM in the message (e.g. "lm_head dgrad").
  void run(const GemmCall& c, const void* A, const void* B, void* D, const char* what = "");
  std::size_t plans() const { return plans_.size(); }

 private:
  struct Plan {
    std::unique_ptr<gemm::LtMatmul> mm;
    cublasLtMatmulAlgo_t algo;
    std::size_t d_bytes = 0;  // D from its first to its last element (marked initialised after each run)
  };
  // Every field of a GemmCall, compared as a tuple: the lookup runs for every GEMM of every
  // step, so no string is built for it.
  using Key =
      std::tuple<bool, bool, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, gemm::DType,
                 gemm::DType, gemm::DType, float, float, const void*, const void*, const void*, fp8::ScaleMode, fp8::ScaleMode, bool>;
  static Key key_of(const GemmCall& c);
  cudaStream_t stream_;
  gemm::LtHandle handle_;
  core::DeviceBuffer workspace_;
  std::map<Key, Plan> plans_;
};

}  // namespace fp8scope::gpu_model
