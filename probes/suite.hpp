#pragma once
// `fp8scope run SUITE.json`: runs each probe sweep a suite lists, each in its own probe
// process, then summarises what ran and what was skipped (and why).
#include <string>
#include <vector>

namespace fp8scope::app {

struct SuiteOptions {
  std::string suite_path;
  std::string out_dir;  // overrides the suite's out_dir
  bool resume = false;
  std::vector<std::string> only;  // run only these sweep names
};

// Returns the exit code: 0 when every probe process finished (whatever the outcomes of its
// points), 1 when one failed, 2 on bad input.
int run_suite(const SuiteOptions& opt, std::vector<std::string>& produced);

}  // namespace fp8scope::app
