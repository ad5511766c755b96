#pragma once
// Measures one GEMM point end to end: random inputs, the FP32 reference, cuBLASLt's verdict,
// the run, the accuracy check of every algorithm tried, and the timing. One runner per
// (worker) process; it owns the cuBLASLt handle, the stream and the L2-flush buffer.
// CUDA builds only.
#include "fp8scope/core/gpu_timer.hpp"
#include "fp8scope/core/record.hpp"
#include "fp8scope/gemm/lt_matmul.hpp"
#include "fp8scope/gemm/run_options.hpp"
#include "fp8scope/gemm/spec.hpp"

#include <memory>

namespace fp8scope::gemm {

class GemmRunner {
 public:
  GemmRunner(int device, GemmRunOptions opt);
  ~GemmRunner();
  GemmRunner(const GemmRunner&) = delete;
  GemmRunner& operator=(const GemmRunner&) = delete;

  // Never throws for anything the GEMM does: the outcome says it. A CUDA error that leaves
  // the process unusable is recorded as `crashed` and asks the runner for a fresh worker.
  core::Record run(const GemmSpec& spec, const std::string& key, const core::json& params);

 private:
  core::Record measure(const GemmSpec& spec, core::Record r);
  GemmRunOptions opt_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<LtHandle> handle_;
  std::unique_ptr<core::GpuTimer> timer_;
};

}  // namespace fp8scope::gemm
