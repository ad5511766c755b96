// Crash isolation: a point that aborts or hangs is recorded as crashed; no completed record is
// lost, none duplicated; the sweep finishes in fresh workers.
#include "fp8scope/core/result_store.hpp"
#include "fp8scope/core/runner.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <thread>

using namespace fp8scope::core;

namespace {
std::string prefix(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/fp8scope_runner_" + name;
  std::filesystem::remove_all(dir);
  return dir + "/out";
}
std::vector<json> points(int n) {
  std::vector<json> p;
  for (int i = 0; i < n; ++i) p.push_back({{"i", i}});
  return p;
}
std::vector<std::string> keys(int n) {
  std::vector<std::string> k;
  for (int i = 0; i < n; ++i) k.push_back("i=" + std::to_string(i));
  return k;
}
// Points 2 and 5 abort, point 4 segfaults; the rest succeed and report their pid.
Record crashy(const json& p, const std::string& key) {
  const int i = p["i"];
  if (i == 2 || i == 5) std::abort();
  if (i == 4) std::raise(SIGSEGV);
  Record r = make_record(key, p, Outcome::ok);
  r.data["pid"] = int(::getpid());
  return r;
}
const json kHeader = {{"schema_version", kSchemaVersion}, {"meta", json::object()}, {"env", json::object()}};
RunnerOptions quiet_isolated() {
  RunnerOptions o;
  o.quiet = true;
  return o;
}
}  // namespace

TEST(Runner, CrashingPointsAreRecordedAndTheSweepFinishes) {
  const std::string p = prefix("crash");
  SweepSummary s;
  {
    JsonlWriter w(p, false, kHeader);
    s = run_sweep(points(8), keys(8), crashy, w, quiet_isolated());
  }
  EXPECT_EQ(s.ran, 8u);
  EXPECT_EQ(s.by_outcome["crashed"], 3u);
  EXPECT_EQ(s.by_outcome["ok"], 5u);
  EXPECT_EQ(s.workers_started, 4u);  // the first, then one after each crash
  ResultFile f = fold_results(p);
  ASSERT_EQ(f.records.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(f.records[i].key, "i=" + std::to_string(i));
  EXPECT_EQ(f.records[2].outcome, Outcome::crashed);
  EXPECT_EQ(f.records[2].data["crash"]["signal"], SIGABRT);
  EXPECT_NE(f.records[2].reason.find("signal 6"), std::string::npos) << f.records[2].reason;
  EXPECT_EQ(f.records[4].data["crash"]["signal"], SIGSEGV);
  // Points ran outside this process.
  EXPECT_NE(f.records[0].data["pid"], int(::getpid()));
}

TEST(Runner, ResumeRunsOnlyWhatIsMissingAndNeverDuplicates) {
  const std::string p = prefix("resume");
  {
    JsonlWriter w(p, false, kHeader);
    run_sweep(points(3), keys(3), crashy, w, quiet_isolated());  // 0,1 ok; 2 crashed
  }
  int calls = 0;
  {
    JsonlWriter w(p, true, kHeader);
    auto counting = [&](const json& pt, const std::string& k) {
      ++calls;
      return make_record(k, pt, Outcome::ok);
    };
    RunnerOptions o = quiet_isolated();
    o.isolate = false;  // count calls in this process
    SweepSummary s = run_sweep(points(6), keys(6), counting, w, o);
    EXPECT_EQ(s.resumed, 3u);
    EXPECT_EQ(s.ran, 3u);
  }
  EXPECT_EQ(calls, 3);
  ResultFile f = fold_results(p);
  EXPECT_EQ(f.records.size(), 6u);
  EXPECT_EQ(read_results(p + ".jsonl").records.size(), 6u);  // no duplicate lines either
}

TEST(Runner, HungPointTimesOut) {
  const std::string p = prefix("hang");
  JsonlWriter w(p, false, kHeader);
  auto hang = [](const json& pt, const std::string& k) {
    if (pt["i"] == 1) std::this_thread::sleep_for(std::chrono::seconds(60));
    return make_record(k, pt, Outcome::ok);
  };
  RunnerOptions o = quiet_isolated();
  o.point_timeout_s = 0.5;
  SweepSummary s = run_sweep(points(3), keys(3), hang, w, o);
  EXPECT_EQ(s.by_outcome["crashed"], 1u);
  EXPECT_EQ(s.by_outcome["ok"], 2u);
}

TEST(Runner, ExceptionsAndRestartRequests) {
  const std::string p = prefix("restart");
  JsonlWriter w(p, false, kHeader);
  auto fn = [](const json& pt, const std::string& k) -> Record {
    if (pt["i"] == 0) throw std::runtime_error("boom");
    if (pt["i"] == 1) request_worker_restart();  // e.g. a sticky CUDA error
    return make_record(k, pt, Outcome::ok);
  };
  SweepSummary s = run_sweep(points(3), keys(3), fn, w, quiet_isolated());
  EXPECT_EQ(s.by_outcome["crashed"], 1u);
  EXPECT_EQ(s.by_outcome["ok"], 2u);
  // The exception retires its worker (its state is suspect), and so does the request: each
  // point ran in a worker of its own.
  EXPECT_EQ(s.workers_started, 3u);
}

TEST(Runner, RunInChild) {
  EXPECT_EQ(run_in_child([] { return json{{"pid", int(::getpid())}}; })["pid"].get<int>() != int(::getpid()), true);
  EXPECT_THROW(run_in_child([]() -> json { std::abort(); }), std::runtime_error);
}
