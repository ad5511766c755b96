// The report's benchmark section: bench_kernels' copy fractions marked against the 80 % target
// and counted in the text; bench_step's FP8 steps against their BF16 twins; the kernels the
// model picks against their mma.sync twins.
#include "fp8scope/core/result_store.hpp"
#include "fp8scope/report/report.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

using namespace fp8scope;

namespace {

// Each test writes in a directory of its own: ctest runs the tests of this file as parallel
// processes, and two of them name their file attention.json.
std::string report_of(const std::string& file, const std::string& json_text) {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) /
                                    ("report_bench_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / file).string();
  std::ofstream(path) << json_text;
  report::ReportOptions opt;
  opt.results.push_back({path, core::read_results(path)});
  return report::render_markdown(report::build_report(opt), report::Flavor::markdown);
}

}  // namespace

TEST(BenchReport, KernelsMarkedAgainstTheCopyTarget) {
  const std::string md = report_of("kernels.json", R"({"context":{},"benchmarks":[
    {"name":"copy/d2d_1GiB/manual_time","run_name":"copy/d2d_1GiB/manual_time","real_time":505.0,"time_unit":"us","frac_copy":1.0},
    {"name":"adamw/124M/manual_time","run_name":"adamw/124M/manual_time","real_time":901.0,"time_unit":"us","frac_copy":0.972},
    {"name":"layernorm/forward_fp8/manual_time","run_name":"layernorm/forward_fp8/manual_time","real_time":24.8,"time_unit":"us","frac_copy":0.359},
    {"name":"attention_flash/forward/manual_time","run_name":"attention_flash/forward/manual_time","real_time":162.0,"time_unit":"us","TFLOP/s":159.0}]})");
  EXPECT_NE(md.find("(the target): 1 of 2. Met: adamw/124M (97 %). Below: layernorm/forward_fp8 (36 %)."), std::string::npos) << md;
  EXPECT_NE(md.find("| 80 % of copy |"), std::string::npos) << md;
  EXPECT_NE(md.find("| - | 0.972 | met |"), std::string::npos) << md;  // TFLOP/s, frac_copy, target
  EXPECT_NE(md.find("| - | 0.359 | below |"), std::string::npos) << md;
  EXPECT_NE(md.find("| - | 1.000 | - |"), std::string::npos) << md;  // the copy is the yardstick
  EXPECT_EQ(md.find("vs BF16"), std::string::npos) << md;            // no steps in this file
}

TEST(BenchReport, Fp8StepsAgainstTheirBf16Twin) {
  const std::string md = report_of("steps.json", R"({"context":{},"benchmarks":[
    {"name":"a","run_name":"step/gpt2_124m/bf16/min_time:3.000/real_time","real_time":54.0,"time_unit":"ms","tokens/s":300000.0},
    {"name":"b","run_name":"step/gpt2_124m/fp8_fused/min_time:3.000/real_time","real_time":47.0,"time_unit":"ms","tokens/s":345000.0},
    {"name":"c","run_name":"step/gpt2_124m/bf16_flash/min_time:3.000/real_time","real_time":37.0,"time_unit":"ms","tokens/s":440000.0},
    {"name":"d","run_name":"step/gpt2_124m/fp8_fused_flash/min_time:3.000/real_time","real_time":30.0,"time_unit":"ms","tokens/s":550000.0}]})");
  EXPECT_NE(md.find("fp8_fused/min_time:3.000/real_time | 47.00 | ms | 345000 | 1.150x |"), std::string::npos) << md;
  EXPECT_NE(md.find("fp8_fused_flash/min_time:3.000/real_time | 30.00 | ms | 550000 | 1.250x |"), std::string::npos) << md;
  EXPECT_NE(md.find("bf16_flash/min_time:3.000/real_time | 37.00 | ms | 440000 | - |"), std::string::npos) << md;
  EXPECT_EQ(md.find("80 % of copy"), std::string::npos) << md;
}

