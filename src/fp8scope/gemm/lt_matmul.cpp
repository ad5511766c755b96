#include "fp8scope/gemm/lt_matmul.hpp"

#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/gemm/verdict.hpp"

#include <fmt/format.h>

#include <functional>
#include <mutex>
#include <stdexcept>

namespace fp8scope::gemm {

static_assert(CUBLAS_STATUS_SUCCESS == kStatusSuccess && CUBLAS_STATUS_NOT_SUPPORTED == kStatusNotSupported &&
                  CUBLAS_STATUS_INVALID_VALUE == kStatusInvalidValue,
              "verdict.hpp's status numbers must match cuBLAS");

namespace {

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::e4m3: return CUDA_R_8F_E4M3;
    case DType::e5m2: return CUDA_R_8F_E5M2;
    case DType::bf16: return CUDA_R_16BF;
    case DType::fp16: return CUDA_R_16F;
    case DType::fp32: return CUDA_R_32F;
  }
  return CUDA_R_32F;
}

cublasLtEpilogue_t lt_epilogue(Epilogue e) {
  switch (e) {
    case Epilogue::none: return CUBLASLT_EPILOGUE_DEFAULT;
    case Epilogue::bias: return CUBLASLT_EPILOGUE_BIAS;
    case Epilogue::gelu: return CUBLASLT_EPILOGUE_GELU;
    case Epilogue::gelu_aux: return CUBLASLT_EPILOGUE_GELU_AUX;
    case Epilogue::bias_gelu: return CUBLASLT_EPILOGUE_GELU_BIAS;
    case Epilogue::bias_gelu_aux: return CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    case Epilogue::dgelu: return CUBLASLT_EPILOGUE_DGELU;
    case Epilogue::dgelu_bgrad: return CUBLASLT_EPILOGUE_DGELU_BGRAD;
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

std::int32_t lt_scale_mode(ScaleMode m) {
  switch (m) {
    case ScaleMode::tensor: return CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F;
    case ScaleMode::outer_vec: return CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    case ScaleMode::vec128: return CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    case ScaleMode::blk128: return CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
    case ScaleMode::vec32_ue8m0: return CUBLASLT_MATMUL_MATRIX_SCALE_VEC32_UE8M0;
    case ScaleMode::vec16_ue4m3: return CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3;
  }
  return CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F;
}

int alignment_of(const void* p) {
  const auto v = reinterpret_cast<std::uintptr_t>(p);
  int a = 1;
  while (a < 256 && (v % (2 * a)) == 0) a *= 2;
  return a;
}

std::mutex g_log_mutex;
std::vector<std::string> g_log;
void log_callback(int level, const char* fn, const char* msg) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  if (g_log.size() < 256) g_log.push_back(fmt::format("[{}] {}: {}", level, fn ? fn : "", msg ? msg : ""));
}

}  // namespace

