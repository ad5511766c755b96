#pragma once
// Crash-safe results. Each finished point is appended to <out>.jsonl and flushed at once;
// the first line is a header {schema_version, meta, env}. At the end the JSONL is folded
// into <out>.json = {schema_version, meta, env, records}. `--resume` re-reads the JSONL and
// skips points whose key is already there.
#include "fp8scope/core/record.hpp"

#include <cstdio>
#include <set>
#include <string>
#include <vector>

namespace fp8scope::core {

struct ResultFile {
  int schema_version = kSchemaVersion;
  json meta = json::object();
  json env = json::object();
  std::vector<Record> records;
  bool complete = true;  // false when read from the JSONL of an unfinished sweep
};

class JsonlWriter {
 public:
  // out_prefix "results/x" -> results/x.jsonl. With resume, existing records are kept and
  // their keys reported by done(); without, an existing file is replaced.
  JsonlWriter(const std::string& out_prefix, bool resume, const json& header);
  ~JsonlWriter();
  JsonlWriter(const JsonlWriter&) = delete;
  JsonlWriter& operator=(const JsonlWriter&) = delete;

  bool done(const std::string& key) const { return keys_.count(key) != 0; }
  std::size_t resumed() const { return resumed_; }
  void append(const Record& r);  // writes one line and flushes it to the disk
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  std::set<std::string> keys_;
  std::size_t resumed_ = 0;
};

// Reads <file>.json or a .jsonl (of a finished or unfinished sweep). A torn last line of a
// JSONL (the process died mid-write) is ignored; any other malformed content is an
// InputError naming the file, line and problem.
ResultFile read_results(const std::string& path);

// Folds <prefix>.jsonl into <prefix>.json (records de-duplicated by key, last one wins,
// in file order). Returns the folded file.
ResultFile fold_results(const std::string& out_prefix, const json& meta_override = json());

json to_json(const ResultFile& f);
// Writes j one line per top-level field and one per element of a top-level list of objects (a
// result's records), atomically (a temporary file renamed into place).
void write_json_file(const std::string& path, const json& j);

}  // namespace fp8scope::core
