#pragma once
// The model's GEMMs through cuBLASLt: a plan (descriptors + the heuristic's first algorithm)
// is made once per distinct problem and reused every step. Column-major, as cuBLASLt sees
// it; gpt_gpu.cpp spells out how each row-major tensor maps onto it.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/gemm/lt_matmul.hpp"

#include <map>
#include <memory>
#include <string>

namespace fp8scope::model {

struct GemmCall {
  bool ta = false, tb = false;
  std::int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldd = 0, batch = 1;
  gemm::DType a = gemm::DType::bf16, b = gemm::DType::bf16, d = gemm::DType::bf16;
  float alpha = 1.0f, beta = 0.0f;
  const void* bias = nullptr;  // per row of D (BF16), or none
};

class GemmCache {
 public:
  explicit GemmCache(cudaStream_t stream);
  // D = alpha op(A) op(B) (+ bias) + beta D. Throws std::runtime_error if cuBLASLt refuses.
  void run(const GemmCall& c, const void* A, const void* B, void* D);
  std::size_t plans() const { return plans_.size(); }

 private:
  struct Plan {
    std::unique_ptr<gemm::LtMatmul> mm;
    cublasLtMatmulAlgo_t algo;
  };
  cudaStream_t stream_;
  gemm::LtHandle handle_;
  core::DeviceBuffer workspace_;
  std::map<std::string, Plan> plans_;
};

}  // namespace fp8scope::model
