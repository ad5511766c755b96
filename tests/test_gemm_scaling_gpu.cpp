// Scale modes of FP8 GEMM operands on the GPU: the block quantisation kernels give the host
// emulation's bits (codes, block scales, the scale tensor cuBLASLt reads, the underflow count)
// in both storage orders; every scale-mode pair cuBLASLt accepts computes what the reference
// computes with the same block scales (a layout mistake would show as `incorrect`); finer
// scales are more accurate on outlier-structured data.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/gemm/gemm_runner.hpp"
#include "fp8scope/gemm/scaled_inputs.cuh"
#include "gemm_test_util.hpp"
#include "gpu_test_util.hpp"

#include <cstring>
#include <iostream>
#include <map>
#include <vector>

using namespace fp8scope;
using namespace fp8scope::gemm;
using core::Outcome;

namespace {
const ScaleMode kAll[] = {ScaleMode::tensor, ScaleMode::outer_vec,   ScaleMode::vec128,
                          ScaleMode::blk128, ScaleMode::vec32_ue8m0, ScaleMode::vec16_ue4m3};

GemmRunOptions quick() {
  GemmRunOptions o = quick_gemm_options();
  o.autotune = false;  // the heuristic's first algorithm is what these tests check
  return o;
}

bool refused(Outcome o) { return o == Outcome::heuristic_unsupported || o == Outcome::no_algorithm || o == Outcome::run_rejected; }
}  // namespace

TEST(GemmScalingGpu, BlockQuantisationMatchesTheHostEmulationBitForBit) {
  FP8SCOPE_REQUIRE_GPU();
  const std::int64_t outer = 300, inner = 528;
  for (bool k_fastest : {true, false})
    for (ScaleMode m : kAll)
      for (DType t : {DType::e4m3, DType::e5m2}) {
        const ScaleGeometry g = scale_geometry(m, outer, inner);
        const OperandIndex idx{k_fastest, k_fastest ? inner : outer};
        const std::int64_t count = outer * inner;
        core::DeviceBuffer src(std::size_t(count) * 4), amax(std::size_t(g.blocks()) * 4), dq(std::size_t(g.blocks()) * 4),
            lt(static_cast<std::size_t>(g.lt_elements() * g.lt_element_bytes())), codes(static_cast<std::size_t>(count)), lost(8);
        FP8S_CUDA(cudaMemset(amax.get(), 0, amax.size()));
        FP8S_CUDA(cudaMemset(lt.get(), 0, lt.size()));
        FP8S_CUDA(cudaMemset(lost.get(), 0, 8));
        fill_source(src.as<float>(), idx, g, count, InputPattern::outliers, 5, nullptr);
        block_amax(src.as<float>(), idx, g, amax.as<float>(), nullptr);
        block_scales(amax.as<float>(), g, t, dq.as<float>(), lt.get(), nullptr);
        quantize_operand(src.as<float>(), idx, g, dq.as<float>(), codes.get(), t, lost.as<unsigned long long>(), nullptr);
        FP8S_CUDA(cudaDeviceSynchronize());
        const auto stored = download<float>(src, std::size_t(count));
        std::vector<float> logical(static_cast<std::size_t>(count));
        for (std::int64_t o = 0; o < outer; ++o)
          for (std::int64_t k = 0; k < inner; ++k) logical[std::size_t(o * inner + k)] = stored[std::size_t(idx.at(o, k))];
        const fp8::Format f = t == DType::e5m2 ? fp8::Format::e5m2 : fp8::Format::e4m3;
        const BlockQuantized host = quantize_blocks(logical, outer, inner, m, f);
        const std::string what = to_string(m) + (t == DType::e5m2 ? " e5m2" : " e4m3") + (k_fastest ? " k-fastest" : " outer-fastest");
        EXPECT_EQ(download<float>(dq, host.dequant.size()), host.dequant) << what;
        EXPECT_EQ(download<std::uint8_t>(lt, host.lt.size()), host.lt) << what;
        const auto dev_codes = download<std::uint8_t>(codes, std::size_t(count));
        std::int64_t mismatched = 0;
        for (std::int64_t o = 0; o < outer; ++o)
          for (std::int64_t k = 0; k < inner; ++k)
            mismatched += dev_codes[std::size_t(idx.at(o, k))] != host.codes[std::size_t(o * inner + k)];
        EXPECT_EQ(mismatched, 0) << what;
        EXPECT_EQ(std::int64_t(download<unsigned long long>(lost, 1)[0]), host.underflow) << what;
      }
}

