#include "fp8scope/core/result_store.hpp"

#include "fp8scope/core/error.hpp"
#include "fp8scope/core/json_input.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace fp8scope::core {
namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

ResultFile read_jsonl(const std::string& path, std::istream& in) {
  ResultFile f;
  f.complete = false;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  if (lines.empty()) throw InputError(fmt::format("{}: empty result file", path));
  for (std::size_t i = 0; i < lines.size(); ++i) {
    json j;
    try {
      j = parse_json_strict(lines[i], fmt::format("{}:{}", path, i + 1));
    } catch (const InputError&) {
      // A torn final line (the writer died mid-line) is what a crash leaves; anything else is bad input.
      if (i + 1 == lines.size() && i > 0 && !json::accept(lines[i])) break;
      throw;
    }
    if (i == 0) {
      if (!j.is_object() || !j.contains("header")) throw InputError(fmt::format("{}:1: not an fp8scope JSONL (no header line)", path));
      const json& h = j["header"];
      f.schema_version = h.value("schema_version", 0);
      f.meta = h.value("meta", json::object());
      f.env = h.value("env", json::object());
      continue;
    }
    if (j.is_object() && j.contains("header")) continue;  // a resumed run's header
    try {
      f.records.push_back(record_from_json(j));
    } catch (const InputError& e) {
      throw InputError(fmt::format("{}:{}: {}", path, i + 1, e.what()));
    }
  }
  return f;
}

ResultFile read_json(const std::string& path, const std::string& text) {
  const json j = parse_json_strict(text, path);
  // Google Benchmark's JSON is also accepted by the report and the gate. With repetitions, one
  // record per benchmark: its median, with the coefficient of variation as the noise; without,
  // one per run (repeated names get #2, #3, ...).
  if (j.is_object() && j.contains("benchmarks") && j.contains("context")) {
    ResultFile f;
    f.meta = {{"probe", "benchmark"}, {"source", "google-benchmark"}};
    f.env = j["context"];
    // The benchmarks add fp8scope's own environment (GPU, driver, cuBLASLt, git) as a JSON
    // string in the context: lift it to the top so the file reads like a probe result's.
    if (f.env.contains("fp8scope_env") && f.env["fp8scope_env"].is_string()) {
      try {
        const json own = json::parse(f.env["fp8scope_env"].get<std::string>());
        f.env.erase("fp8scope_env");
        for (auto it = own.begin(); it != own.end(); ++it) f.env[it.key()] = it.value();
      } catch (const json::parse_error&) {
        throw InputError(fmt::format("{}: context.fp8scope_env is not valid JSON", path));
      }
    }
    std::map<std::string, json> median, cv;
    for (const auto& b : j["benchmarks"]) {
      const std::string run = b.value("run_name", b.value("name", std::string("?")));
      if (b.value("aggregate_name", std::string()) == "median") median[run] = b;
      if (b.value("aggregate_name", std::string()) == "cv") cv[run] = b;
    }
    std::map<std::string, int> seen;
    for (const auto& b : j["benchmarks"]) {
      const std::string run = b.value("run_name", b.value("name", std::string("?")));
      const bool is_aggregate = b.value("run_type", std::string()) == "aggregate";
      const bool has_median = median.count(run) != 0;
      if (has_median && !(is_aggregate && b.value("aggregate_name", std::string()) == "median")) continue;
      if (!has_median && is_aggregate) continue;
      Record r;
      const int n = ++seen[run];
      r.key = has_median || n == 1 ? run : fmt::format("{}#{}", run, n);
      r.params = {{"name", run}};
      const bool error = b.contains("error_occurred") && b["error_occurred"].get<bool>();
      r.outcome = error ? Outcome::skipped : Outcome::ok;
      if (error) r.reason = b.value("error_message", "");
      r.data["benchmark"] = b;
      if (!error && b.contains("real_time")) {
        r.data["timing"] = {{"median", b["real_time"]},
                            {"unit", b.value("time_unit", std::string("ns"))},
                            {"rel_iqr", cv.count(run) ? cv[run].value("real_time", 0.0) : 0.0}};
      }
      f.records.push_back(std::move(r));
    }
    return f;
  }
  if (!j.is_object()) throw InputError(fmt::format("{}: a result file must be a JSON object", path));
  for (const char* k : {"schema_version", "records"})
    if (!j.contains(k)) throw InputError(fmt::format("{}: not an fp8scope result file (no '{}')", path, k));
  if (!j["schema_version"].is_number_integer()) throw InputError(fmt::format("{}: schema_version must be an integer", path));
  if (!j["records"].is_array()) throw InputError(fmt::format("{}: 'records' must be a list", path));
  ResultFile f;
  f.schema_version = j["schema_version"].get<int>();
  f.meta = j.value("meta", json::object());
  f.env = j.value("env", json::object());
  for (std::size_t i = 0; i < j["records"].size(); ++i) {
    try {
      f.records.push_back(record_from_json(j["records"][i]));
    } catch (const InputError& e) {
      throw InputError(fmt::format("{}: records[{}]: {}", path, i, e.what()));
    }
  }
  return f;
}

}  // namespace

