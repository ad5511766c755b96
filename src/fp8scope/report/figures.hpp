#pragma once
// Draws the report's figure specs to SVG with matplotlib (the first Python that has it).
// Without it (or with FP8SCOPE_PLOTTER=none) nothing is drawn and the reason is returned, so
// the report still renders and says why it has no figures.
#include <nlohmann/json.hpp>

#include <string>

namespace fp8scope::report {

// Writes <dir>/<file>.json for each spec and <dir>/<file>.svg when it can; returns "" on
// success or the reason no figure was drawn.
std::string draw_figures(const nlohmann::json& specs, const std::string& dir);

}  // namespace fp8scope::report
