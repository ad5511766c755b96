// block_cast_kernel with Quot::pow2, for every format and scale mode of the plain casts (see block_cast_kernel.cuh).
#include "fp8scope/fp8/block_cast_kernel.cuh"

namespace fp8scope::fp8::block_cast_detail {
template void launch_block_cast<Quot::pow2, PlainSrc>(const CastLaunch<PlainSrc>&);
}  // namespace fp8scope::fp8::block_cast_detail