TEST(GemmScalingGpu, EveryAcceptedScaleModePairMatchesTheReference) {
  FP8SCOPE_REQUIRE_GPU();
  GemmRunner runner(0, quick());
  int ran = 0;
  std::string seen;
  // The pairs cuBLASLt documents (the same mode on both, and 1x128 with 128x128 either way);
  // mixed per-tensor / per-row / block pairs are left to the isolated workers of probe_gemm,
  // where a library that misreads a scale tensor cannot take the test process down.
  std::vector<std::pair<ScaleMode, ScaleMode>> pairs = {{ScaleMode::vec128, ScaleMode::blk128}, {ScaleMode::blk128, ScaleMode::vec128}};
  for (ScaleMode m : kAll) pairs.push_back({m, m});
  for (auto [am, bm] : pairs) {
    GemmSpec s;
    s.m = 512, s.n = 384, s.k = 640;
    s.a_scale = am, s.b_scale = bm;
    for (bool fast : {true, false}) {
      s.fast_accum = fast;
      const core::Record r = runner.run(s, "t", core::json::object());
      const std::string what = to_string(am) + " x " + to_string(bm) + (fast ? "" : " noFA");
      std::cout << what << std::endl;  // named before it runs, should it take the process down
      seen += what + ": " + std::string(core::to_string(r.outcome)) + "\n";
      // Random power-of-two block scales: a scale read from the wrong slot is a factor of up
      // to 64 on a block, far outside the tolerance.
      if (r.outcome == Outcome::ok) {
        ++ran;
        EXPECT_LT(r.data["accuracy"]["rel_error"].get<double>(), r.data["accuracy"]["tolerance"].get<double>()) << what;
      } else {
        EXPECT_TRUE(refused(r.outcome)) << what << ": " << core::to_string(r.outcome) << " " << r.reason;
      }
    }
  }
  EXPECT_GT(ran, 0) << seen;
  std::cout << seen;
}

TEST(GemmScalingGpu, FinerScalesAreMoreAccurateOnOutliers) {
  FP8SCOPE_REQUIRE_GPU();
  GemmRunner runner(0, quick());
  std::map<std::string, core::Record> rec;
  for (ScaleMode m : {ScaleMode::tensor, ScaleMode::outer_vec, ScaleMode::vec128}) {
    GemmSpec s;
    s.m = 512, s.n = 512, s.k = 1024;
    s.a_scale = s.b_scale = m;
    s.fast_accum = false;
    s.inputs = InputPattern::outliers;
    rec[to_string(m)] = runner.run(s, "t", core::json::object());
  }
  const core::Record& t = rec["tensor"];
  ASSERT_EQ(t.outcome, Outcome::ok) << t.reason;
  EXPECT_GT(t.data["accuracy"]["a_underflow"].get<double>(), 0.01);  // per-tensor scaling flushes the small rows
  for (const char* finer : {"outer_vec", "vec128"}) {
    const core::Record& r = rec[finer];
    if (r.outcome != Outcome::ok) {
      EXPECT_TRUE(refused(r.outcome)) << finer << ": " << r.reason;
      continue;
    }
    EXPECT_LT(r.data["accuracy"]["quant_rel_error"].get<double>(), t.data["accuracy"]["quant_rel_error"].get<double>()) << finer;
    EXPECT_LT(r.data["accuracy"]["a_underflow"].get<double>(), t.data["accuracy"]["a_underflow"].get<double>()) << finer;
    // Per-tensor scaling loses whole small rows: their own error is large even when the
    // whole-matrix error, dominated by the largest rows, is not.
    EXPECT_LT(r.data["accuracy"]["row_error_p90"].get<double>(), t.data["accuracy"]["row_error_p90"].get<double>()) << finer;
  }
}
