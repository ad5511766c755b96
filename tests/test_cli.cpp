// The executables as a user meets them: --help/--version, one clear line and exit code 2 for
// every kind of bad input, crash isolation and resume end to end.
#include "cli_test_util.hpp"
#include "fp8scope/core/result_store.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace fp8scope::core;
namespace fs = std::filesystem;

using namespace fp8scope::test;

TEST(Cli, HelpAndVersion) {
  for (const auto& exe : {kProbe, kTool}) {
    Exec h = run(exe + " --help");
    EXPECT_EQ(h.code, 0) << exe;
    EXPECT_NE(h.out.find("Usage"), std::string::npos) << h.out;
    Exec v = run(exe + " --version");
    EXPECT_EQ(v.code, 0);
    EXPECT_NE(v.out.find("fp8scope "), std::string::npos) << v.out;
  }
}

TEST(Cli, BadInputIsOneLineAndExitTwo) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--config /nonexistent.json", "/nonexistent.json: cannot open file"},
      {"--config " + write("notjson.json", "probe: selftest"), "not valid JSON"},
      {"--config " + write("type.json", R"({"probe":"selftest","axes":{"i":["one"]}})"), "axes.i[0]: 'one' is not an integer"},
      {"--config " + write("unknown.json", R"({"probe":"selftest","axis":{}})"), "axis: unknown key"},
      {"--config " + write("range.json", R"({"probe":"selftest","settings":{"value":1000}})"),
       "settings.value: 1000 is out of range [0, 100]"},
      {"--config " + write("choice.json", R"({"probe":"selftest","axes":{"action":["explode"]}})"),
       "axes.action[0]: 'explode' is not one of ok, abort, segv, hang"},
      {"--config x.json --bogus-flag", "bogus"},
      {"", "--config is required"},
      {"--config x.json --point-timeout -3", "point-timeout"},
      // Names become file names: nothing that climbs out of the output folder or hides.
      {"--config " + write("up.json", R"({"probe":"selftest","name":"../../x"})"), "name: '../../x' is not a plain file name"},
      {"--config " + write("slash.json", R"({"probe":"selftest","name":"a/b"})"), "name: 'a/b' is not a plain file name"},
      {"--config " + write("dot.json", R"({"probe":"selftest","name":".hidden"})"), "is not a plain file name"},
      {"--config " + write("emptyname.json", R"({"probe":"selftest","name":""})"), "name: '' is not a plain file name"},
      // Strict JSON: repeated keys and bytes after the document, with line and column.
      {"--config " + write("dupkey.json", "{\"probe\":\"selftest\",\n \"axes\":{\"i\":[1]},\n \"axes\":{\"i\":[2]}}"),
       "duplicate key \"axes\" at line 3, column 2 (first at line 2, column 2)"},
      {"--config " + write("nul.json", std::string(R"({"probe":"selftest"})") + std::string(1, '\0') + "garbage"),
       "a NUL byte at line 1, column 21"},
      {"--config " + write("trailing.json", R"({"probe":"selftest"} {"probe":"selftest"})"), "expected end of input"},
      {"--config x.json --shard 3/3", "--shard: '3/3' is not I/N with 0 <= I < N"},
  };
  for (auto& [args, want] : cases) {
    Exec r = run(kProbe + " " + args);
    EXPECT_EQ(r.code, 2) << args;
    EXPECT_EQ(lines(r.err), 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(want), std::string::npos) << args << "\n" << r.err;
  }
  Exec r = run(kTool + " run /nonexistent_suite.json");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  r = run(kTool + " run " + write("suite.json", R"({"runs":[{"config":"x.json","extra":1}]})"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("extra: unknown key"), std::string::npos) << r.err;
  // A suite's own name and its sweeps' names become folders and files too.
  r = run(kTool + " run " + write("suite_up.json", R"({"suite":"../up","runs":[{"config":"x.json"}]})"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("suite: '../up' is not a plain file name"), std::string::npos) << r.err;
  write("sweep_up.json", R"({"probe":"selftest","name":"../../escaped"})");
  r = run(kTool + " run " + write("suite_sweep_up.json", R"({"runs":[{"config":"sweep_up.json"}]})"));
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("sweep_up.json: name: '../../escaped' is not a plain file name"), std::string::npos) << r.err;
}

