#pragma once
// For `gpu`-labelled tests: skip loudly (ctest shows "Skipped") when there is no CUDA device.
#include "fp8scope/core/cuda_util.hpp"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#define FP8SCOPE_REQUIRE_GPU()                                              \
  do {                                                                      \
    int count_ = 0;                                                         \
    if (cudaGetDeviceCount(&count_) != cudaSuccess || count_ == 0) {        \
      cudaGetLastError();                                                   \
      GTEST_SKIP() << "SKIPPED: no CUDA device on this machine (gpu test)"; \
    }                                                                       \
  } while (0)

// A size for a model test: `normal`, or under compute-sanitizer (scripts/sanitize.sh sets
// FP8SCOPE_UNDER_SANITIZER) `sanitized`: the tools instrument every launch and access, and the
// multi-step and GPT-2-size cases ran 320-500 s and more each under racecheck, synccheck and
// initcheck. The smaller size runs the same kernels: every kernel of the step and of the recipe
// update has run by the second step (later steps add launches, not code paths), and a smaller
// batch of the same model launches the same kernels on fewer rows.
inline int sanitized_or(int normal, int sanitized) { return std::getenv("FP8SCOPE_UNDER_SANITIZER") ? sanitized : normal; }

// A float's bits, for comparisons that must be exact (runs that should give the same bits).
inline std::uint32_t bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

// The first n values of a device buffer, copied to the host.
template <typename T>
std::vector<T> download(const fp8scope::core::DeviceBuffer& b, std::size_t n) {
  std::vector<T> v(n);
  FP8S_CUDA(cudaMemcpy(v.data(), b.get(), n * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}

// n BF16 values drawn from N(0, sigma^2) (seeded: the same values on every run).
inline std::vector<__nv_bfloat16> normal_bf16(std::size_t n, float sigma, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<__nv_bfloat16> v(n);
  for (auto& x : v) x = __float2bfloat16(d(rng));
  return v;
}

// A device copy of host values (BF16, floats, codes, structs the kernels read).
template <class T>
fp8scope::core::DeviceBuffer upload(const std::vector<T>& v) {
  fp8scope::core::DeviceBuffer b(v.size() * sizeof(T));
  FP8S_CUDA(cudaMemcpy(b.get(), v.data(), b.size(), cudaMemcpyHostToDevice));
  return b;
}
