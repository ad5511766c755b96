#include "fp8scope/report/figures.hpp"

#include "fp8scope/report/plot_script.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

namespace fp8scope::report {
namespace fs = std::filesystem;

std::string draw_figures(const nlohmann::json& specs, const std::string& dir) {
  if (specs.empty()) return "";
  fs::create_directories(dir);
  std::string args;
  for (const auto& s : specs) {
    const std::string path = (fs::path(dir) / (s["file"].get<std::string>() + ".json")).string();
    std::ofstream(path) << s.dump();
    args += " '" + path + "'";
  }
  const char* plotter = std::getenv("FP8SCOPE_PLOTTER");
  if (plotter && std::string(plotter) == "none") return "figures disabled (FP8SCOPE_PLOTTER=none)";
  // The first Python that has matplotlib: FP8SCOPE_PYTHON, python3 on PATH (a GPU image's
  // framework environment), then the system's.
  std::string python;
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("FP8SCOPE_PYTHON")) candidates.emplace_back(env);
  candidates.insert(candidates.end(), {"python3", "/usr/bin/python3"});
  for (const auto& c : candidates)
    if (std::system(("'" + c + "' -c 'import matplotlib' >/dev/null 2>&1").c_str()) == 0) {
      python = c;
      break;
    }
  if (python.empty()) return "no Python with matplotlib (apt-get install python3-matplotlib, or set FP8SCOPE_PYTHON)";
  const std::string script = (fs::path(dir) / "plot.py").string();
  std::ofstream(script) << kPlotScript;
  if (std::system(("'" + python + "' '" + script + "'" + args + " >/dev/null 2>&1").c_str()) != 0) return "matplotlib failed to draw";
  return "";
}

}  // namespace fp8scope::report
