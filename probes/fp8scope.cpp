// fp8scope: the umbrella tool. Subcommands:
//   env                 print the environment JSON (host, build, GPU, cuBLASLt, clocks)
//   run SUITE.json      run every probe sweep of a suite, then report on them
//   report FILE...      render result files as Markdown (+ JSON, figures)
//   gate                compare a result with a baseline; exit 1 on regression
//   merge SHARD...      fold the shards of a sweep (probe --shard I/N) into one result
#include "merge_cmd.hpp"
#include "report_cmd.hpp"
#include "suite.hpp"

#include "fp8scope/core/env.hpp"
#include "fp8scope/core/error.hpp"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <filesystem>

int main(int argc, char** argv) {
  using namespace fp8scope;
  CLI::App app{"fp8scope: FP8 GEMM availability, FP8 training stability and throughput on NVIDIA GPUs", "fp8scope"};
  app.set_version_flag("--version", std::string("fp8scope ") + FP8SCOPE_VERSION);
  app.require_subcommand(1);

  auto* env_cmd = app.add_subcommand("env", "print the environment as JSON");
  int device = 0;
  env_cmd->add_option("--device", device, "CUDA device index")->check(CLI::NonNegativeNumber);

  auto* run_cmd = app.add_subcommand("run", "run the probe sweeps of a suite (e.g. configs/default.json)");
  app::SuiteOptions suite;
  run_cmd->add_option("suite", suite.suite_path, "suite file")->required();
  run_cmd->add_option("--out-dir", suite.out_dir, "where results go (default: the suite's out_dir)");
  run_cmd->add_flag("--resume", suite.resume, "continue unfinished sweeps");
  run_cmd->add_option("--only", suite.only, "run only these sweep names");

  auto* rep_cmd = app.add_subcommand("report", "render result files (JSON, or the JSONL of an unfinished sweep)");
  app::ReportArgs rep;
  rep_cmd->add_option("inputs", rep.inputs, "result files")->required()->check(CLI::ExistingFile);
  rep_cmd->add_option("--peer", rep.peers, "peer result files (e.g. the PyTorch peer), joined by point key")->check(CLI::ExistingFile);
  rep_cmd->add_option("-o,--out", rep.out, "Markdown output (default: stdout)");
  rep_cmd->add_option("--json", rep.json_out, "the same report as JSON");
  rep_cmd->add_option("--format", rep.format, "markdown or github (job-summary friendly)")->check(CLI::IsMember({"markdown", "github"}));
  rep_cmd->add_option("--figures", rep.figures, "directory for figures (SVG via matplotlib)");

  auto* gate_cmd = app.add_subcommand("gate", "compare current results with a baseline; exit 1 on a regression");
  app::GateArgs gate;
  gate_cmd->add_option("--baseline", gate.baseline, "baseline result file")->required()->check(CLI::ExistingFile);
  gate_cmd->add_option("--current", gate.current, "current result file")->required()->check(CLI::ExistingFile);
  gate_cmd->add_option("--policy", gate.policy, "policy file (thresholds per metric and per key pattern)")->check(CLI::ExistingFile);
  gate_cmd->add_flag("--force", gate.force, "compare even across GPUs or schema versions");
  gate_cmd->add_option("--max-rows", gate.max_rows, "rows of the judgement table to print");

  auto* merge_cmd = app.add_subcommand("merge", "fold the shards of one sweep into one result file");
  app::MergeArgs merge;
  merge_cmd->add_option("shards", merge.shards, "shard result files (.json)")->required()->check(CLI::ExistingFile);
  merge_cmd->add_option("-o,--out", merge.out, "merged result file")->required();
  merge_cmd->add_flag("--allow-partial", merge.allow_partial, "merge even if some shards are missing");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    fmt::print(stderr, "fp8scope: {}\n", e.what());
    return core::kExitBadInput;
  }
  try {
    if (*env_cmd) {
      fmt::print("{}\n", core::capture_env(device, true).dump(2));
      return 0;
    }
    if (*run_cmd) {
      std::vector<std::string> produced;
      const int rc = app::run_suite(suite, produced);
      if (!produced.empty()) {
        app::ReportArgs ra;
        ra.inputs = produced;
        const std::string dir = std::filesystem::path(produced.front()).parent_path().string();
        ra.out = dir + "/report.md";
        ra.json_out = dir + "/report.json";
        ra.figures = dir + "/figures";
        app::run_report(ra);
      }
      return rc;
    }
    if (*rep_cmd) return app::run_report(rep);
    if (*gate_cmd) return app::run_gate_cmd(gate);
    if (*merge_cmd) return app::run_merge(merge);
  } catch (const core::InputError& e) {
    fmt::print(stderr, "fp8scope: {}\n", e.what());
    return core::kExitBadInput;
  } catch (const std::filesystem::filesystem_error& e) {
    fmt::print(stderr, "fp8scope: {}\n", e.what());
    return core::kExitBadInput;
  }
  return 0;
}