LtHandle::LtHandle() {
  if (cublasLtCreate(&h_) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasLtCreate failed");
}
LtHandle::~LtHandle() { cublasLtDestroy(h_); }

LtMatmul::LtMatmul(const GemmSpec& spec, const LtPointers& ptrs) : spec_(spec), p_(ptrs), alpha_(spec.alpha), beta_(spec.beta) {
  auto step = [&](cublasStatus_t st, const char* what) {
    if (setup_status_ == 0 && st != CUBLAS_STATUS_SUCCESS) {
      setup_status_ = int(st);
      setup_step_ = what;
    }
  };
  auto attr = [&](cublasLtMatmulDescAttributes_t a, const void* v, std::size_t n, const char* what) {
    if (setup_status_ == 0) step(cublasLtMatmulDescSetAttribute(op_, a, v, n), what);
  };
  step(cublasLtMatmulDescCreate(&op_, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  const cublasOperation_t ta = spec.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = spec.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  attr(CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta, "TRANSA");
  attr(CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb, "TRANSB");
  const bool fp8 = is_fp8(spec.a) || is_fp8(spec.b);
  if (fp8) {
    const std::int8_t fast = spec.fast_accum ? 1 : 0;
    attr(CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof fast, "FAST_ACCUM");
    attr(CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &p_.a_scale, sizeof p_.a_scale, "A_SCALE_POINTER");
    attr(CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &p_.b_scale, sizeof p_.b_scale, "B_SCALE_POINTER");
    // Per-tensor is cuBLASLt's default; anything else is set, so a library that does not know
    // the attribute refuses it here (recorded as the setup step that failed).
    if (spec.a_scale != ScaleMode::tensor) {
      const std::int32_t mode = lt_scale_mode(spec.a_scale);
      attr(CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof mode, "A_SCALE_MODE");
    }
    if (spec.b_scale != ScaleMode::tensor) {
      const std::int32_t mode = lt_scale_mode(spec.b_scale);
      attr(CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof mode, "B_SCALE_MODE");
    }
  }
  if (is_fp8(spec.d)) {
    attr(CUBLASLT_MATMUL_DESC_D_SCALE_POINTER, &p_.d_scale, sizeof p_.d_scale, "D_SCALE_POINTER");
    attr(CUBLASLT_MATMUL_DESC_AMAX_D_POINTER, &p_.amax_d, sizeof p_.amax_d, "AMAX_D_POINTER");
  }
  if (spec.epilogue != Epilogue::none) {
    const cublasLtEpilogue_t ep = lt_epilogue(spec.epilogue);
    attr(CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep, "EPILOGUE");
    const cudaDataType_t et = cuda_type(epilogue_type(spec));
    if (adds_bias(spec.epilogue) || writes_bias_grad(spec.epilogue)) {
      attr(CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p_.bias, sizeof p_.bias, "BIAS_POINTER");
      attr(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &et, sizeof et, "BIAS_DATA_TYPE");
    }
    if (writes_aux(spec.epilogue) || reads_aux(spec.epilogue)) {
      attr(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &p_.aux, sizeof p_.aux, "EPILOGUE_AUX_POINTER");
      attr(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &p_.aux_ld, sizeof p_.aux_ld, "EPILOGUE_AUX_LD");
      const cudaDataType_t at = cuda_type(aux_type(spec));
      // An FP8 aux is written at unit scale (no AUX_SCALE_POINTER) and without an amax: the
      // model keeps the GELU input in E4M3 at unit scale (model::Fp8ModelConfig::gelu_input_e4m3).
      if (fp8 || spec.aux) attr(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, &at, sizeof at, "EPILOGUE_AUX_DATA_TYPE");
    }
  }
  auto layout = [&](cublasLtMatrixLayout_t* l, DType t, std::int64_t rows, std::int64_t cols, std::int64_t ld, const char* what) {
    if (setup_status_) return;
    step(cublasLtMatrixLayoutCreate(l, cuda_type(t), std::uint64_t(rows), std::uint64_t(cols), ld), what);
    if (spec.batch > 1 && !setup_status_) {
      const std::int32_t count = std::int32_t(spec.batch);
      const std::int64_t stride = ld * cols;
      step(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count), "BATCH_COUNT");
      step(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride),
           "STRIDED_BATCH_OFFSET");
    }
  };
  layout(&a_, spec.a, spec.a_rows(), spec.a_cols(), spec.lda_eff(), "A layout");
  layout(&b_, spec.b, spec.b_rows(), spec.b_cols(), spec.ldb_eff(), "B layout");
  layout(&c_, spec.c, spec.m, spec.n, spec.c == spec.d ? spec.ldd_eff() : spec.m, "C layout");
  layout(&d_, spec.d, spec.m, spec.n, spec.ldd_eff(), "D layout");
}

LtMatmul::~LtMatmul() {
  for (auto l : {a_, b_, c_, d_})
    if (l) cublasLtMatrixLayoutDestroy(l);
  if (op_) cublasLtMatmulDescDestroy(op_);
}

LtMatmul::Heuristic LtMatmul::heuristic(const LtHandle& h, int max_algorithms, bool alignment_hints) const {
  Heuristic out;
  cublasLtMatmulPreference_t pref = nullptr;
  out.status = int(cublasLtMatmulPreferenceCreate(&pref));
  if (out.status) return out;
  const std::uint64_t ws = spec_.workspace_bytes;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  if (alignment_hints) {
    const std::uint32_t aa = alignment_of(p_.a), ab = alignment_of(p_.b), ad = alignment_of(p_.d), ac = alignment_of(p_.c);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof ac);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad, sizeof ad);
  }
  out.results.resize(std::size_t(std::max(1, max_algorithms)));
  int returned = 0;
  out.status =
      int(cublasLtMatmulAlgoGetHeuristic(h.get(), op_, a_, b_, c_, d_, pref, int(out.results.size()), out.results.data(), &returned));
  out.results.resize(out.status == 0 ? std::size_t(returned) : 0);
  cublasLtMatmulPreferenceDestroy(pref);
  return out;
}

