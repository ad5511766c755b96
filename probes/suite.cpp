#include "suite.hpp"

#include "fp8scope/core/config.hpp"
#include "fp8scope/core/error.hpp"
#include "fp8scope/core/progress.hpp"
#include "fp8scope/core/result_store.hpp"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

namespace fp8scope::app {
namespace fs = std::filesystem;
using core::InputError;
using core::json;

namespace {

fs::path self_dir() { return fs::read_symlink("/proc/self/exe").parent_path(); }

int spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execv(argv[0], argv.data());
    fmt::print(stderr, "fp8scope: cannot run {}: {}\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

int run_suite(const SuiteOptions& opt, std::vector<std::string>& produced) {
  const json suite = core::read_json_file(opt.suite_path);
  const std::string where = opt.suite_path;
  if (!suite.is_object()) throw InputError(where + ": a suite must be a JSON object");
  for (auto it = suite.begin(); it != suite.end(); ++it)
    if (it.key() != "suite" && it.key() != "description" && it.key() != "out_dir" && it.key() != "runs")
      throw InputError(fmt::format("{}: {}: unknown key; a suite has suite, description, out_dir, runs", where, it.key()));
  if (!suite.contains("runs") || !suite["runs"].is_array() || suite["runs"].empty())
    throw InputError(where + ": runs: a non-empty list of {\"config\": FILE} is required");
  if (suite.contains("suite")) {
    if (!suite["suite"].is_string()) throw InputError(where + ": suite: must be a string");
    core::check_plain_name(suite["suite"].get<std::string>(), where + ": suite");
  }
  std::string out_dir = opt.out_dir;
  if (out_dir.empty()) out_dir = suite.value("out_dir", std::string("out/") + suite.value("suite", std::string("suite")));
  const fs::path base = fs::path(opt.suite_path).parent_path();

  struct Run {
    std::string name, probe, config, out;
  };
  std::vector<Run> runs;
  for (std::size_t i = 0; i < suite["runs"].size(); ++i) {
    const json& r = suite["runs"][i];
    const std::string rw = fmt::format("{}: runs[{}]", where, i);
    if (!r.is_object() || !r.contains("config") || !r["config"].is_string())
      throw InputError(rw + ": needs \"config\": a sweep file relative to the suite");
    for (auto it = r.begin(); it != r.end(); ++it)
      if (it.key() != "config") throw InputError(fmt::format("{}.{}: unknown key; a run has config", rw, it.key()));
    const std::string cfg_path = (base / r["config"].get<std::string>()).string();
    const json cfg = core::read_json_file(cfg_path);
    if (!cfg.is_object() || !cfg.contains("probe") || !cfg["probe"].is_string())
      throw InputError(cfg_path + ": probe: missing (a string naming the probe)");
    if (cfg.contains("name") && !cfg["name"].is_string()) throw InputError(cfg_path + ": name: must be a string");
    Run run{cfg.value("name", fs::path(cfg_path).stem().string()), cfg["probe"].get<std::string>(), cfg_path, ""};
    core::check_plain_name(run.name, cfg_path + ": name");
    core::check_plain_name(run.probe, cfg_path + ": probe");
    run.out = (fs::path(out_dir) / run.name).string();
    if (!opt.only.empty() && std::find(opt.only.begin(), opt.only.end(), run.name) == opt.only.end()) continue;
    if (!fs::exists(self_dir() / ("probe_" + run.probe)))
      throw InputError(fmt::format("{}: probe '{}' has no executable probe_{} next to fp8scope", cfg_path, run.probe, run.probe));
    runs.push_back(run);
  }

  int failures = 0;
  std::vector<std::string> lines;
  for (auto& run : runs) {
    fmt::print("\n== {} (probe_{}, {}) ==\n", run.name, run.probe, run.config);
    std::vector<std::string> args{(self_dir() / ("probe_" + run.probe)).string(), "--config", run.config, "--out", run.out};
    if (opt.resume) args.push_back("--resume");
    const int rc = spawn(args);
    if (rc != 0) {
      ++failures;
      lines.push_back(fmt::format("  {:<22} FAILED (probe exit code {})", run.name, rc));
      continue;
    }
    produced.push_back(run.out + ".json");
    core::ResultFile f = core::read_results(run.out + ".json");
    std::map<std::string, std::size_t> tally;
    std::map<std::string, std::size_t> skip_reasons;
    for (auto& rec : f.records) {
      ++tally[std::string(core::to_string(rec.outcome))];
      if (rec.outcome == core::Outcome::skipped) ++skip_reasons[rec.reason];
    }
    std::string t;
    for (auto& [k, v] : tally) t += fmt::format(" {}={}", k, v);
    lines.push_back(core::fit_width(fmt::format("  {:<22} {} points:{}", run.name, f.records.size(), t)));
    for (auto& [why, n] : skip_reasons) lines.push_back(core::fit_width(fmt::format("  {:<22}   SKIPPED {} points: {}", "", n, why)));
  }
  fmt::print("\n== summary of suite {} ==\n", opt.suite_path);
  for (auto& l : lines) fmt::print("{}\n", l);
  return failures ? 1 : 0;
}

}  // namespace fp8scope::app
