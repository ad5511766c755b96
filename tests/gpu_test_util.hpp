#pragma once
// For `gpu`-labelled tests: skip loudly (ctest shows "Skipped") when there is no CUDA device.
#include "fp8scope/core/cuda_util.hpp"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <vector>

#define FP8SCOPE_REQUIRE_GPU()                                              \
  do {                                                                      \
    int count_ = 0;                                                         \
    if (cudaGetDeviceCount(&count_) != cudaSuccess || count_ == 0) {        \
      cudaGetLastError();                                                   \
      GTEST_SKIP() << "SKIPPED: no CUDA device on this machine (gpu test)"; \
    }                                                                       \
  } while (0)

// The first n values of a device buffer, copied to the host.
template <typename T>
std::vector<T> download(const fp8scope::core::DeviceBuffer& b, std::size_t n) {
  std::vector<T> v(n);
  FP8S_CUDA(cudaMemcpy(v.data(), b.get(), n * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}
