#pragma once
// What a sweep prints while it runs: one line per point (index, outcome, the axes that vary
// in this sweep, the headline figure) cut to a terminal's width, and on a terminal a status
// line (points done, elapsed time, ETA) that the next point line overwrites. Without a
// terminal (CI logs, pipes) only the point lines are printed.
#include "fp8scope/core/config.hpp"

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace fp8scope::core {

constexpr std::size_t kLineWidth = 120;

// "name=value,..." of the axes whose values differ between the points (all of the sweep's
// points, so every shard labels a point alike); "" for a sweep of one point.
std::vector<std::string> varying_labels(const std::vector<json>& points, const ProbeSchema& schema);

// "[ 3/60] ok         format=e4m3,margin=1  loss 10.93 -> 2.13, ..." at most `width`
// columns: the label keeps up to 60 % of what follows the outcome, the detail the rest, and a
// cut is marked "...". width 0: nothing is cut.
std::string point_line(std::size_t index, std::size_t total, std::string_view outcome, std::string_view label, std::string_view detail,
                       std::size_t width = kLineWidth);

// s cut to at most `width` columns, a cut marked "...".
std::string fit_width(std::string_view s, std::size_t width = kLineWidth);

// "1:05", "12:03", "1:02:03".
std::string format_duration(double seconds);

// "[12/60] 0:42 elapsed, ETA 2:48 (next: margin=1,...)"; ETA from the points run so far.
std::string status_line(std::size_t done, std::size_t total, std::size_t ran_now, double elapsed_s, std::string_view next_label,
                        std::size_t width = kLineWidth);

class Progress {
 public:
  // labels: one per point (varying_labels, or the full keys with -v); tty: draw the status line.
  Progress(std::vector<std::string> labels, bool tty, bool quiet, std::size_t width = kLineWidth, std::FILE* out = stdout);
  // Before point i (0-based) runs: the status line, on a terminal.
  void starting(std::size_t i, std::size_t done_before);
  // After point i: its line (replacing the status line).
  void finished(std::size_t i, std::string_view outcome, std::string_view detail);
  // A point skipped because it was already recorded (--resume): counted, not printed.
  void resumed() { ++resumed_; }

 private:
  std::vector<std::string> labels_;
  bool tty_, quiet_;
  std::size_t width_;
  std::FILE* out_;
  std::size_t ran_ = 0, resumed_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace fp8scope::core
