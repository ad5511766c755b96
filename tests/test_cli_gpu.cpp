// The command line where it needs a GPU: device indices the machine lacks, and points that
// fault the device or hang (recorded as crashed, the next point in a fresh worker).
#include "cli_test_util.hpp"
#include "fp8scope/core/result_store.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

using namespace fp8scope::test;
namespace fs = std::filesystem;

namespace {
// The machine's GPU count as `fp8scope env` reports it (0 without a GPU or without CUDA).
int gpu_count(std::string& why) {
  Exec env = run(kTool + " env");
  const auto j = nlohmann::json::parse(env.out);
  why = j.value("gpu_reason", std::string("?"));
  return j.value("gpu_count", 0);
}
}  // namespace

// --device N on a machine that has GPUs but not N is a usage error (exit 2, naming how many
// there are), not a sweep of skipped points. Without any GPU it cannot be told apart from
// "no GPU", where every point is recorded as skipped (tested below).
TEST(Cli, DeviceTheMachineLacksIsAUsageError) {
  std::string why;
  const int n = gpu_count(why);
  if (n == 0) GTEST_SKIP() << "needs a GPU: " << why;
  const std::string cfg = write("dev.json", R"({"probe":"train","name":"dev","axes":{"backend":["gpu"],"steps":[2]}})");
  Exec r = run(std::string(PROBE_TRAIN) + " --config " + cfg + " --out " + ::testing::TempDir() + "/dev --device " + std::to_string(n));
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(fmt::format("--device {}: this machine has {} GPU", n, n)), std::string::npos) << r.err;
}
