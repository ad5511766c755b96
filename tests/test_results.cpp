// JSONL writer, resume, fold, and readers of good and bad result files.
#include "fp8scope/core/error.hpp"
#include "fp8scope/core/result_store.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <vector>

using namespace fp8scope::core;
namespace fs = std::filesystem;

namespace {
std::string fresh_prefix(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/fp8scope_results_" + name;
  fs::remove_all(dir);
  return dir + "/out";
}
const json kHeader = {{"schema_version", kSchemaVersion}, {"meta", {{"probe", "gemm"}}}, {"env", {{"gpu", nullptr}}}};

std::string read_error(const std::string& path) {
  try {
    read_results(path);
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST(Results, RecordRoundTrip) {
  Record r = make_record("m=1", {{"m", 1}}, Outcome::run_rejected, "CUBLAS_STATUS_NOT_SUPPORTED");
  r.data["cublas"] = {{"status", 15}};
  Record back = record_from_json(to_json(r));
  EXPECT_EQ(back.key, "m=1");
  EXPECT_EQ(back.outcome, Outcome::run_rejected);
  EXPECT_EQ(back.reason, "CUBLAS_STATUS_NOT_SUPPORTED");
  EXPECT_EQ(back.data["cublas"]["status"], 15);
  for (auto& n : outcome_names()) EXPECT_EQ(std::string(to_string(*parse_outcome(n))), n);
  EXPECT_FALSE(parse_outcome("fine").has_value());
}

TEST(Results, AppendFoldAndResume) {
  const std::string p = fresh_prefix("resume");
  {
    JsonlWriter w(p, false, kHeader);
    w.append(make_record("a", {}, Outcome::ok));
    w.append(make_record("b", {}, Outcome::skipped, "no GPU"));
  }
  // Each line is on disk as soon as append returns.
  ResultFile partial = read_results(p + ".jsonl");
  EXPECT_FALSE(partial.complete);
  ASSERT_EQ(partial.records.size(), 2u);
  EXPECT_EQ(partial.meta["probe"], "gemm");
  {
    JsonlWriter w(p, true, kHeader);
    EXPECT_TRUE(w.done("a"));
    EXPECT_TRUE(w.done("b"));
    EXPECT_FALSE(w.done("c"));
    EXPECT_EQ(w.resumed(), 2u);
    w.append(make_record("c", {}, Outcome::oom));
  }
  ResultFile f = fold_results(p, {{"finished_utc", "now"}});
  ASSERT_EQ(f.records.size(), 3u);
  EXPECT_EQ(f.records[2].outcome, Outcome::oom);
  ResultFile again = read_results(p + ".json");
  EXPECT_TRUE(again.complete);
  EXPECT_EQ(again.records.size(), 3u);
  EXPECT_EQ(again.meta["finished_utc"], "now");
  EXPECT_EQ(again.env["gpu"], nullptr);
}

// A result file holds one line per top-level field and one per record, and reads back equal.
TEST(Results, FileIsOneLinePerRecordAndReadsBackEqual) {
  const std::string p = fresh_prefix("lines") + ".json";
  ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", "s"}};
  f.env = {{"gpu", {{"name", "NVIDIA H200"}}}};
  for (int i = 0; i < 3; ++i) {
    Record r = make_record("k" + std::to_string(i), {{"i", i}}, Outcome::ok);
    r.data["taps"] = {{"loss", {{"amax", {0.1 * i, 1e-30, 3.5e38, -0.0}}}}};
    f.records.push_back(r);
  }
  const json j = to_json(f);
  write_json_file(p, j);
  std::ifstream in(p);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 10u);  // { env meta "records": [ 3 records ] schema_version }
  EXPECT_EQ(lines.front(), "{");
  EXPECT_EQ(lines[4].rfind("{\"key\":\"k0\"", 0), 0u) << lines[4];  // the first record on a line of its own
  EXPECT_EQ(json::parse(std::ifstream(p)), j);
  EXPECT_EQ(to_json(read_results(p)), j);
}

TEST(Results, WithoutResumeAnOldFileIsReplaced) {
  const std::string p = fresh_prefix("replace");
  { JsonlWriter(p, false, kHeader).append(make_record("a", {}, Outcome::ok)); }
  JsonlWriter w(p, false, kHeader);
  EXPECT_FALSE(w.done("a"));
}

TEST(Results, TornLastLineIsDroppedOnResume) {
  const std::string p = fresh_prefix("torn");
  { JsonlWriter(p, false, kHeader).append(make_record("a", {}, Outcome::ok)); }
  std::ofstream(p + ".jsonl", std::ios::app) << R"({"key":"b","outc)";  // died mid-line
  JsonlWriter w(p, true, kHeader);
  EXPECT_TRUE(w.done("a"));
  EXPECT_FALSE(w.done("b"));
  w.append(make_record("b", {}, Outcome::ok));
  EXPECT_EQ(read_results(p + ".jsonl").records.size(), 2u);
}

TEST(Results, DuplicateKeysFoldToTheLast) {
  const std::string p = fresh_prefix("dup");
  {
    JsonlWriter w(p, false, kHeader);
    w.append(make_record("a", {}, Outcome::crashed));
    w.append(make_record("a", {}, Outcome::ok));
  }
  ResultFile f = fold_results(p);
  ASSERT_EQ(f.records.size(), 1u);
  EXPECT_EQ(f.records[0].outcome, Outcome::ok);
}

TEST(Results, MalformedFilesGiveOneClearError) {
  const std::string dir = ::testing::TempDir() + "/fp8scope_bad";
  fs::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name) << text;
    return dir + "/" + name;
  };
  EXPECT_EQ(read_error(dir + "/missing.json"), dir + "/missing.json: cannot open result file");
  EXPECT_EQ(read_error(write("empty.json", "")), dir + "/empty.json: empty result file");
  EXPECT_NE(read_error(write("trunc.json", R"({"schema_version":1,"records":[{"key":"a")")).find("not valid JSON (truncated?)"),
            std::string::npos);
  EXPECT_EQ(read_error(write("other.json", R"({"hello":1})")), dir + "/other.json: not an fp8scope result file (no 'schema_version')");
  EXPECT_EQ(read_error(write("recs.json", R"({"schema_version":1,"records":{}})")), dir + "/recs.json: 'records' must be a list");
  EXPECT_EQ(read_error(write("outcome.json", R"({"schema_version":1,"records":[{"key":"a","outcome":"great"}]})")),
            dir + "/outcome.json: records[0]: record 'a': unknown outcome 'great'");
  EXPECT_EQ(read_error(write("nokey.json", R"({"schema_version":1,"records":[{"outcome":"ok"}]})")),
            dir + "/nokey.json: records[0]: record without a string 'key'");
  EXPECT_EQ(read_error(write("empty.jsonl", "")), dir + "/empty.jsonl: empty result file");
  EXPECT_EQ(read_error(write("nohdr.jsonl", "{\"key\":\"a\",\"outcome\":\"ok\"}\n")),
            dir + "/nohdr.jsonl:1: not an fp8scope JSONL (no header line)");
  EXPECT_EQ(read_error(write("mid.jsonl", "{\"header\":{}}\n{bad\n{\"key\":\"a\",\"outcome\":\"ok\"}\n"))
                .rfind(dir + "/mid.jsonl:2: not valid JSON: parse error at line 1, column 2", 0),
            0u);
  // Strict JSON: bytes after the document (a NUL and garbage too), and repeated keys.
  EXPECT_EQ(read_error(write("nul.json", std::string(R"({"schema_version":1,"records":[]})") + std::string(1, '\0') + "garbage")),
            dir + "/nul.json: not valid JSON: a NUL byte at line 1, column 34");
  EXPECT_NE(read_error(write("trail.json", R"({"schema_version":1,"records":[]} x)")).find("line 1, column 35"), std::string::npos);
  EXPECT_EQ(read_error(write("dup.json", "{\"schema_version\":1,\n \"records\":[],\n \"records\":[]}")),
            dir + "/dup.json: duplicate key \"records\" at line 3, column 2 (first at line 2, column 2)");
  EXPECT_EQ(read_error(write("dup.jsonl",
                             "{\"header\":{}}\n{\"key\":\"a\",\"key\":\"b\",\"outcome\":\"ok\"}\n{\"key\":\"c\",\"outcome\":\"ok\"}\n")),
            dir + "/dup.jsonl:2: duplicate key \"key\" at line 1, column 12 (first at line 1, column 2)");
}

