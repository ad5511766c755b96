#pragma once
// The three GEMMs of an LM head (logits = x W^T) as an FP8 training framework must lay them
// out on Hopper, where FP8 tensor cores take only the "TN" layout (both operands K-major):
//   fprop  logits^T[V x T] = W[V x d] . x^T           m=V n=T k=d   lda=d ldb=d ldd=V
//   dgrad  dx^T[d x T]     = W^T . dlogits^T          m=d n=T k=V   lda=V ldb=V ldd=d
//          (needs the transposed FP8 copy of W; dlogits row-major is already K-major)
//   wgrad  dW^T[d x V]     = x^T . dlogits            m=d n=V k=T   lda=T ldb=T ldd=d
//          (needs transposed FP8 copies of x and dlogits)
// Column-major terms as cuBLASLt sees them; T = tokens, d = d_model.
#include "fp8scope/gemm/spec.hpp"

#include <string>

namespace fp8scope::gemm {

enum class HeadRole { fprop, dgrad, wgrad };

// format: "e4m3" (every operand E4M3), "hybrid" (gradients E5M2) or "bf16".
GemmSpec lm_head_spec(HeadRole role, std::int64_t vocab, std::int64_t d_model, std::int64_t tokens, const std::string& format);

std::optional<HeadRole> parse_role(const std::string& s);
std::string to_string(HeadRole r);

// Which of this GEMM's dimensions and leading dimensions carry V, with their byte sizes:
// e.g. "lda=V (50264 B)". Used to say which dimension makes a failing V fail.
std::string vocab_dimensions(HeadRole role, const GemmSpec& s, std::int64_t vocab);

}  // namespace fp8scope::gemm
