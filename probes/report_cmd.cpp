#include "report_cmd.hpp"

#include "fp8scope/core/result_store.hpp"
#include "fp8scope/report/gate.hpp"
#include "fp8scope/report/report.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>

namespace fp8scope::app {
namespace fs = std::filesystem;

int run_report(const ReportArgs& a) {
  report::ReportOptions opt;
  for (auto& p : a.inputs) opt.results.push_back({p, core::read_results(p)});
  for (auto& p : a.peers) opt.peers.push_back({p, core::read_results(p)});
  if (!a.figures.empty()) {
    opt.figures_dir = a.figures;
    // Link figures relative to where the Markdown goes.
    const fs::path md_dir = a.out.empty() ? fs::current_path() : fs::absolute(a.out).parent_path();
    opt.figures_link_prefix = fs::relative(fs::absolute(a.figures), md_dir).string() + "/";
  }
  const core::json rep = report::build_report(opt);
  const std::string md = report::render_markdown(rep, a.format == "github" ? report::Flavor::github : report::Flavor::markdown);
  if (a.out.empty()) {
    fmt::print("{}", md);
  } else {
    if (auto dir = fs::path(a.out).parent_path(); !dir.empty()) fs::create_directories(dir);
    std::ofstream(a.out) << md;
    fmt::print(stderr, "fp8scope report: wrote {}\n", a.out);
  }
  if (!a.json_out.empty()) core::write_json_file(a.json_out, rep);
  if (!rep.value("figures_note", std::string()).empty())
    fmt::print(stderr, "fp8scope report: {}\n", rep["figures_note"].get<std::string>());
  return 0;
}

int run_gate_cmd(const GateArgs& a) {
  const core::ResultFile base = core::read_results(a.baseline);
  const core::ResultFile cur = core::read_results(a.current);
  const report::GatePolicy policy = a.policy.empty() ? report::GatePolicy{} : report::load_policy(a.policy);
  report::check_comparable(base, cur, a.force);
  const report::GateResult r = report::run_gate(base, cur, policy);
  fmt::print("fp8scope gate: baseline {} vs current {}\n{}", a.baseline, a.current, report::render_gate(r, policy, a.max_rows));
  fmt::print("{}\n", r.failures ? "gate: FAILED" : "gate: passed");
  return r.failures ? 1 : 0;
}

}  // namespace fp8scope::app
