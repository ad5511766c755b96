#include "fp8scope/core/progress.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace fp8scope::core {
namespace {

std::string shown(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// Cuts s to at most n columns (ASCII: the keys, outcomes and headlines we print), marking a
// cut with "...".
std::string cut(std::string_view s, std::size_t n) {
  if (s.size() <= n) return std::string(s);
  if (n <= 3) return std::string(s.substr(0, n));
  return std::string(s.substr(0, n - 3)) + "...";
}

// An enumerated value names its axis by itself ("e4m3", "delayed", "satfinite") when no other
// axis of the schema has it among its choices and it is not a generic word; such values are
// printed without "name=".
bool names_itself(const ParamSpec& a, const std::string& value, const ProbeSchema& schema) {
  static const std::set<std::string> generic = {"none", "all", "auto", "max", "min", "on", "off", "true", "false", "default"};
  if (a.choices.empty() || generic.count(value)) return false;
  for (const auto& other : schema.axes)
    if (&other != &a && std::find(other.choices.begin(), other.choices.end(), value) != other.choices.end()) return false;
  return true;
}

}  // namespace

std::vector<std::string> varying_labels(const std::vector<json>& points, const ProbeSchema& schema) {
  std::vector<const ParamSpec*> varying;
  for (const auto& a : schema.axes)
    for (std::size_t i = 1; i < points.size(); ++i)
      if (points[i].at(a.name) != points[0].at(a.name)) {
        varying.push_back(&a);
        break;
      }
  std::vector<std::string> out;
  out.reserve(points.size());
  for (const auto& p : points) {
    std::string label;
    for (const ParamSpec* a : varying) {
      const std::string v = shown(p.at(a->name));
      label += (label.empty() ? "" : ",") + (names_itself(*a, v, schema) ? v : a->name + "=" + v);
    }
    out.push_back(std::move(label));
  }
  return out;
}

std::string point_line(std::size_t index, std::size_t total, std::string_view outcome, std::string_view label, std::string_view detail,
                       std::size_t width) {
  const int digits = int(fmt::formatted_size("{}", total));
  std::string line = fmt::format("[{:>{}}/{}] {:<10}", index, digits, total, outcome);
  if (label.empty() && detail.empty()) return line;
  line += ' ';
  if (width == 0) return line + std::string(label) + (label.empty() || detail.empty() ? "" : "  ") + std::string(detail);
  const std::size_t room = width > line.size() ? width - line.size() : 0;
  const std::size_t gap = label.empty() || detail.empty() ? 0 : 2;
  std::size_t label_room = label.size(), detail_room = detail.size();
  if (label.size() + gap + detail.size() > room) {
    // The label (which point) keeps up to 60 %; the detail takes what the label leaves.
    const std::size_t usable = room > gap ? room - gap : 0;
    const std::size_t after_detail = usable > detail.size() ? usable - detail.size() : 0;
    label_room = std::min(label.size(), detail.empty() ? usable : std::max(usable * 6 / 10, after_detail));
    detail_room = usable - label_room;
  }
  line += cut(label, label_room);
  if (gap && detail_room > 0) line += "  " + cut(detail, detail_room);
  return line;
}

std::string fit_width(std::string_view s, std::size_t width) { return cut(s, width); }

std::string format_duration(double seconds) {
  const long long s = seconds > 0 ? (long long)(seconds + 0.5) : 0;
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

std::string status_line(std::size_t done, std::size_t total, std::size_t ran_now, double elapsed_s, std::string_view next_label,
                        std::size_t width) {
  std::string line = fmt::format("[{}/{}] {} elapsed", done, total, format_duration(elapsed_s));
  if (ran_now > 0 && done < total) line += ", ETA " + format_duration(elapsed_s / double(ran_now) * double(total - done));
  if (!next_label.empty()) line += fmt::format(" (running {})", next_label);
  return cut(line, width ? width - 1 : line.size());  // one column spare: no wrap on the status line
}

Progress::Progress(std::vector<std::string> labels, bool tty, bool quiet, std::size_t width, std::FILE* out)
    : labels_(std::move(labels)), tty_(tty), quiet_(quiet), width_(width), out_(out) {}

void Progress::starting(std::size_t i, std::size_t done_before) {
  if (quiet_ || !tty_) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  fmt::print(out_, "\r\x1b[K{}", status_line(done_before, labels_.size(), ran_, elapsed, labels_[i], width_));
  std::fflush(out_);
}

void Progress::finished(std::size_t i, std::string_view outcome, std::string_view detail) {
  ++ran_;
  if (quiet_) return;
  fmt::print(out_, "{}{}\n", tty_ ? "\r\x1b[K" : "", point_line(i + 1, labels_.size(), outcome, labels_[i], detail, width_));
  std::fflush(out_);
}

}  // namespace fp8scope::core
