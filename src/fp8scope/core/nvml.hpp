#pragma once
// NVML, loaded at run time: GPU-less machines have no libnvidia-ml, and every executable
// must still start there. Only the few calls fp8scope needs are bound.
#include <optional>
#include <string>

namespace fp8scope::core {

class Nvml {
 public:
  static Nvml& instance();
  bool available() const { return ok_; }
  const std::string& error() const { return error_; }
  std::string driver_version();
  // The device is named by its PCI bus id (from cudaDeviceGetPCIBusId): CUDA and NVML
  // number devices differently.
  std::optional<unsigned> sm_clock_mhz(const std::string& pci_bus_id);
  std::optional<unsigned> max_sm_clock_mhz(const std::string& pci_bus_id);
  std::optional<unsigned> power_limit_w(const std::string& pci_bus_id);

 private:
  Nvml();
  void* device(const std::string& pci);
  bool ok_ = false;
  std::string error_;
  void* lib_ = nullptr;
};

}  // namespace fp8scope::core