// A benchmark timed both as the model picks it and as the kernels it replaced (".../mma_sync" or
// ".../block_per_row" inserted before the timing suffix, or after a shape component) gets the
// replaced kernels' time over its own; the twins themselves and benchmarks without one get "-".
TEST(BenchReport, KernelsAgainstTheKernelsTheyReplaced) {
  const std::string md = report_of("attention.json", R"({"context":{},"benchmarks":[
    {"name":"a","run_name":"attention_flash/forward/manual_time","real_time":132.0,"time_unit":"us","TFLOP/s":196.0},
    {"name":"b","run_name":"attention_flash/forward/hs128/manual_time","real_time":110.0,"time_unit":"us","TFLOP/s":235.0},
    {"name":"c","run_name":"attention_flash/forward/mma_sync/manual_time","real_time":154.0,"time_unit":"us","TFLOP/s":167.0},
    {"name":"d","run_name":"attention_flash/forward/hs128/mma_sync/manual_time","real_time":157.0,"time_unit":"us","TFLOP/s":164.0},
    {"name":"e","run_name":"attention_flash/backward/manual_time","real_time":397.0,"time_unit":"us","TFLOP/s":162.0},
    {"name":"f","run_name":"layernorm/backward/d1280/manual_time","real_time":60.0,"time_unit":"us","TFLOP/s":0.0},
    {"name":"g","run_name":"layernorm/backward/d1280/block_per_row/manual_time","real_time":90.0,"time_unit":"us","TFLOP/s":0.0}]})");
  EXPECT_NE(md.find("| attention_flash/forward/manual_time | 132.00 | us | 196 | 1.17x |"), std::string::npos) << md;
  EXPECT_NE(md.find("| attention_flash/forward/hs128/manual_time | 110.00 | us | 235 | 1.43x |"), std::string::npos) << md;
  EXPECT_NE(md.find("| attention_flash/forward/mma_sync/manual_time | 154.00 | us | 167 | - |"), std::string::npos) << md;
  EXPECT_NE(md.find("| attention_flash/backward/manual_time | 397.00 | us | 162 | - |"), std::string::npos) << md;
  EXPECT_NE(md.find("the kernels the model picks over the ones they replaced: attention_flash/forward 1.17x, attention_flash/forward/hs128 "
                    "1.43x, layernorm/backward/d1280 1.50x."),
            std::string::npos)
      << md;
}

// Several kinds of replaced kernels for one benchmark (the fused attention's mma.sync kernels,
// its cp.async-fed wgmma ones, its TMA ones with a block per tile): each ratio, named by its kind.
TEST(BenchReport, KernelsAgainstEachKindTheyReplaced) {
  const std::string md = report_of("attention.json", R"({"context":{},"benchmarks":[
    {"name":"a","run_name":"attention_flash/forward/manual_time","real_time":124.0,"time_unit":"us","TFLOP/s":208.0},
    {"name":"b","run_name":"attention_flash/forward/mma_sync/manual_time","real_time":155.0,"time_unit":"us","TFLOP/s":166.0},
    {"name":"c","run_name":"attention_flash/forward/cp_async/manual_time","real_time":131.0,"time_unit":"us","TFLOP/s":197.0},
    {"name":"d","run_name":"attention_flash/forward/block_per_tile/manual_time","real_time":136.4,"time_unit":"us","TFLOP/s":189.0}]})");
  EXPECT_NE(md.find("| attention_flash/forward/manual_time | 124.00 | us | 208 | 1.10x over block_per_tile, 1.06x over cp_async, 1.25x "
                    "over mma_sync |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| attention_flash/forward/cp_async/manual_time | 131.00 | us | 197 | - |"), std::string::npos) << md;
  EXPECT_NE(md.find("attention_flash/forward 1.10x over block_per_tile, 1.06x over cp_async, 1.25x over mma_sync"), std::string::npos)
      << md;
}

// The fused attention the model picks, against its targets (forward >= 400, backward >= 300
// TFLOP/s): each benchmark's rate, the replaced twins left out, counted in the text and summary.
TEST(BenchReport, AttentionAgainstItsTargets) {
  const std::string md = report_of("attention_targets.json", R"({"context":{},"benchmarks":[
    {"name":"a","run_name":"attention_flash/forward/manual_time","real_time":107.4,"time_unit":"us","TFLOP/s":239.9},
    {"name":"b","run_name":"attention_flash/forward/hs128/manual_time","real_time":79.0,"time_unit":"us","TFLOP/s":326.3},
    {"name":"c","run_name":"attention_flash/backward/manual_time","real_time":358.1,"time_unit":"us","TFLOP/s":179.9},
    {"name":"d","run_name":"attention_flash/backward/hs128/manual_time","real_time":200.0,"time_unit":"us","TFLOP/s":322.0},
    {"name":"e","run_name":"attention_flash/forward/cp_async/manual_time","real_time":127.3,"time_unit":"us","TFLOP/s":202.4}]})");
  const std::string want =
      "the fused attention the model picks against its targets (forward >= 400, backward >= 300 TFLOP/s): 1 of 4 met: "
      "attention_flash/forward 240 of 400, attention_flash/forward/hs128 326 of 400, attention_flash/backward 180 of 300, "
      "attention_flash/backward/hs128 322 of 300.";
  EXPECT_NE(md.find("T" + want.substr(1)), std::string::npos) << md;
  EXPECT_NE(md.find("Benchmarks 'attention_targets.json': " + want), std::string::npos) << md;
}
