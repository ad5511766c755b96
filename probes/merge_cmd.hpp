#pragma once
// `fp8scope merge`: folds the shards of one sweep (probe --shard I/N) into one result file.
#include <string>
#include <vector>

namespace fp8scope::app {

struct MergeArgs {
  std::vector<std::string> shards;
  std::string out;
  bool allow_partial = false;  // merge even when some shards are missing
};
int run_merge(const MergeArgs& a);

}  // namespace fp8scope::app
