// The library's folders depend on each other one way only (ARCHITECTURE.md): core at the
// ground, then fp8, then gemm and the host-only model spec, then the two models (the CPU
// reference and the GPU model, which never include each other), then the report; what turns a
// sweep point into a run (probes/train) sits above all of them and nothing in src/ includes it.
// This reads every #include of the tree, so a new upward include fails here, not in review.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>

namespace fs = std::filesystem;

namespace {

// What each folder of src/fp8scope may include besides itself.
const std::map<std::string, std::set<std::string>> kAllowed = {
    {"core", {}},
    {"fp8", {"core"}},
    {"gemm", {"core", "fp8"}},
    {"model", {"core", "fp8"}},
    {"cpu", {"core", "fp8", "model"}},
    {"gpu_model", {"core", "fp8", "gemm", "model"}},
    {"report", {"core", "fp8", "gemm", "model"}},
};

struct Include {
  std::string file, target;
  int line;
};

std::vector<Include> includes_under(const fs::path& dir) {
  static const std::regex inc(R"re(^\s*#\s*include\s*"([^"]+)")re");
  std::vector<Include> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string ext = e.path().extension().string();
    if (ext != ".cpp" && ext != ".hpp" && ext != ".cu" && ext != ".cuh") continue;
    std::ifstream in(e.path());
    std::string s;
    for (int n = 1; std::getline(in, s); ++n)
      if (std::smatch m; std::regex_search(s, m, inc)) out.push_back({e.path().string(), m[1], n});
  }
  return out;
}

}  // namespace

TEST(Layering, LibraryFoldersIncludeOnlyTheLayersBelowThem) {
  const fs::path src = fs::path(FP8SCOPE_SOURCE_DIR) / "src" / "fp8scope";
  int checked = 0;
  for (const auto& [folder, allowed] : kAllowed) {
    for (const auto& inc : includes_under(src / folder)) {
      ++checked;
      EXPECT_NE(inc.target.rfind("train/", 0), 0u) << inc.file << ":" << inc.line << " includes the probes' " << inc.target;
      if (inc.target.rfind("fp8scope/", 0) != 0) continue;
      const std::string rest = inc.target.substr(9);
      const std::string to = rest.substr(0, rest.find('/'));
      if (to == folder) continue;
      EXPECT_TRUE(allowed.count(to)) << inc.file << ":" << inc.line << ": '" << folder << "' may not include '" << inc.target << "' (" << to
                                     << " is not below it)";
    }
  }
  EXPECT_GT(checked, 100);  // the walk found the tree
}

TEST(Layering, EveryLibraryFolderHasARule) {
  const fs::path src = fs::path(FP8SCOPE_SOURCE_DIR) / "src" / "fp8scope";
  for (const auto& e : fs::directory_iterator(src))
    if (e.is_directory()) EXPECT_TRUE(kAllowed.count(e.path().filename().string())) << e.path() << " has no layering rule";
}
