#include "fp8scope/core/nvml.hpp"

#include <dlfcn.h>

namespace fp8scope::core {
namespace {
// The NVML ABI for the calls we use (stable since NVML 4); see nvml.h.
using Ret = int;
using Device = void*;
constexpr Ret kSuccess = 0;
constexpr int kClockSm = 1;  // NVML_CLOCK_SM
using InitFn = Ret (*)();
using DriverVersionFn = Ret (*)(char*, unsigned);
using HandleByPciFn = Ret (*)(const char*, Device*);
using ClockFn = Ret (*)(Device, int, unsigned*);
using PowerFn = Ret (*)(Device, unsigned*);

template <class F>
F sym(void* lib, const char* name) {
  return reinterpret_cast<F>(::dlsym(lib, name));
}
}  // namespace

Nvml& Nvml::instance() {
  static Nvml n;
  return n;
}

Nvml::Nvml() {
  lib_ = ::dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib_) {
    error_ = "libnvidia-ml.so.1 not found (no NVIDIA driver on this machine)";
    return;
  }
  auto init = sym<InitFn>(lib_, "nvmlInit_v2");
  if (!init || init() != kSuccess) {
    error_ = "nvmlInit_v2 failed";
    return;
  }
  ok_ = true;
}

void* Nvml::device(const std::string& pci) {
  if (!ok_) return nullptr;
  auto get = sym<HandleByPciFn>(lib_, "nvmlDeviceGetHandleByPciBusId_v2");
  Device d = nullptr;
  return get && get(pci.c_str(), &d) == kSuccess ? d : nullptr;
}

std::string Nvml::driver_version() {
  if (!ok_) return {};
  auto f = sym<DriverVersionFn>(lib_, "nvmlSystemGetDriverVersion");
  char buf[96] = {};
  return f && f(buf, sizeof buf) == kSuccess ? std::string(buf) : std::string();
}

std::optional<unsigned> Nvml::sm_clock_mhz(const std::string& pci) {
  auto f = sym<ClockFn>(lib_, "nvmlDeviceGetClockInfo");
  unsigned v = 0;
  void* d = device(pci);
  if (d && f && f(d, kClockSm, &v) == kSuccess) return v;
  return std::nullopt;
}

std::optional<unsigned> Nvml::max_sm_clock_mhz(const std::string& pci) {
  auto f = sym<ClockFn>(lib_, "nvmlDeviceGetMaxClockInfo");
  unsigned v = 0;
  void* d = device(pci);
  if (d && f && f(d, kClockSm, &v) == kSuccess) return v;
  return std::nullopt;
}

std::optional<unsigned> Nvml::power_limit_w(const std::string& pci) {
  auto f = sym<PowerFn>(lib_, "nvmlDeviceGetEnforcedPowerLimit");
  unsigned mw = 0;
  void* d = device(pci);
  if (d && f && f(d, &mw) == kSuccess) return mw / 1000;
  return std::nullopt;
}

}  // namespace fp8scope::core