TEST(Cli, CrashIsolationAndResumeEndToEnd) {
  const std::string out = ::testing::TempDir() + "/cli_sweep/out";
  fs::remove_all(fs::path(out).parent_path());
  const std::string cfg = write("crashy.json", R"({"probe":"selftest","name":"crashy",
    "zip":[{"i":[0,1,2,3,4],"action":["ok","abort","ok","segv","ok"]}],"settings":{"value":7}})");
  Exec r = run(kProbe + " --config " + cfg + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  ResultFile f = read_results(out + ".json");
  ASSERT_EQ(f.records.size(), 5u);
  EXPECT_EQ(f.records[1].outcome, Outcome::crashed);
  EXPECT_EQ(f.records[3].outcome, Outcome::crashed);
  EXPECT_EQ(f.records[4].outcome, Outcome::ok);
  EXPECT_EQ(f.records[4].data["metrics"]["value"], 7.0);
  EXPECT_EQ(f.meta["settings"]["value"], 7.0);
  EXPECT_TRUE(f.meta["argv"].is_array());
  EXPECT_TRUE(f.env.contains("git_sha"));
  EXPECT_TRUE(f.env.contains("gpu"));

  Exec again = run(kProbe + " --config " + cfg + " --out " + out + " --resume");
  ASSERT_EQ(again.code, 0);
  EXPECT_NE(again.out.find("resuming: 5 already recorded"), std::string::npos) << again.out;
  EXPECT_EQ(read_results(out + ".jsonl").records.size(), 5u);
}

// A point's line names only the axes that vary and fits 120 columns; -v prints full keys.
// (ctest's stdout is a pipe, so no status line is drawn.)
TEST(Cli, PointLinesAreShortUnlessVerbose) {
  const std::string out = ::testing::TempDir() + "/cli_lines/out";
  fs::remove_all(fs::path(out).parent_path());
  const std::string cfg = write("lines.json", R"({"probe":"selftest","name":"lines","axes":{"i":[0,1,2],"action":["ok","abort"]}})");
  Exec r = run(kProbe + " --config " + cfg + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("[1/6] ok         i=0,ok\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[2/6] crashed    i=0,abort  worker killed by signal 6"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("elapsed"), std::string::npos);  // not a terminal: plain lines
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) EXPECT_LE(line.size(), 120u) << line;
  fs::remove_all(fs::path(out).parent_path());
  Exec v = run(kProbe + " --config " + cfg + " --out " + out + " -v");
  ASSERT_EQ(v.code, 0) << v.err;
  EXPECT_NE(v.out.find("[1/6] ok         i=0,action=ok\n"), std::string::npos) << v.out;
}

TEST(Cli, EnvPrintsJson) {
  Exec r = run(kTool + " env");
  ASSERT_EQ(r.code, 0) << r.err;
  json e = json::parse(r.out);
  EXPECT_TRUE(e.contains("host"));
  EXPECT_TRUE(e.contains("git_sha"));
  EXPECT_TRUE(e.contains("gpu"));
  if (e["gpu"].is_null())
    EXPECT_FALSE(e["gpu_reason"].get<std::string>().empty());
  else
    EXPECT_GT(e["gpu"]["sm_count"].get<int>(), 0);
}

TEST(Cli, GateExitCodes) {
  const std::string d = FP8SCOPE_TEST_DATA "/gate/";
  Exec ok = run(kTool + " gate --baseline " + d + "baseline.json --current " + d + "baseline.json");
  EXPECT_EQ(ok.code, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("gate: passed"), std::string::npos);
  Exec slow = run(kTool + " gate --baseline " + d + "baseline.json --current " + d + "slower.json");
  EXPECT_EQ(slow.code, 1);
  EXPECT_NE(slow.out.find("FAIL     speed"), std::string::npos) << slow.out;
  Exec gpu = run(kTool + " gate --baseline " + d + "baseline.json --current " + d + "other_gpu.json");
  EXPECT_EQ(gpu.code, 2);
  EXPECT_EQ(lines(gpu.err), 1) << gpu.err;
  EXPECT_NE(gpu.err.find("different GPUs"), std::string::npos);
  EXPECT_EQ(run(kTool + " gate --force --baseline " + d + "baseline.json --current " + d + "other_gpu.json").code, 0);
  for (const std::string bad : {"truncated.json", "nonexistent.json"}) {
    Exec b = run(kTool + " gate --baseline " + d + "baseline.json --current " + d + bad);
    EXPECT_EQ(b.code, 2) << bad;
    EXPECT_EQ(lines(b.err), 1) << b.err;
  }
  const std::string empty = write("empty.json", "");
  Exec e = run(kTool + " gate --baseline " + d + "baseline.json --current " + empty);
  EXPECT_EQ(e.code, 2);
  EXPECT_NE(e.err.find("empty result file"), std::string::npos) << e.err;
}