int LtMatmul::run_on(const LtHandle& h, const cublasLtMatmulAlgo_t& algo, cudaStream_t stream, const void* a, const void* b, void* d,
                     void* workspace, const void* c) const {
  return int(
      cublasLtMatmul(h.get(), op_, &alpha_, a, a_, b, b_, &beta_, c ? c : d, c_, d, d_, &algo, workspace, spec_.workspace_bytes, stream));
}

int LtMatmul::run(const LtHandle& h, const cublasLtMatmulAlgo_t& algo, cudaStream_t stream) const {
  return int(cublasLtMatmul(h.get(), op_, &alpha_, p_.a, a_, p_.b, b_, &beta_, p_.c, c_, p_.d, d_, &algo, p_.workspace,
                            spec_.workspace_bytes, stream));
}

nlohmann::json algo_json(const cublasLtMatmulHeuristicResult_t& r) {
  auto get = [&](cublasLtMatmulAlgoConfigAttributes_t a) -> long long {
    std::uint32_t v = 0;
    std::size_t written = 0;
    if (cublasLtMatmulAlgoConfigGetAttribute(&r.algo, a, &v, sizeof v, &written) != CUBLAS_STATUS_SUCCESS) return -1;
    return v;
  };
  return {{"id", get(CUBLASLT_ALGO_CONFIG_ID)},
          {"tile", get(CUBLASLT_ALGO_CONFIG_TILE_ID)},
          {"stages", get(CUBLASLT_ALGO_CONFIG_STAGES_ID)},
          {"splitk", get(CUBLASLT_ALGO_CONFIG_SPLITK_NUM)},
          {"cluster", get(CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID)},
          {"swizzle", get(CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING)},
          {"custom", get(CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION)},
          {"waves", r.wavesCount},
          {"workspace_bytes", r.workspaceSize}};
}

void start_log_capture(int level) {
  // The callback gets every line; the default logger's own output goes nowhere.
  cublasLtLoggerOpenFile("/dev/null");
  cublasLtLoggerSetCallback(log_callback);
  set_log_level(level);
}

void set_log_level(int level) { cublasLtLoggerSetLevel(level); }

std::vector<std::string> take_log_lines() {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  std::vector<std::string> out;
  out.swap(g_log);
  return out;
}

// cuBLASLt gives the reason for a refusal only in its log at the info level (e.g. "The
// matrix A must be 4-byte aligned"). Repeat the refused call once with that level on and keep
// the error/info lines, without the API dumps.
nlohmann::json explain_refusal(const std::function<void()>& repeat_call, int restore_level) {
  cublasLtLoggerSetCallback(log_callback);
  take_log_lines();
  set_log_level(4);
  repeat_call();
  set_log_level(restore_level);
  nlohmann::json why = nlohmann::json::array();
  for (const auto& line : take_log_lines())
    if ((line.rfind("[1]", 0) == 0 || line.rfind("[4]", 0) == 0) && line.find("Adesc=") == std::string::npos) {
      const auto colon = line.find(": ");
      why.push_back(colon == std::string::npos ? line : line.substr(colon + 2));
    }
  return why;
}

}  // namespace fp8scope::gemm
