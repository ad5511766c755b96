// Google Benchmark results (bench_gemm, bench_kernels, bench_step): one row per benchmark,
// the median of the repetitions when there are several, with its counters. Where the file
// measures copy fractions (bench_kernels), each kernel is marked against the 80 % target and
// the text counts them; where it measures FP8 steps next to BF16 ones (bench_step), each FP8
// step gets its tokens/s over its BF16 twin's; where it times a kernel both as the model picks
// it and as the kernels it replaced (`.../mma_sync`: the fused attention's mma.sync kernels that
// run on any GPU; `.../block_per_tile`: its TMA kernels without the persistent grid;
// `.../block_per_row`: the norms' block-per-row kernels for wide rows), the
// first gets its speed-up over the second.
#include "fp8scope/report/sections.hpp"

#include <fmt/format.h>

#include <fmt/ranges.h>
#include <filesystem>

#include <map>
#include <regex>
#include <set>

namespace fp8scope::report {
namespace {

constexpr double kCopyTarget = 0.8;  // the memory-bound kernels' target: 80 % of the 1 GiB copy
// The fused attention's targets on Hopper (TFLOP/s, causal, at GPT-2 124M's shape and with heads
// of 128): forward and backward.
constexpr double kAttentionForwardTarget = 400, kAttentionBackwardTarget = 300;

// The target of a fused-attention benchmark the model picks ("attention_flash/forward",
// ".../backward/hs128"), 0 for any other benchmark and for the replaced twins.
double attention_target(const std::string& bare) {
  if (bare.rfind("attention_flash/forward", 0) == 0) return kAttentionForwardTarget;
  if (bare.rfind("attention_flash/backward", 0) == 0) return kAttentionBackwardTarget;
  return 0;
}

// The BF16 twin of an FP8 step benchmark: "step/gpt2_124m/fp8_fused_flash/..." ->
// "step/gpt2_124m/bf16_flash/..." (the variant dropped, the attention suffix kept); empty when
// the name has no FP8 variant component.
std::string bf16_twin(const std::string& name) {
  static const std::regex fp8_component(R"((^|/)fp8_(custom|fused|attention)(_[a-z0-9]+)?(/|$))");
  std::smatch m;
  if (!std::regex_search(name, m, fp8_component)) return "";
  return m.prefix().str() + m[1].str() + "bf16" + m[3].str() + m[4].str() + m.suffix().str();
}

// A benchmark's name without Google Benchmark's timing suffixes ("/manual_time", "/real_time",
// "/min_time:3.000").
std::string bare_name(const std::string& name) {
  static const std::regex suffixes(R"(/(manual_time|real_time|min_time:[0-9.]+))");
  return std::regex_replace(name, suffixes, "");
}

// A replaced kernel's twin of benchmark X is X with one of these components inserted ("X/mma_sync",
// or after a shape component); the twins themselves are not compared. A benchmark may have
// several (the fused attention: the mma.sync kernels and the cp.async-fed wgmma ones).
constexpr const char* kReplaced[] = {"/mma_sync", "/cp_async", "/block_per_tile", "/block_per_row"};
// The replaced kind a benchmark's name carries ("mma_sync"), or "" for the model's pick.
std::string replaced_kind(const std::string& bare) {
  for (const std::string c : kReplaced)
    if (bare.find(c) != std::string::npos) return c.substr(1);
  return "";
}
bool is_replaced(const std::string& bare) { return !replaced_kind(bare).empty(); }
std::string without_replaced(std::string bare) {
  for (const std::string c : kReplaced)
    if (const auto at = bare.find(c); at != std::string::npos) bare.erase(at, c.size());
  return bare;
}

}  // namespace

json bench_section(const ReportInput& in) {
  json sec = {{"title", fmt::format("Benchmarks '{}'", in.path)},
              {"text", json::array()},
              {"summary", json::array()},
              {"tables", json::array()},
              {"figures", json::array()}};
  bool any_median = false;
  for (auto& r : in.file.records) any_median = any_median || r.data["benchmark"].value("aggregate_name", std::string()) == "median";
  std::set<std::string> counters;
  std::vector<const core::Record*> rows;
  for (auto& r : in.file.records) {
    const json& b = r.data["benchmark"];
    if (any_median && b.value("aggregate_name", std::string()) != "median") continue;
    rows.push_back(&r);
    for (auto it = b.begin(); it != b.end(); ++it)
      if (it.value().is_number() && !std::set<std::string>{"real_time", "cpu_time", "iterations", "repetitions", "repetition_index",
                                                           "threads", "family_index", "per_family_instance_index"}
                                         .count(it.key()))
        counters.insert(it.key());
  }
  const bool has_frac = counters.count("frac_copy") > 0, has_tokens = counters.count("tokens/s") > 0;
  std::map<std::string, double> tokens_by_name;
  for (auto* r : rows) {
    const json& b = r->data["benchmark"];
    if (b.contains("tokens/s") && b["tokens/s"].is_number()) tokens_by_name[b.value("run_name", r->key)] = b["tokens/s"].get<double>();
  }
  bool any_twin = false;
  for (auto& [name, tps] : tokens_by_name) any_twin = any_twin || tokens_by_name.count(bf16_twin(name)) > 0;
  // The replaced kernels' times by kind, by the bare name of the benchmark they are the twin of.
  std::map<std::string, std::map<std::string, double>> replaced_time;
  for (auto* r : rows) {
    const json& b = r->data["benchmark"];
    const std::string bare = bare_name(b.value("run_name", r->key));
    if (is_replaced(bare) && b.value("real_time", 0.0) > 0)
      replaced_time[without_replaced(bare)][replaced_kind(bare)] = b["real_time"].get<double>();
  }
  const bool has_replaced = !replaced_time.empty();
  std::vector<std::string> speedups;

  Table t{any_median ? "Median of the repetitions" : "Results", {"benchmark", "time", "unit"}, {}};
  for (auto& c : counters) t.columns.push_back(c);
  if (has_frac) t.columns.push_back("80 % of copy");
  if (has_tokens && any_twin) t.columns.push_back("vs BF16");
  if (has_replaced) t.columns.push_back("vs replaced");
  t.columns.push_back("note");
  std::vector<std::string> met, below, attention;
  int attention_met = 0;
  for (auto* r : rows) {
    const json& b = r->data["benchmark"];
    const std::string name = b.value("run_name", r->key);
    std::vector<std::string> row{name, fmt_num(b.value("real_time", NAN), 2), b.value("time_unit", std::string())};
    for (auto& c : counters) {
      const double v = b.value(c, NAN);
      row.push_back(std::abs(v) >= 100 ? fmt_num(v, 0) : fmt_num(v, 3));
    }
    if (has_frac) {
      const double f = b.value("frac_copy", NAN);
      const bool kernel = !std::isnan(f) && name.rfind("copy/", 0) != 0;  // the copy is the yardstick
      row.push_back(kernel ? (f >= kCopyTarget ? "met" : "below") : "-");
      if (kernel) (f >= kCopyTarget ? met : below).push_back(fmt::format("{} ({:.0f} %)", bare_name(name), 100 * f));
    }
    if (has_tokens && any_twin) {
      const auto twin = tokens_by_name.find(bf16_twin(name));
      const double tps = b.value("tokens/s", NAN);
      row.push_back(twin != tokens_by_name.end() && twin->second > 0 ? fmt::format("{:.3f}x", tps / twin->second) : "-");
    }
    if (has_replaced) {
      const std::string bare = bare_name(name);
      const auto twins = is_replaced(bare) ? replaced_time.end() : replaced_time.find(bare);
      const double time = b.value("real_time", NAN);
      if (twins != replaced_time.end() && time > 0) {
        // One replaced kind: the bare ratio; several: each ratio named by its kind.
        std::vector<std::string> parts;
        for (const auto& [kind, t_replaced] : twins->second)
          parts.push_back(twins->second.size() == 1 ? fmt::format("{:.2f}x", t_replaced / time)
                                                    : fmt::format("{:.2f}x over {}", t_replaced / time, kind));
        row.push_back(fmt::format("{}", fmt::join(parts, ", ")));
        speedups.push_back(fmt::format("{} {}", bare, fmt::join(parts, ", ")));
      } else {
        row.push_back("-");
      }
    }
    row.push_back(r->outcome == core::Outcome::skipped ? r->reason : "");
    t.rows.push_back(row);
    const std::string bare = bare_name(name);
    if (const double target = attention_target(bare); target > 0 && !is_replaced(bare) && b.contains("TFLOP/s")) {
      const double tflops = b.value("TFLOP/s", NAN);
      attention_met += tflops >= target;
      attention.push_back(fmt::format("{} {:.0f} of {:.0f}", bare, tflops, target));
    }
  }
  if (has_frac && !(met.empty() && below.empty()))
    sec["text"].push_back(fmt::format(
        "Memory-bound kernels at or above {:.0f} % of the 1 GiB copy bandwidth measured in the same "
        "run (the target): {} of {}.{}{}",
        100 * kCopyTarget, met.size(), met.size() + below.size(), met.empty() ? "" : fmt::format(" Met: {}.", fmt::join(met, ", ")),
        below.empty() ? "" : fmt::format(" Below: {}.", fmt::join(below, ", "))));
  if (has_tokens && any_twin)
    sec["text"].push_back("vs BF16: an FP8 step's tokens/s over the BF16 step with the same attention kernels in this file.");
  const std::string attention_line =
      attention.empty()
          ? ""
          : fmt::format(
                "the fused attention the model picks against its targets (forward >= {:.0f}, backward >= {:.0f} "
                "TFLOP/s): {} of {} met: {}.",
                kAttentionForwardTarget, kAttentionBackwardTarget, attention_met, attention.size(), fmt::join(attention, ", "));
  if (!attention.empty()) sec["text"].push_back("T" + attention_line.substr(1));
  if (has_replaced)
    sec["text"].push_back(
        "vs replaced: the time of the kernels the model's choice replaced over the time of the kernels the model picks, measured in "
        "the same process: the `.../mma_sync` rows are the fused attention's mma.sync kernels that run on any GPU (on an H100 or "
        "H200 the model picks Hopper's warpgroup MMA), the `.../cp_async` rows the same warpgroup-MMA products fed by every "
        "thread's cp.async (the model's pick is warp-specialised with TMA loads), the `.../block_per_tile` rows those TMA kernels "
        "with a block per work tile (the model's pick: a block per SM walking the tiles), the `.../block_per_row` rows the norms' "
        "block-per-row kernels (a warp per row now takes rows up to 2048 channels).");
  sec["tables"].push_back(t.to_json());
  const std::string file = std::filesystem::path(in.path).filename().string();
  if (has_frac && !(met.empty() && below.empty()))
    sec["summary"].push_back(fmt::format("Benchmarks '{}': {} of {} memory-bound kernels at {:.0f} % of copy bandwidth or more.", file,
                                         met.size(), met.size() + below.size(), 100 * kCopyTarget));
  if (!attention.empty()) sec["summary"].push_back(fmt::format("Benchmarks '{}': {}", file, attention_line));
  if (!speedups.empty())
    sec["summary"].push_back(
        fmt::format("Benchmarks '{}': the kernels the model picks over the ones they replaced: {}.", file, fmt::join(speedups, ", ")));
  return sec;
}

}  // namespace fp8scope::report
