#pragma once
// Test-only device faults, so that the runner's handling of a point that breaks the GPU can
// be shown on a real GPU: a kernel that traps, one that writes to an illegal address (both
// leave the CUDA context unusable, as a real kernel bug does) and one that never ends (the
// point hangs past --point-timeout). A sweep asks for them with the setting
// `inject_faults`: "INDEX:KIND,..." (INDEX of the point in the whole sweep, 0-based).
#include <map>
#include <string>

namespace fp8scope::core {

enum class DeviceFault { trap, illegal_address, hang };

// Parses `inject_faults` for a sweep of `points` points; InputError naming the bad entry.
std::map<std::size_t, DeviceFault> parse_fault_plan(const std::string& spec, std::size_t points);
const char* to_string(DeviceFault f);

// Runs the fault on `device`. trap and illegal_address return the CUDA error the launch left
// behind (sticky: the process must not use the GPU again); hang does not return. Host-only
// builds return "fp8scope was built without CUDA" without faulting.
std::string inject_device_fault(DeviceFault f, int device);

}  // namespace fp8scope::core
