#pragma once
// For `gpu`-labelled tests: skip loudly (ctest shows "Skipped") when there is no CUDA device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#define FP8SCOPE_REQUIRE_GPU()                                                               \
  do {                                                                                       \
    int count_ = 0;                                                                          \
    if (cudaGetDeviceCount(&count_) != cudaSuccess || count_ == 0) {                         \
      cudaGetLastError();                                                                    \
      GTEST_SKIP() << "SKIPPED: no CUDA device on this machine (gpu test)";                  \
    }                                                                                        \
  } while (0)
