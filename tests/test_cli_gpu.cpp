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

// A point that faults the device (trap, illegal address) or hangs past --point-timeout is
// recorded as crashed with the reason; the next point runs in a fresh worker and succeeds;
// nothing recorded before is lost, and --resume reruns nothing.
TEST(Cli, DeviceFaultsAreCrashedPointsAndTheSweepGoesOn) {
  std::string why;
  if (gpu_count(why) == 0) GTEST_SKIP() << "needs a GPU: " << why;
  const std::string dir = ::testing::TempDir() + "/faults";
  fs::remove_all(dir);
  const std::string out = dir + "/faults";
  const std::string cmd =
      std::string(PROBE_GEMM) + " --config " + FP8SCOPE_SOURCE_DIR "/configs/fault_injection.json --out " + out + " --point-timeout 20";
  Exec r = run(cmd);
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  const auto f = fp8scope::core::read_results(out + ".json");
  ASSERT_EQ(f.records.size(), 7u);
  using fp8scope::core::Outcome;
  const std::vector<Outcome> want = {Outcome::ok, Outcome::crashed, Outcome::ok, Outcome::crashed,
                                     Outcome::ok, Outcome::crashed, Outcome::ok};
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(f.records[i].outcome, want[i]) << i << ": " << f.records[i].reason;
  EXPECT_NE(f.records[1].reason.find("injected device fault (trap): cuda"), std::string::npos) << f.records[1].reason;
  EXPECT_EQ(f.records[1].reason.find("cudaSuccess"), std::string::npos) << f.records[1].reason;
  EXPECT_NE(f.records[3].reason.find("injected device fault (illegal_address): cudaErrorIllegalAddress"), std::string::npos)
      << f.records[3].reason;
  EXPECT_NE(f.records[5].reason.find("timed out after 20 s"), std::string::npos) << f.records[5].reason;
  // Each fault retired its worker: at least four workers for seven points.
  EXPECT_NE(r.out.find("worker processes"), std::string::npos);
  const auto before = fp8scope::core::read_results(out + ".jsonl").records.size();
  Exec again = run(cmd + " --resume");
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.out.find("resuming: 7 already recorded"), std::string::npos) << again.out;
  EXPECT_EQ(fp8scope::core::read_results(out + ".jsonl").records.size(), before);
}