JsonlWriter::JsonlWriter(const std::string& out_prefix, bool resume, const json& header) : path_(out_prefix + ".jsonl") {
  if (auto dir = fs::path(path_).parent_path(); !dir.empty()) fs::create_directories(dir);
  const bool existing = fs::exists(path_) && fs::file_size(path_) > 0;
  if (resume && existing) {
    ResultFile prior = read_results(path_);
    for (auto& r : prior.records) keys_.insert(r.key);
    resumed_ = keys_.size();
    // A torn last line would corrupt the next append: rewrite the file from what parsed.
    std::ofstream out(path_, std::ios::trunc);
    out << json{{"header", {{"schema_version", prior.schema_version}, {"meta", prior.meta}, {"env", prior.env}}}}.dump() << '\n';
    for (auto& r : prior.records) out << to_json(r).dump() << '\n';
  } else {
    std::ofstream out(path_, std::ios::trunc);
    if (!out) throw InputError(fmt::format("{}: cannot write", path_));
    out << json{{"header", header}}.dump() << '\n';
  }
  f_ = std::fopen(path_.c_str(), "a");
  if (!f_) throw InputError(fmt::format("{}: cannot open for appending", path_));
}

JsonlWriter::~JsonlWriter() {
  if (f_) std::fclose(f_);
}

void JsonlWriter::append(const Record& r) {
  const std::string line = to_json(r).dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), f_);
  std::fflush(f_);
  ::fsync(::fileno(f_));  // a later crash of the whole machine still keeps this point
  keys_.insert(r.key);
}

ResultFile read_results(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot open result file", path));
  if (ends_with(path, ".jsonl")) return read_jsonl(path, in);
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().find_first_not_of(" \t\r\n") == std::string::npos) throw InputError(fmt::format("{}: empty result file", path));
  return read_json(path, ss.str());
}

json to_json(const ResultFile& f) {
  json recs = json::array();
  for (auto& r : f.records) recs.push_back(to_json(r));
  return {{"schema_version", f.schema_version}, {"meta", f.meta}, {"env", f.env}, {"records", recs}};
}

namespace {
// One line per top-level field, and one per element of a top-level list of objects (a result's
// records, a report's sections): a diff shows which records changed, and a file is about a
// third of an indented dump's size (the tap histories are long lists of numbers).
void write_json_lines(std::ostream& out, const json& j) {
  if (!j.is_object() || j.empty()) {
    out << j.dump() << '\n';
    return;
  }
  const char* sep = "{\n";
  for (auto it = j.begin(); it != j.end(); ++it) {
    out << sep << json(it.key()).dump() << ": ";
    sep = ",\n";
    const json& v = it.value();
    if (!v.is_array() || v.empty() || !v.front().is_object()) {
      out << v.dump();
      continue;
    }
    const char* item = "[\n";
    for (const json& e : v) out << item << e.dump(), item = ",\n";
    out << "\n]";
  }
  out << "\n}\n";
}
}  // namespace

void write_json_file(const std::string& path, const json& j) {
  if (auto dir = fs::path(path).parent_path(); !dir.empty()) fs::create_directories(dir);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw InputError(fmt::format("{}: cannot write", path));
    write_json_lines(out, j);
  }
  fs::rename(tmp, path);  // readers never see half a file
}

ResultFile fold_results(const std::string& out_prefix, const json& meta_override) {
  ResultFile f = read_results(out_prefix + ".jsonl");
  std::map<std::string, std::size_t> index;
  std::vector<Record> unique;
  for (auto& r : f.records) {
    auto [it, fresh] = index.emplace(r.key, unique.size());
    if (fresh)
      unique.push_back(r);
    else
      unique[it->second] = r;
  }
  f.records = std::move(unique);
  f.complete = true;
  if (meta_override.is_object())
    for (auto it = meta_override.begin(); it != meta_override.end(); ++it) f.meta[it.key()] = it.value();
  write_json_file(out_prefix + ".json", to_json(f));
  return f;
}

}  // namespace fp8scope::core
