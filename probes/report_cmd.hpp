#pragma once
// The `report` and `gate` subcommands of fp8scope.
#include <string>
#include <vector>

namespace fp8scope::app {

struct ReportArgs {
  std::vector<std::string> inputs, peers;
  std::string out, json_out, format = "markdown", figures;
};
int run_report(const ReportArgs& a);

struct GateArgs {
  std::string baseline, current, policy;
  bool force = false;
  std::size_t max_rows = 60;
};
int run_gate_cmd(const GateArgs& a);

}  // namespace fp8scope::app
