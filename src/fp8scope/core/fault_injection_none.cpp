// Host-only builds: there is no device to fault.
#include "fp8scope/core/fault_injection.hpp"

namespace fp8scope::core {

std::string inject_device_fault(DeviceFault, int) { return "fp8scope was built without CUDA"; }

}  // namespace fp8scope::core
