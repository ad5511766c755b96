#include "fp8scope/report/report.hpp"

#include "fp8scope/report/figures.hpp"
#include "fp8scope/report/sections.hpp"
#include "fp8scope/report/step_limits.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>

namespace fp8scope::report {

namespace {

// A peer belongs to the run it was measured beside. Newer peers name that run by the time it
// started (meta.peer_of_started_utc, which survives renaming the result when it is committed);
// otherwise by the result's file name (meta.peer_of) or, failing that, a result of the same
// sweep when the file it names is not in the report. A peer never joins a rerun of its run.
const ReportInput* find_peer(const ReportInput& in, const std::vector<ReportInput>& peers, const std::vector<ReportInput>& results) {
  auto base_of = [](const std::string& path) { return std::filesystem::path(path).filename().string(); };
  auto str = [](const core::json& meta, const char* k) { return meta.value(k, std::string()); };
  const std::string base = base_of(in.path), started = str(in.file.meta, "started_utc"), sweep = str(in.file.meta, "sweep");
  // A peer that names its run's start belongs to that run only.
  auto names_other_run = [&](const ReportInput& p) {
    const std::string s = str(p.file.meta, "peer_of_started_utc");
    return !s.empty() && s != started;
  };
  for (auto& p : peers)
    if (!started.empty() && str(p.file.meta, "peer_of_started_utc") == started && str(p.file.meta, "sweep") == sweep) return &p;
  for (auto& p : peers)
    if (!names_other_run(p) && str(p.file.meta, "peer_of") == base) return &p;
  for (auto& p : peers) {
    const std::string named = str(p.file.meta, "peer_of");
    const bool named_present = std::any_of(results.begin(), results.end(), [&](const ReportInput& r) { return base_of(r.path) == named; });
    if (!names_other_run(p) && !named_present && str(p.file.meta, "sweep") == sweep) return &p;
  }
  return nullptr;
}

}  // namespace

json build_report(const ReportOptions& opt) {
  json rep;
  rep["title"] = "fp8scope report";
  json inputs = json::array();
  for (auto& in : opt.results) inputs.push_back(in.path);
  rep["inputs"] = inputs;
  json sections = json::array();
  sections.push_back(env_section(opt.results));
  const MeasuredRates rates = measured_rates(opt.results);
  for (auto& in : opt.results) {
    const std::string probe = in.file.meta.value("probe", std::string());
    if (probe == "gemm")
      sections.push_back(gemm_section(in, find_peer(in, opt.peers, opt.results)));
    else if (probe == "vocab")
      sections.push_back(vocab_section(in));
    else if (probe == "train")
      sections.push_back(train_section(in, find_peer(in, opt.peers, opt.results), &rates));
    else if (probe == "benchmark")
      sections.push_back(bench_section(in));
    else if (probe == "recipe")
      sections.push_back(recipe_section(in));
    else
      sections.push_back(generic_section(in));
  }
  if (json claims = seed_claims_section(opt.results); !claims.is_null()) sections.insert(sections.begin() + 1, claims);
  // The one-screen summary first: each section's own headline lines (seed verdicts,
  // availability, FP8/BF16 and peer ratios with their spread), in the sections' order.
  json summary = json::array();
  for (auto& s : sections)
    for (auto& line : s.value("summary", json::array())) summary.push_back(line);
  if (!summary.empty())
    sections.insert(
        sections.begin(),
        json{{"title", "Summary"}, {"text", json::array()}, {"bullets", summary}, {"tables", json::array()}, {"figures", json::array()}});
  // Figures are named after their sweep, as the result file says it: only letters, digits,
  // '.', '_', '-' and '+' are kept (a result from elsewhere whose sweep is "../x" must not
  // draw outside the figures folder). Two results of one sweep (a rerun, another build)
  // would draw to the same file, the later over the earlier: number the repeats.
  std::map<std::string, int> figure_names;
  for (auto& s : sections)
    for (auto& f : s["figures"]) {
      std::string name = f["file"].get<std::string>();
      for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-' && c != '+') c = '_';
      if (name.empty() || name[0] == '.' || name[0] == '-') name = "f" + name;
      f["file"] = name;
      if (const int n = ++figure_names[name]; n > 1) f["file"] = fmt::format("{}_{}", name, n);
    }
  json specs = json::array();
  for (auto& s : sections)
    for (auto& f : s["figures"]) specs.push_back(f);
  rep["figures_note"] = "";
  if (!specs.empty()) {
    if (opt.figures_dir.empty()) {
      rep["figures_note"] = "figures not drawn (no --figures directory given)";
    } else {
      const std::string why = draw_figures(specs, opt.figures_dir);
      rep["figures_note"] = why.empty() ? "" : "figures not drawn: " + why;
      for (auto& s : sections)
        for (auto& f : s["figures"]) {
          f["drawn"] = why.empty();
          f["link"] = opt.figures_link_prefix + f["file"].get<std::string>() + ".svg";
        }
    }
  }
  rep["sections"] = sections;
  return rep;
}

namespace {

std::string escape_cell(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n')
      out += ' ';
    else
      out += c;
  }
  return out;
}

// Long tables are folded (<details>, which GitHub renders in Markdown files too) so that a
// report reads section by section: at 20 rows for a CI job summary, 40 otherwise.
void render_table(std::string& md, const json& t, Flavor flavor) {
  const auto& cols = t["columns"];
  const auto& rows = t["rows"];
  if (rows.empty()) return;
  const bool fold = rows.size() > (flavor == Flavor::github ? 20u : 40u);
  if (fold)
    md += fmt::format("<details><summary>{} ({} rows)</summary>\n\n", t.value("title", std::string()), rows.size());
  else if (!t.value("title", std::string()).empty())
    md += "**" + t["title"].get<std::string>() + "**\n\n";
  md += "|";
  for (auto& c : cols) md += " " + escape_cell(c.get<std::string>()) + " |";
  md += "\n|";
  for (std::size_t i = 0; i < cols.size(); ++i) md += i == 0 ? " :-- |" : " --: |";
  md += "\n";
  for (auto& r : rows) {
    md += "|";
    for (auto& c : r) md += " " + escape_cell(c.get<std::string>()) + " |";
    md += "\n";
  }
  md += fold ? "\n</details>\n\n" : "\n";
}

}  // namespace

