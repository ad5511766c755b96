#include "fp8scope/report/figures.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

namespace fp8scope::report {
namespace fs = std::filesystem;

namespace {
// Kept tiny on purpose: every number it draws is in the JSON beside the SVG.
constexpr const char* kPlotScript = R"PY(
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
for path in sys.argv[1:]:
    spec = json.load(open(path))
    if spec["kind"] == "heatmap":
        fig, ax = plt.subplots(figsize=(10, max(3, 0.22 * len(spec["rows"]) + 1.5)))
        values = [[float("nan") if v is None else v for v in row] for row in spec["values"]]
        im = ax.imshow(values, aspect="auto", interpolation="nearest", cmap="magma")
        ax.set_yticks(range(len(spec["rows"])), spec["rows"], fontsize=7)
        ax.set_xticks(range(len(spec["columns"])), spec["columns"], fontsize=7, rotation=90)
        fig.colorbar(im, ax=ax, label=spec["zlabel"])
    else:
        fig, ax = plt.subplots(figsize=(9, 5))
        for s in spec["series"]:
            ax.plot(s["x"], s["y"], marker=".", linewidth=1, label=s["label"], linestyle=s.get("style", "-"))
        ax.grid(True, alpha=0.3); ax.legend(fontsize=7, ncol=2)
    ax.set_title(spec["title"]); ax.set_xlabel(spec["xlabel"]); ax.set_ylabel(spec["ylabel"])
    fig.tight_layout(); fig.savefig(path[:-5] + ".svg"); plt.close(fig)
)PY";
}  // namespace

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