TEST(Cli, ReportRendersWithoutFigures) {
  const std::string d = FP8SCOPE_TEST_DATA "/gate/";
  const std::string out = ::testing::TempDir() + "/rep/report.md";
  Exec r = run("FP8SCOPE_PLOTTER=none " + kTool + " report " + d + "baseline.json -o " + out + " --figures " + ::testing::TempDir() +
               "/rep/fig");
  EXPECT_EQ(r.code, 0) << r.err;
  std::ifstream in(out);
  std::string md((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(md.find("## Environment"), std::string::npos);
  EXPECT_NE(md.find("NVIDIA H200"), std::string::npos);
  Exec bad = run(kTool + " report " + d + "truncated.json");
  EXPECT_EQ(bad.code, 2);
  EXPECT_EQ(lines(bad.err), 1) << bad.err;
}

// --list runs nothing, GPU or not: the points' keys, and for probe_train each GPU point's
// device memory estimate.
TEST(Cli, TrainListPlansTheMemoryOfEachGpuPoint) {
  const std::string cfg = write("plantrain.json", R"({"probe":"train","axes":{"backend":["gpu"],"precision":["bf16","fp8"]}})");
  Exec r = run(std::string(PROBE_TRAIN) + " --config " + cfg + " --list");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines(r.out), 2) << r.out;
  EXPECT_NE(r.out.find("precision=bf16"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  memory ~"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("x the BF16 twin's"), std::string::npos) << r.out;
}

TEST(Cli, TrainConfigsRejectedBeforeAnyWork) {
  const std::string cfg = write("badtrain.json", R"({"probe":"train","axes":{"n_head":[4,5]}})");
  Exec r = run(std::string(PROBE_TRAIN) + " --config " + cfg + " --out " + ::testing::TempDir() + "/badtrain");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("n_head=5 does not divide d_model=64"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("[1/2]"), std::string::npos) << "no point may run: " << r.out;
}

// A token file that cannot be used is bad input, named before any point runs: not a
// `crashed` point as if the tool had failed. Also for probe_recipe, which trains the same way.
TEST(Cli, TokenFileProblemsStopTheSweepBeforeItStarts) {
  const std::string missing = ::testing::TempDir() + "/no_such_tokens.bin";
  std::uint16_t toks[8] = {1, 2, 3, 4, 5, 6, 7, 96};  // 96 >= vocab 64
  const std::string bad = ::testing::TempDir() + "/tokens_bad.bin";
  std::ofstream(bad, std::ios::binary).write(reinterpret_cast<const char*>(toks), sizeof toks);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {missing, missing + ": token file does not exist"},
      {bad, bad + ": token 96 at position 7 is not below vocab 64"},
  };
  for (const auto& [path, want] : cases)
    for (const std::string probe : {"train", "recipe"}) {
      const std::string cfg = write("tok_" + probe + ".json", R"({"probe":")" + probe + R"(","name":"tok","axes":{"vocab":[64],"data":[")" +
                                                                  path + R"("],"seq_len":[2],"batch":[1],"steps":[2]}})");
      Exec r = run(std::string(probe == "train" ? PROBE_TRAIN : PROBE_RECIPE) + " --config " + cfg + " --out " + ::testing::TempDir() +
                   "/tok_" + probe);
      EXPECT_EQ(r.code, 2) << probe << " " << path << "\n" << r.out;
      EXPECT_EQ(lines(r.err), 1) << r.err;
      EXPECT_NE(r.err.find(want), std::string::npos) << r.err;
      EXPECT_EQ(r.out.find("[1/1]"), std::string::npos) << "no point may run: " << r.out;
    }
}