std::string render_markdown(const json& rep, Flavor flavor) {
  std::string md = fmt::format("# {}\n\n", rep.value("title", std::string("fp8scope report")));
  md += "Generated by `fp8scope report` from: ";
  for (std::size_t i = 0; i < rep["inputs"].size(); ++i) md += (i ? ", `" : "`") + rep["inputs"][i].get<std::string>() + "`";
  md += ".\n\n";
  if (!rep.value("figures_note", std::string()).empty()) md += "_" + rep["figures_note"].get<std::string>() + "._\n\n";
  for (auto& s : rep["sections"]) {
    md += "## " + s["title"].get<std::string>() + "\n\n";
    for (auto& t : s["text"]) md += t.get<std::string>() + "\n\n";
    for (auto& b : s.value("bullets", json::array())) md += "- " + b.get<std::string>() + "\n";
    if (s.contains("bullets")) md += "\n";
    // A figure follows the table whose numbers it draws (after_table), else it opens the tables.
    auto figures_at = [&](long long table) {
      for (auto& f : s["figures"])
        if (f.value("drawn", false) && f.value("after_table", -1LL) == table)
          md += fmt::format("![{}]({})\n\n", f["title"].get<std::string>(), f["link"].get<std::string>());
    };
    figures_at(-1);
    for (std::size_t i = 0; i < s["tables"].size(); ++i) {
      render_table(md, s["tables"][i], flavor);
      figures_at((long long)i);
    }
  }
  return md;
}

}  // namespace fp8scope::report
