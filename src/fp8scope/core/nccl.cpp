#include "fp8scope/core/nccl.hpp"

#include <fmt/format.h>

#include <dlfcn.h>

#include <mutex>
#include <stdexcept>

namespace fp8scope::core {

const Nccl* Nccl::get(std::string* why) {
  static Nccl n;
  static std::string error;
  static std::once_flag once;
  std::call_once(once, [] {
    // The loader's path first, then the CUDA toolkit this was built with (its lib64 is often
    // not on the loader's path).
    for (const char* name : {"libnccl.so.2", FP8SCOPE_CUDA_LIBDIR "/libnccl.so.2"})
      if ((n.lib_ = ::dlopen(name, RTLD_NOW | RTLD_LOCAL))) break;
    if (!n.lib_) {
      error = "libnccl.so.2 not found on the loader's path or in " FP8SCOPE_CUDA_LIBDIR " (install NCCL or set LD_LIBRARY_PATH)";
      return;
    }
    auto sym = [](const char* name) { return ::dlsym(n.lib_, name); };
    n.init_all_ = reinterpret_cast<decltype(n.init_all_)>(sym("ncclCommInitAll"));
    n.all_reduce_ = reinterpret_cast<decltype(n.all_reduce_)>(sym("ncclAllReduce"));
    n.destroy_ = reinterpret_cast<decltype(n.destroy_)>(sym("ncclCommDestroy"));
    n.error_string_ = reinterpret_cast<decltype(n.error_string_)>(sym("ncclGetErrorString"));
    auto get_version = reinterpret_cast<int (*)(int*)>(sym("ncclGetVersion"));
    if (!n.init_all_ || !n.all_reduce_ || !n.destroy_ || !n.error_string_ || !get_version) {
      error = "libnccl.so.2 lacks ncclCommInitAll/ncclAllReduce/ncclCommDestroy/ncclGetVersion";
      n.lib_ = nullptr;
      return;
    }
    get_version(&n.version_);
    if (n.version_ < 21000) {  // ncclAvg came with NCCL 2.10
      error = fmt::format("NCCL {} is older than 2.10 (no ncclAvg)", n.version_);
      n.lib_ = nullptr;
    }
  });
  if (!n.lib_) {
    if (why) *why = error;
    return nullptr;
  }
  return &n;
}

void Nccl::check(int result, const char* what) const {
  if (result != 0) throw std::runtime_error(fmt::format("{} failed: {}", what, error_string_(result)));
}

void Nccl::comm_init_all(Comm* comms, int ndev, const int* devices) const { check(init_all_(comms, ndev, devices), "ncclCommInitAll"); }

void Nccl::all_reduce(const void* send, void* recv, std::size_t count, DataType t, RedOp op, Comm comm, cudaStream_t s) const {
  check(all_reduce_(send, recv, count, t, op, comm, s), "ncclAllReduce");
}

void Nccl::comm_destroy(Comm comm) const { destroy_(comm); }

}  // namespace fp8scope::core
