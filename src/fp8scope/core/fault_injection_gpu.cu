// The device faults of fault_injection.hpp. Each is its own kernel so that a trace names it.
#include "fp8scope/core/fault_injection.hpp"

#include <cuda_runtime.h>

#include <string>

namespace fp8scope::core {
namespace {

__global__ void trap_kernel() { __trap(); }

// A store far outside any allocation: the memory system reports an illegal address.
__global__ void illegal_address_kernel(int* p) { p[threadIdx.x] = 1; }

// Waits for a flag nothing sets: the kernel, and the point, never end.
__global__ void hang_kernel(const volatile int* flag) {
  while (*flag == 0) {
  }
}

std::string error_text(cudaError_t e) { return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")"; }

}  // namespace

std::string inject_device_fault(DeviceFault f, int device) {
  if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess) return error_text(e);
  switch (f) {
    case DeviceFault::trap: trap_kernel<<<1, 1>>>(); break;
    case DeviceFault::illegal_address: illegal_address_kernel<<<1, 32>>>(reinterpret_cast<int*>(0x10)); break;
    case DeviceFault::hang: {
      int* flag = nullptr;
      if (cudaError_t e = cudaMalloc(&flag, sizeof(int)); e != cudaSuccess) return error_text(e);
      cudaMemset(flag, 0, sizeof(int));
      hang_kernel<<<1, 1>>>(flag);
      break;
    }
  }
  return error_text(cudaDeviceSynchronize());  // hang: never returns
}

}  // namespace fp8scope::core
