// fp8scope: the umbrella tool. Subcommands:
//   env                 print the environment JSON (host, build, GPU, cuBLASLt, clocks)
//   run SUITE.json      run every probe sweep of a suite, then report on them
#include "suite.hpp"

#include "fp8scope/core/env.hpp"
#include "fp8scope/core/error.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

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
      return app::run_suite(suite, produced);
    }
  } catch (const core::InputError& e) {
    fmt::print(stderr, "fp8scope: {}\n", e.what());
    return core::kExitBadInput;
  } catch (const std::filesystem::filesystem_error& e) {
    fmt::print(stderr, "fp8scope: {}\n", e.what());
    return core::kExitBadInput;
  }
  return 0;
}
