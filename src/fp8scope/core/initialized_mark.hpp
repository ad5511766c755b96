#pragma once
// Tells compute-sanitizer's initcheck that a device range was written by code it cannot see
// writing. Measured on an H200 (tests/test_gemm_cache_gpu.cpp): initcheck does not register
// cuBLASLt's stores to a GEMM's output, with or without --check-bulk-copy, and reports every
// later read of that output as uninitialised although the values are right. Marking the
// output after each GEMM (NVTX memory API, seen by the tool under --nvtx yes) leaves initcheck
// checking everything our own kernels read. Without a tool attached the call does nothing.
// CUDA builds only.
#include <cuda_runtime.h>

#include <cstddef>

namespace fp8scope::core {

// [p, p + bytes) counts as initialised from this point of `stream` on.
void mark_initialized(const void* p, std::size_t bytes, cudaStream_t stream);

}  // namespace fp8scope::core