TEST(Cli, TrainProbeInFp8OnTheCpuRecordsTapsAndGpuPointsSkipWithoutAGpu) {
  // precision fp8 on the CPU backend trains through the FP8 emulation and records the taps;
  // a gpu point on a machine without a GPU (or a build without CUDA) is recorded as skipped.
  const std::string cfg = write("train_fp8.json", R"({"probe":"train","name":"train_fp8",
    "axes":{"vocab":[31],"d_model":[16],"n_layer":[1],"n_head":[2],"max_seq":[8],"seq_len":[8],"batch":[2],"steps":[3],
            "warmup":[1],"precision":["fp8"],"fp8_linears":["qkv,fc1"]},
    "zip":[{"backend":["cpu","gpu"]}]})");
  const std::string out = ::testing::TempDir() + "/train_fp8";
  Exec r = run(std::string(PROBE_TRAIN) + " --config " + cfg + " --out " + out + " -q");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto res = read_results(out + ".json");
  ASSERT_EQ(res.records.size(), 2u);
  const auto& c = res.records[0];
  EXPECT_EQ(c.outcome, Outcome::ok) << c.reason;
  ASSERT_TRUE(c.data.contains("taps"));
  EXPECT_TRUE(c.data["taps"].contains("0.qkv.input"));
  EXPECT_TRUE(c.data["taps"].contains("0.fc1.grad"));
  EXPECT_FALSE(c.data["taps"].contains("0.proj.input"));  // not in fp8_linears
  EXPECT_FALSE(c.data["taps"].contains("-1.lm_head.input"));
  EXPECT_NE(res.records[1].outcome, Outcome::crashed) << res.records[1].reason;
  const bool has_gpu = run(kTool + " env").out.find("\"gpu\": null") == std::string::npos;
  if (!has_gpu) EXPECT_EQ(res.records[1].outcome, Outcome::skipped) << res.records[1].reason;
  // A bad linear name is bad input: one line, exit 2.
  const std::string bad = write("train_fp8_bad.json", R"({"probe":"recipe","name":"bad",
    "axes":{"backend":["cpu"],"fp8_linears":["qkv,attn"]}})");
  Exec b = run(std::string(PROBE_RECIPE) + " --config " + bad + " --out " + ::testing::TempDir() + "/bad_fp8");
  EXPECT_EQ(b.code, 2);
  EXPECT_NE(b.err.find("unknown linear 'attn'"), std::string::npos) << b.err;
}

TEST(Cli, RecipeProbeFindsTheNanOnsetDeterministically) {
  // Tiny model, a few steps: margin -8 without saturation overflows E4M3 at once; margin 2
  // with saturation trains.
  const std::string cfg = write("recipe_nan.json", R"({"probe":"recipe","name":"recipe_nan",
    "axes":{"backend":["cpu"],"vocab":[31],"d_model":[16],"n_layer":[2],"n_head":[2],"max_seq":[8],"seq_len":[8],
            "batch":[2],"steps":[6],"lr":[3e-3],"warmup":[1]},
    "zip":[{"margin":[-8,2],"saturation":["nosat","satfinite"],"format":["e4m3","hybrid"]}]})");
  std::vector<ResultFile> runs;
  for (int i = 0; i < 2; ++i) {
    const std::string out = ::testing::TempDir() + "/recipe_nan_" + std::to_string(i);
    Exec r = run(std::string(PROBE_RECIPE) + " --config " + cfg + " --out " + out + " -q");
    ASSERT_EQ(r.code, 0) << r.err;
    runs.push_back(read_results(out + ".json"));
  }
  const auto& nan_run = runs[0].records[0];
  EXPECT_EQ(nan_run.outcome, Outcome::nonfinite);
  ASSERT_TRUE(nan_run.data.contains("nan_onset"));
  const json& o = nan_run.data["nan_onset"];
  EXPECT_EQ(o["step"], 1);  // step 0 quantises with the initial scale 1; step 1 with 448/amax*256
  EXPECT_EQ(o["layer"], 0);
  EXPECT_EQ(o["tensor"], "qkv.input");
  EXPECT_EQ(o["pass"], "forward");
  EXPECT_EQ(o["before"].size(), 1u);
  EXPECT_EQ(runs[0].records[1].outcome, Outcome::ok);
  EXPECT_TRUE(runs[0].records[1].data["metrics"]["loss_gap_final"].is_number());
  // Same config and seed: the same onset and the same loss curve, to the bit.
  EXPECT_EQ(runs[0].records[0].data["nan_onset"], runs[1].records[0].data["nan_onset"]);
  EXPECT_EQ(runs[0].records[1].data["train"]["loss"], runs[1].records[1].data["train"]["loss"]);
  // The report judges the seed claims from these records.
  Exec rep = run(kTool + " report " + ::testing::TempDir() + "/recipe_nan_0.json");
  EXPECT_EQ(rep.code, 0);
  EXPECT_NE(rep.out.find("## Seed claims"), std::string::npos);
  EXPECT_NE(rep.out.find("step 1, layer 0, qkv.input (forward)"), std::string::npos);
}

