#pragma once
// A cuBLASLt matmul described by a GemmSpec: RAII over the handle and the descriptors, the
// heuristic query, and the run. Every cuBLASLt status is kept (never thrown) because the
// statuses are the probe's findings. CUDA builds only.
#include "fp8scope/gemm/spec.hpp"

#include <cublasLt.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

namespace fp8scope::gemm {

class LtHandle {
 public:
  LtHandle();
  ~LtHandle();
  LtHandle(const LtHandle&) = delete;
  LtHandle& operator=(const LtHandle&) = delete;
  cublasLtHandle_t get() const { return h_; }

 private:
  cublasLtHandle_t h_ = nullptr;
};

// The device pointers a matmul reads and writes. Scale pointers point at one float each.
struct LtPointers {
  const void* a = nullptr;
  const void* b = nullptr;
  const void* c = nullptr;
  void* d = nullptr;
  // Dequantisation scales of the FP8 inputs: one float, or the scale tensor of the operand's
  // scale mode (FP32 or one byte per block, laid out as ScaleGeometry::lt_offset says).
  const void* a_scale = nullptr;
  const void* b_scale = nullptr;
  const float* d_scale = nullptr;  // quantisation scale of an FP8 output
  float* amax_d = nullptr;         // amax of D, written by cuBLASLt for FP8 outputs
  const void* bias = nullptr;
  void* aux = nullptr;
  std::int64_t aux_ld = 0;
  void* workspace = nullptr;
};

class LtMatmul {
 public:
  LtMatmul(const GemmSpec& spec, const LtPointers& ptrs);
  ~LtMatmul();
  LtMatmul(const LtMatmul&) = delete;
  LtMatmul& operator=(const LtMatmul&) = delete;

  // Non-zero when describing the problem already failed; setup_step names the call.
  int setup_status() const { return setup_status_; }
  const std::string& setup_step() const { return setup_step_; }

  struct Heuristic {
    int status = 0;
    std::vector<cublasLtMatmulHeuristicResult_t> results;
  };
  // alignment_hints: tell the heuristic the real pointer alignments (otherwise it assumes
  // 256-byte aligned pointers, and a misaligned one is refused only by run()).
  Heuristic heuristic(const LtHandle& h, int max_algorithms, bool alignment_hints) const;
  int run(const LtHandle& h, const cublasLtMatmulAlgo_t& algo, cudaStream_t stream) const;
  // The same matmul on other operands of the same shapes and types (the descriptor's scale,
  // bias and aux pointers stay as constructed).
  // c: the C the epilogue adds (beta != 0) where it is not d (the same layout and type as c's
  // descriptor); null: d itself.
  int run_on(const LtHandle& h, const cublasLtMatmulAlgo_t& algo, cudaStream_t stream, const void* a, const void* b, void* d,
             void* workspace, const void* c = nullptr) const;

 private:
  GemmSpec spec_;
  LtPointers p_;
  float alpha_, beta_;
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, c_ = nullptr, d_ = nullptr;
  int setup_status_ = 0;
  std::string setup_step_;
};

// The algorithm's identity (id, tile, stages, split-k, cluster, ...) and the heuristic's notes.
nlohmann::json algo_json(const cublasLtMatmulHeuristicResult_t& r);

// cuBLASLt's own log lines, captured when the level is > 0 (CUBLASLT_LOG_LEVEL semantics:
// 1 errors, 2 trace, 3 hints, 4 info, 5 API trace).
void start_log_capture(int level);
void set_log_level(int level);
std::vector<std::string> take_log_lines();
// Repeats a refused call once with the info log on and returns cuBLASLt's reasons
// ("K must be divisible by 16. Got 50264"); the level is then set back to restore_level.
nlohmann::json explain_refusal(const std::function<void()>& repeat_call, int restore_level);

}  // namespace fp8scope::gemm