TEST(Results, GoogleBenchmarkJsonIsRead) {
  const std::string path = ::testing::TempDir() + "/gbench.json";
  std::ofstream(path) << R"({"context":{"host_name":"h"},"benchmarks":[
    {"name":"BM_cast/4096","real_time":12.5,"time_unit":"us"},
    {"name":"BM_gemm","error_occurred":true,"error_message":"no GPU"}]})";
  ResultFile f = read_results(path);
  ASSERT_EQ(f.records.size(), 2u);
  EXPECT_EQ(f.records[0].key, "BM_cast/4096");
  EXPECT_EQ(f.records[0].data["benchmark"]["real_time"], 12.5);
  EXPECT_EQ(f.records[1].outcome, Outcome::skipped);
  EXPECT_EQ(f.records[1].reason, "no GPU");
}

// The benchmarks put fp8scope's environment in the context as a JSON string; it is read back
// as the file's environment (GPU, driver, git), like a probe result's.
TEST(Results, GoogleBenchmarkContextCarriesTheEnvironment) {
  const std::string path = ::testing::TempDir() + "/gbench_env.json";
  std::ofstream(path)
      << R"({"context":{"host_name":"h","fp8scope_env":"{\"git_sha\":\"abc\",\"gpu\":{\"name\":\"NVIDIA H200\",\"driver\":\"580\"}}"},
    "benchmarks":[{"name":"k","real_time":1.0,"time_unit":"us"}]})";
  ResultFile f = read_results(path);
  EXPECT_EQ(f.env["git_sha"], "abc");
  EXPECT_EQ(f.env["gpu"]["name"], "NVIDIA H200");
  EXPECT_EQ(f.env["host_name"], "h");
  EXPECT_FALSE(f.env.contains("fp8scope_env"));
  std::ofstream(path) << R"({"context":{"fp8scope_env":"{not json"},"benchmarks":[]})";
  EXPECT_NE(read_error(path).find("context.fp8scope_env is not valid JSON"), std::string::npos);
}