TEST(Cli, ShardsMergeBackIntoTheWholeSweep) {
  const std::string cfg = write("shardable.json", R"({"probe":"selftest","name":"shardable","axes":{"i":{"from":0,"to":9}}})");
  const std::string d = ::testing::TempDir() + "/shards";
  std::filesystem::remove_all(d);
  ASSERT_EQ(run(kProbe + " --config " + cfg + " --out " + d + "/whole -q").code, 0);
  for (int s = 0; s < 3; ++s)
    ASSERT_EQ(run(kProbe + " --config " + cfg + " --shard " + std::to_string(s) + "/3 --out " + d + "/s" + std::to_string(s) + " -q").code,
              0);
  EXPECT_EQ(read_results(d + "/s0.json").records.size(), 4u);  // points 0, 3, 6, 9
  EXPECT_EQ(read_results(d + "/s2.json").records.size(), 3u);
  Exec m = run(kTool + " merge " + d + "/s2.json " + d + "/s0.json " + d + "/s1.json -o " + d + "/merged.json");
  ASSERT_EQ(m.code, 0) << m.err;
  ResultFile whole = read_results(d + "/whole.json"), merged = read_results(d + "/merged.json");
  ASSERT_EQ(merged.records.size(), whole.records.size());
  for (std::size_t i = 0; i < whole.records.size(); ++i) EXPECT_EQ(merged.records[i].key, whole.records[i].key);
  // Refusals: a shard twice, a missing shard, another sweep, a bad --shard.
  Exec twice = run(kTool + " merge " + d + "/s0.json " + d + "/s0.json " + d + "/s1.json " + d + "/s2.json -o " + d + "/x.json");
  EXPECT_EQ(twice.code, 2);
  EXPECT_NE(twice.err.find("given twice"), std::string::npos) << twice.err;
  Exec missing = run(kTool + " merge " + d + "/s0.json " + d + "/s1.json -o " + d + "/x.json");
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("shards missing: 2 of 3"), std::string::npos) << missing.err;
  EXPECT_EQ(run(kTool + " merge --allow-partial " + d + "/s0.json " + d + "/s1.json -o " + d + "/x.json").code, 0);
  const std::string other = write("other.json", R"({"probe":"selftest","name":"other","axes":{"i":[0,1]}})");
  ASSERT_EQ(run(kProbe + " --config " + other + " --shard 1/3 --out " + d + "/o1 -q").code, 0);
  Exec mixed = run(kTool + " merge " + d + "/s0.json " + d + "/o1.json " + d + "/s2.json -o " + d + "/x.json");
  EXPECT_EQ(mixed.code, 2);
  EXPECT_NE(mixed.err.find("a different sweep"), std::string::npos) << mixed.err;
  Exec notshard = run(kTool + " merge " + d + "/whole.json -o " + d + "/x.json");
  EXPECT_EQ(notshard.code, 0) << "an unsharded run is shard 0 of 1";
  for (const std::string bad : {"3/3", "1-3", "a/b", "0/0"}) {
    Exec b = run(kProbe + " --config " + cfg + " --shard " + bad + " --out " + d + "/bad");
    EXPECT_EQ(b.code, 2) << bad;
    EXPECT_NE(b.err.find("--shard"), std::string::npos) << b.err;
  }
}
