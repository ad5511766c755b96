// The GPU part of the environment (CUDA builds). Runtime API only: no libcuda link, so the
// executables start on machines without a driver and report why there is no GPU.
#include "fp8scope/core/env.hpp"

#include "fp8scope/core/nvml.hpp"

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <fmt/format.h>

namespace fp8scope::core {

json gpu_env(int device) {
  int count = 0;
  if (cudaError_t err = cudaGetDeviceCount(&count); err != cudaSuccess || count == 0) {
    std::string why = err != cudaSuccess ? fmt::format("no usable CUDA device: {} ({})", cudaGetErrorName(err), cudaGetErrorString(err))
                                         : "no CUDA device found";
    cudaGetLastError();
    return {{"gpu", nullptr}, {"gpu_reason", why}};
  }
  if (device < 0 || device >= count)
    return {{"gpu", nullptr},
            {"gpu_count", count},
            {"gpu_reason", fmt::format("--device {}: this machine has {} GPU{} (0..{})", device, count, count == 1 ? "" : "s", count - 1)}};
  cudaDeviceProp p{};
  cudaGetDeviceProperties(&p, device);
  char pci[32] = {};
  cudaDeviceGetPCIBusId(pci, sizeof pci, device);
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  json g;
  g["index"] = device;
  g["count"] = count;
  g["name"] = p.name;
  g["pci_bus_id"] = pci;
  g["compute_capability"] = fmt::format("{}.{}", p.major, p.minor);
  g["sm_count"] = p.multiProcessorCount;
  g["memory_mib"] = p.totalGlobalMem >> 20;
  g["l2_bytes"] = p.l2CacheSize;
  g["cuda_driver_api"] = driver;
  g["cuda_runtime"] = runtime;
  g["cublaslt_version"] = cublasLtGetVersion();
  g["cublaslt_cudart_version"] = cublasLtGetCudartVersion();
  auto& nvml = Nvml::instance();
  if (nvml.available()) {
    g["driver"] = nvml.driver_version();
    if (auto c = nvml.sm_clock_mhz(pci)) g["sm_clock_mhz"] = *c;
    if (auto c = nvml.max_sm_clock_mhz(pci)) g["max_sm_clock_mhz"] = *c;
    if (auto w = nvml.power_limit_w(pci)) g["power_limit_w"] = *w;
  } else {
    g["nvml"] = nvml.error();
  }
  return {{"gpu", g}, {"gpu_count", count}};
}

}  // namespace fp8scope::core
