#pragma once
// `fp8scope report`: turns result files into a report. The report is built once as JSON
// (sections of text, tables and figures) and rendered from that to Markdown, so the machine
// form and the human form always say the same thing.
#include "fp8scope/core/result_store.hpp"

#include <string>
#include <vector>

namespace fp8scope::report {

using core::json;

struct ReportInput {
  std::string path;
  core::ResultFile file;
};

struct ReportOptions {
  std::vector<ReportInput> results;
  std::vector<ReportInput> peers;   // e.g. the PyTorch peer: joined to results by point key
  std::string figures_dir;          // empty: no figures
  std::string figures_link_prefix;  // how the Markdown links to figures_dir
};

// {title, inputs:[...], sections:[{title, text:[...], tables:[{title, columns, rows}], figures:[...]}]}
json build_report(const ReportOptions& opt);

enum class Flavor { markdown, github };
std::string render_markdown(const json& report, Flavor flavor);

}  // namespace fp8scope::report