TEST(Results, GoogleBenchmarkRepetitionsBecomeOneMedianRecord) {
  const std::string path = ::testing::TempDir() + "/gbench_reps.json";
  std::ofstream(path) << R"({"context":{},"benchmarks":[
    {"name":"k","run_name":"k","run_type":"iteration","real_time":10.0,"time_unit":"us"},
    {"name":"k","run_name":"k","run_type":"iteration","real_time":12.0,"time_unit":"us"},
    {"name":"k_mean","run_name":"k","run_type":"aggregate","aggregate_name":"mean","real_time":11.0,"time_unit":"us"},
    {"name":"k_median","run_name":"k","run_type":"aggregate","aggregate_name":"median","real_time":11.0,"time_unit":"us"},
    {"name":"k_cv","run_name":"k","run_type":"aggregate","aggregate_name":"cv","real_time":0.09,"time_unit":"us"},
    {"name":"solo","run_name":"solo","run_type":"iteration","real_time":3.0,"time_unit":"ms"}]})";
  ResultFile f = read_results(path);
  ASSERT_EQ(f.records.size(), 2u);
  EXPECT_EQ(f.records[0].key, "k");
  EXPECT_EQ(f.records[0].data["timing"]["median"], 11.0);
  EXPECT_EQ(f.records[0].data["timing"]["rel_iqr"], 0.09);
  EXPECT_EQ(f.records[1].key, "solo");
}
