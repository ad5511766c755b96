#pragma once
// CUDA runtime helpers for host code: checked calls that throw with context, RAII device
// and pinned host memory, events, and NVTX ranges. CUDA builds only.
#include <cuda_runtime.h>
#include <nvtx3/nvToolsExt.h>

#include <atomic>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace fp8scope::core {

class CudaError : public std::runtime_error {
 public:
  CudaError(cudaError_t code, const std::string& what)
      : std::runtime_error(what + ": " + cudaGetErrorName(code) + " (" + cudaGetErrorString(code) + ")"), code_(code) {}
  cudaError_t code() const { return code_; }
  // Out of memory leaves the context usable; anything else we treat as fatal to the process.
  bool is_oom() const { return code_ == cudaErrorMemoryAllocation; }

 private:
  cudaError_t code_;
};

inline void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    if (e == cudaErrorMemoryAllocation) cudaGetLastError();  // clear the non-sticky error
    throw CudaError(e, what);
  }
}
#define FP8S_CUDA(call) ::fp8scope::core::cuda_check((call), #call)

// The bytes this process holds in DeviceBuffers, and their high-water mark since the last
// reset: a training run's peak device memory as its allocations make it (cuBLASLt's own and
// the CUDA context's memory aside; cudaMemGetInfo sees those).
struct DeviceBytes {
  static inline std::atomic<std::size_t> now{0}, peak{0};
  static void reset_peak() { peak.store(now.load()); }
  static void add(std::size_t b) {
    const std::size_t n = now.fetch_add(b) + b;
    for (std::size_t p = peak.load(); n > p && !peak.compare_exchange_weak(p, n);) {
    }
  }
};

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
    if (bytes) {
      FP8S_CUDA(cudaMalloc(&ptr_, bytes));
      DeviceBytes::add(bytes);
    }
  }
  ~DeviceBuffer() {
    if (ptr_) {
      cudaFree(ptr_);
      DeviceBytes::now.fetch_sub(bytes_);
    }
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  char* bytes_at(std::size_t offset) const { return static_cast<char*>(ptr_) + offset; }
  std::size_t size() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// Page-locked host memory: a device-to-host copy into it is asynchronous (into pageable
// memory the copy returns only when it is done, a synchronisation of its own).
template <class T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(std::size_t n) : n_(n) {
    if (n) FP8S_CUDA(cudaMallocHost(reinterpret_cast<void**>(&ptr_), n * sizeof(T)));
  }
  ~PinnedBuffer() {
    if (ptr_) cudaFreeHost(ptr_);
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(n_, o.n_);
    return *this;
  }
  T* data() const { return ptr_; }
  std::size_t size() const { return n_; }
  T& operator[](std::size_t i) const { return ptr_[i]; }

 private:
  T* ptr_ = nullptr;
  std::size_t n_ = 0;
};

// An event without timing (the cheapest kind), for the host to wait on work of a stream.
class Event {
 public:
  Event() { FP8S_CUDA(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
  ~Event() { cudaEventDestroy(e_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t s) { FP8S_CUDA(cudaEventRecord(e_, s)); }
  void wait() const { FP8S_CUDA(cudaEventSynchronize(e_)); }

 private:
  cudaEvent_t e_{};
};

// An attribute of the current device, asked once per device and thread (a data-parallel run
// drives a GPU per thread).
inline int device_attribute(cudaDeviceAttr attr) {
  thread_local std::unordered_map<long long, int> known;
  int dev = 0;
  cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
  const long long key = (static_cast<long long>(dev) << 32) | static_cast<unsigned>(attr);
  auto it = known.find(key);
  if (it != known.end()) return it->second;
  int value = 0;
  cuda_check(cudaDeviceGetAttribute(&value, attr, dev), "cudaDeviceGetAttribute");
  return known[key] = value;
}

// The current device's compute capability as 10 * major + minor (90: Hopper): kernels built for
// one architecture only (wgmma, clusters) are chosen by it.
inline int device_compute_capability() {
  return 10 * device_attribute(cudaDevAttrComputeCapabilityMajor) + device_attribute(cudaDevAttrComputeCapabilityMinor);
}

// The current device's streaming multiprocessors: the size of a persistent grid.
inline int device_sm_count() { return device_attribute(cudaDevAttrMultiProcessorCount); }

// Lets `kernel` launch with `bytes` of dynamic shared memory (above the default 48 KB a kernel
// must opt in). The attribute is per device and a data-parallel run drives a GPU per thread, so
// it is set once per thread for each kernel (again only for a larger size), not at every launch;
// a failure shows as the launch's error.
template <class Kernel>
void allow_dynamic_smem(Kernel* kernel, int bytes) {
  thread_local std::unordered_map<const void*, int> allowed;
  int& b = allowed[reinterpret_cast<const void*>(kernel)];
  if (b < bytes && cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) == cudaSuccess) b = bytes;
}

class NvtxRange {
 public:
  explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
  ~NvtxRange() { nvtxRangePop(); }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace fp8scope::core
