#pragma once
// The model's GEMMs through cuBLASLt: a plan (descriptors + an algorithm) is made once per
// distinct problem and reused every step. The algorithm is the heuristic's first, or, when
// asked to tune, the fastest of the heuristic's first candidates timed on the GEMM's own
// operands at its first run (the heuristic's first is often not the fastest: for GPT-2 124M's
// FP8 fprop shapes on an H200 another of its first 8 ran 1.16-1.21x faster, gemm_gpt2.json).
// Column-major, as cuBLASLt sees it; gpt_gpu.cpp spells out how each row-major tensor maps
// onto it.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/core/record.hpp"
#include "fp8scope/gemm/lt_matmul.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace fp8scope::gpu_model {

struct GemmCall {
  bool ta = false, tb = false;
  std::int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldd = 0, batch = 1;
  gemm::DType a = gemm::DType::bf16, b = gemm::DType::bf16, d = gemm::DType::bf16;
  float alpha = 1.0f, beta = 0.0f;
  // C where it is not D: D = alpha op(A) op(B) (+ bias) + beta C, C laid out and typed as D (a
  // residual added in the epilogue; beta 1). Null: C is D (beta != 0 accumulates into D).
  const void* c = nullptr;
  const void* bias = nullptr;  // per row of D (BF16), or none
  // FP8 operands: device pointers to their dequantisation scales (1 / the cast's scale, or the
  // scale tensor of a per-row / per-block mode), and Hopper's fast accumulation.
  const void* a_scale = nullptr;
  const void* b_scale = nullptr;
  fp8::ScaleMode a_mode = fp8::ScaleMode::tensor, b_mode = fp8::ScaleMode::tensor;
  bool fast_accum = false;
  // An FP8 D: its quantisation scale, and where cuBLASLt writes its amax (may be null).
  const float* d_scale = nullptr;
  float* amax_d = nullptr;
  // GELU applied in the epilogue (after the bias), its input written to gelu_aux ([aux_ld x n]
  // column-major, E4M3 at unit scale beside an E4M3 D, else the bias type): cuBLASLt's
  // GELU_AUX(_BIAS). Null: no GELU.
  void* gelu_aux = nullptr;
  std::int64_t aux_ld = 0;
  // The GELU's gradient applied in the epilogue (DGELU): D = product * GELU'(x), x read from
  // dgelu_input ([aux_ld x n] column-major); the bias gradient (D summed over its n columns,
  // before D's cast; BF16 with FP8 inputs) written to dbias where not null (DGELU_BGRAD).
  const void* dgelu_input = nullptr;
  void* dbias = nullptr;
  gemm::DType aux = gemm::DType::e4m3;  // the element type of gelu_aux / dgelu_input
};

// cuBLASLt refused a GEMM of the model: the availability outcome (heuristic_unsupported,
// no_algorithm, run_rejected) and cuBLASLt's reason, so a training run records it instead of
// crashing (e.g. an FP8 LM head whose vocabulary is not a multiple of 16).
class GemmRefused : public std::runtime_error {
 public:
  GemmRefused(core::Outcome o, const std::string& what) : std::runtime_error(what), outcome(o) {}
  core::Outcome outcome;
};

// A cuBLASLt epilogue the model asks for while cuBLASLt takes it (the GELU's, its gradient's,
// the residual add): the first refusal is remembered with cuBLASLt's reason, and from then on
// the caller's kernels do that work; a refusal after the epilogue once ran is an error, not a
// fallback.
struct EpilogueTrial {
  int state = 0;  // 0 not asked yet, 1 taken, -1 refused
  std::string refusal;
  bool usable() const { return state >= 0; }
  // Runs `gemm` (GemmCache::run with the epilogue) unless cuBLASLt refused it before; whether it ran.
  template <class Gemm>
  bool attempt(const Gemm& gemm) {
    if (state < 0) return false;
    try {
      gemm();
      state = 1;
      return true;
    } catch (const GemmRefused& e) {
      if (state != 0) throw;
      state = -1, refusal = e.what();
      return false;
    }
  }
};

class GemmCache {
 public:
  // algos: how many of the heuristic's candidates a GEMM's first run times (each shape once;
  // every later plan of the same shape takes the same choice); 1: the heuristic's first,
  // untimed. Only GEMMs that overwrite their output are tuned (with a C of their own too): the
  // trials run in place, and an accumulating one (beta != 0 into D: a chunked head's later
  // weight gradients, every weight gradient under wgrad add) would add its product once per
  // trial, so it keeps the heuristic's first. Nor is a GEMM tuned while its stream is being
  // captured (a CUDA graph's first step is uncaptured: its plans are made then).
  explicit GemmCache(cudaStream_t stream, int algos = 1);
  // D = alpha op(A) op(B) (+ bias) + beta D. Throws GemmRefused if cuBLASLt refuses; `what`
  // names the GEMM in the message (e.g. "lm_head dgrad").
  void run(const GemmCall& c, const void* A, const void* B, void* D, const char* what = "");
  std::size_t plans() const { return plans_.size(); }
  // What tuning timed and kept, per shape: {"algos": asked, "shapes": [{"gemm": the first
  // GEMM of the shape, "shape", "plans": plans that took the choice, "candidates", "chosen":
  // the kept candidate's index (0 = the heuristic's first), "ms_first", "ms_chosen", "algo"}],
  // "untuned_accumulating": plans left to the heuristic because they accumulate}. Null when
  // algos is 1.
  nlohmann::json tuning() const;

 private:
  struct Plan {
    std::unique_ptr<gemm::LtMatmul> mm;
    cublasLtMatmulAlgo_t algo;
    std::size_t d_bytes = 0;    // D from its first to its last element (marked initialised after each run)
    std::size_t aux_bytes = 0;  // the same for the GELU's aux output
  };
  // Every field of a GemmCall, compared as a tuple: the lookup runs for every GEMM of every
  // step, so no string is built for it.
  using Key = std::tuple<bool, bool, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                         gemm::DType, gemm::DType, gemm::DType, float, float, const void*, const void*, const void*, fp8::ScaleMode,
                         fp8::ScaleMode, bool, const float*, float*, void*, std::int64_t, const void*, void*, gemm::DType, const void*>;
  static Key key_of(const GemmCall& c);
  // The key without the pointers (bias and scales): plans of one shape share a tuning.
  using ShapeKey =
      std::tuple<bool, bool, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, gemm::DType,
                 gemm::DType, gemm::DType, float, bool, fp8::ScaleMode, fp8::ScaleMode, bool, gemm::Epilogue, gemm::DType, bool>;
  static ShapeKey shape_key_of(const GemmCall& c);
  // Picks the algorithm of a new plan among the heuristic's candidates (timing them on A, B, D
  // when this shape was not tuned yet); returns its index.
  std::size_t choose(const GemmCall& c, const Plan& plan, const std::vector<cublasLtMatmulHeuristicResult_t>& candidates, const void* A,
                     const void* B, void* D, const char* what);
  // The trial's time per run (ms; the least of three rounds), infinity if cuBLASLt refuses it.
  double time_algo(const Plan& plan, const cublasLtMatmulAlgo_t& algo, const void* A, const void* B, void* D, const void* C);
  cudaStream_t stream_;
  int algos_ = 1;
  std::map<ShapeKey, nlohmann::json> tuned_;  // each tuned shape's record, as tuning() lists it
  int untuned_accumulating_ = 0;
  gemm::LtHandle handle_;
  core::DeviceBuffer workspace_;
  std::map<Key, Plan> plans_;
};

}  // namespace fp8scope::gpu_model
