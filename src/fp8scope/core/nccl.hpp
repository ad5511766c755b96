#pragma once
// NCCL, loaded at run time (dlopen of libnccl.so.2) like NVML: executables start and every
// single-GPU probe works where NCCL is not installed; data-parallel points say why they are
// skipped. Only the calls fp8scope uses, with NCCL's stable ABI (nccl.h: enums are ints,
// communicators opaque pointers). CUDA builds only.
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

namespace fp8scope::core {

class Nccl {
 public:
  using Comm = void*;
  enum DataType : int { kUint64 = 5, kFloat32 = 7 };
  enum RedOp : int { kSum = 0, kMax = 2, kAvg = 4 };

  // nullptr (and *why) when libnccl.so.2 cannot be loaded or lacks a symbol.
  static const Nccl* get(std::string* why);

  // Each call throws std::runtime_error naming the call and NCCL's error string on failure.
  void comm_init_all(Comm* comms, int ndev, const int* devices) const;
  void all_reduce(const void* send, void* recv, std::size_t count, DataType t, RedOp op, Comm comm, cudaStream_t s) const;
  void comm_destroy(Comm comm) const;
  int version() const { return version_; }

 private:
  Nccl() = default;
  void check(int result, const char* what) const;
  void* lib_ = nullptr;
  int (*init_all_)(Comm*, int, const int*) = nullptr;
  int (*all_reduce_)(const void*, void*, std::size_t, int, int, Comm, cudaStream_t) = nullptr;
  int (*destroy_)(Comm) = nullptr;
  const char* (*error_string_)(int) = nullptr;
  int version_ = 0;
};

}  // namespace fp8scope::core
