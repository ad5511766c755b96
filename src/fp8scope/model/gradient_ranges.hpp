#pragma once
// Which parts of the gradient a training step must zero before its backward. A tensor whose
// one weight-gradient GEMM writes it whole can take that GEMM's output with beta 0 (no zeroing,
// no read of the old gradient, and a GEMM cuBLASLt algorithms can be timed for: one that adds
// into live gradients cannot run twice); every other tensor is summed into (bias and norm
// gradients from column sums, the embeddings scattered) and starts from zero.
#include <cstdint>
#include <string>
#include <vector>

#include "fp8scope/model/gpt_config.hpp"

namespace fp8scope::model {

struct FloatRange {
  std::int64_t offset = 0, count = 0;
  bool operator==(const FloatRange& o) const { return offset == o.offset && count == o.count; }
};

// Whether tensor `name` of the layout is written whole by one weight-gradient GEMM per step:
// the block linears' weights, and the LM head's (wte where the head is tied: the head's GEMM
// writes it first, the embedding's backward adds into it after).
bool gradient_written_whole(const GptConfig& c, const std::string& name);

// The ranges [offset, offset + count) of the gradient to zero: the tensors not written whole,
// adjacent ones merged, cut into pieces of at most `piece` floats (one GPU block each).
std::vector<FloatRange> gradient_ranges_to_zero(const GptConfig& c, std::int64_t piece);

}  // namespace fp8scope::model
