#pragma once
// Executes sweep points and records each one. With isolation (the default) points run in a
// worker process: if the worker dies (abort, segfault, sticky CUDA error, timeout) the point
// in flight is recorded as `crashed` with the signal or exit code and a fresh worker takes
// the next point. The parent never touches CUDA, so forking is safe.
#include "fp8scope/core/record.hpp"
#include "fp8scope/core/result_store.hpp"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace fp8scope::core {

using PointFn = std::function<Record(const json& point, const std::string& key)>;

struct RunnerOptions {
  bool isolate = true;
  double point_timeout_s = 900;  // a worker silent this long is killed; the point is `crashed`
  bool quiet = false;            // no per-point progress line
  // What the progress lines call each point (one per point; empty: the point keys), and
  // whether stdout is a terminal (then a status line with elapsed time and ETA is drawn).
  std::vector<std::string> labels;
  bool tty = false;
};

struct SweepSummary {
  std::size_t total = 0, ran = 0, resumed = 0, workers_started = 0;
  std::map<std::string, std::size_t> by_outcome;  // of the points run now and resumed
};

SweepSummary run_sweep(const std::vector<json>& points, const std::vector<std::string>& keys, const PointFn& fn, JsonlWriter& writer,
                       const RunnerOptions& opt);

// Called by a point function that left the process unusable (a sticky CUDA error): the
// record it returns is kept, then the worker exits and the next point gets a fresh one.
void request_worker_restart();

// Runs fn in a child process and returns its JSON (used to query the GPU without
// initialising CUDA in the parent). Throws std::runtime_error if the child dies.
json run_in_child(const std::function<json()>& fn, double timeout_s = 120);

}  // namespace fp8scope::core
