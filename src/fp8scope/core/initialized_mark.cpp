#include "fp8scope/core/initialized_mark.hpp"

#include <nvtx3/nvToolsExtMem.h>
#include <nvtx3/nvToolsExtMemCudaRt.h>

namespace fp8scope::core {

void mark_initialized(const void* p, std::size_t bytes, cudaStream_t stream) {
  if (!p || bytes == 0) return;
  static const nvtxDomainHandle_t domain = nvtxDomainCreateA("fp8scope");
  nvtxMemVirtualRangeDesc_t range{bytes, p};
  nvtxMemMarkInitializedBatch_t batch{};
  batch.extCompatID = NVTX_EXT_COMPATID_MEM;
  batch.structSize = sizeof(batch);
  batch.regionType = NVTX_MEM_TYPE_VIRTUAL_ADDRESS;
  batch.regionDescCount = 1;
  batch.regionDescElementSize = sizeof(range);
  batch.regionDescElements = &range;
  nvtxMemCudaMarkInitialized(domain, stream, 0, &batch);
}

}  // namespace fp8scope::core
