// block_cast_kernel with Quot::exact, for every format and scale mode (see block_cast_kernel.cuh).
#include "fp8scope/fp8/block_cast_kernel.cuh"

namespace fp8scope::fp8::block_cast_detail {
template void launch_block_cast<Quot::exact>(const CastLaunch&);
}  // namespace fp8scope::fp8::block_cast_detail
