#pragma once
// A CUDA graph made by stream capture, instantiated once and launched many times: the work a
// function enqueues on a stream (kernels, cuBLASLt matmuls, memsets, copies to and from pinned
// memory) becomes one launch whose kernels start without the host in between. Everything the
// captured work reads is baked in at capture (pointers and kernel arguments), so what changes
// between launches must live in device or pinned memory the graph reads. CUDA builds only.
#include "fp8scope/core/cuda_util.hpp"

#include <utility>

namespace fp8scope::core {

class GraphExec {
 public:
  GraphExec() = default;
  ~GraphExec() {
    if (exec_) cudaGraphExecDestroy(exec_);
  }
  GraphExec(GraphExec&& o) noexcept : exec_(std::exchange(o.exec_, nullptr)) {}
  GraphExec& operator=(GraphExec&& o) noexcept {
    std::swap(exec_, o.exec_);
    return *this;
  }
  GraphExec(const GraphExec&) = delete;
  GraphExec& operator=(const GraphExec&) = delete;
  explicit operator bool() const { return exec_ != nullptr; }
  void launch(cudaStream_t s) const { FP8S_CUDA(cudaGraphLaunch(exec_, s)); }

  // Captures what enqueue() puts on stream s (not the legacy default stream, which cannot be
  // captured) and instantiates it. Only this thread's calls are checked against capture
  // (cudaStreamCaptureModeThreadLocal: a data-parallel run drives other GPUs from other
  // threads). If enqueue throws, the capture is ended and dropped and the exception goes on.
  template <class F>
  static GraphExec capture(cudaStream_t s, F&& enqueue) {
    FP8S_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
      enqueue();
    } catch (...) {
      cudaStreamEndCapture(s, &graph);
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();  // the capture's invalidation is not the caller's error
      throw;
    }
    FP8S_CUDA(cudaStreamEndCapture(s, &graph));
    GraphExec g;
    const cudaError_t e = cudaGraphInstantiate(&g.exec_, graph, 0);
    cudaGraphDestroy(graph);  // the executable graph keeps what it needs
    FP8S_CUDA(e);
    return g;
  }

 private:
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace fp8scope::core
