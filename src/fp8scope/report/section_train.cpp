// The probe_train section: per run the loss curve's ends, speed, MFU, memory, the untrained
// loss against ln(V), where the GPU time goes, and the peer (PyTorch) side by side.
#include "fp8scope/model/fp8_fields.hpp"
#include "fp8scope/model/gpt_config.hpp"
#include "fp8scope/report/gelu_epilogue.hpp"
#include "fp8scope/report/gemm_tuning.hpp"
#include "fp8scope/report/sections.hpp"
#include "fp8scope/report/step_limits.hpp"

#include <fmt/format.h>

#include <cmath>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <tuple>

namespace fp8scope::report {
using core::Outcome;

namespace {
// The parameters run_label names (the model and its data): what the other labels, legends and
// series names leave out of the settings they list.
const std::set<std::string> kModelKeys = {"backend", "arch",  "d_model", "n_layer",      "n_head", "n_kv_head", "ffn",
                                          "seq_len", "batch", "vocab",   "pad_vocab_to", "tied",   "max_seq"};
// A run's parameters less the model's and the others named.
json without_model(json p, std::initializer_list<const char*> others) {
  for (const auto& k : kModelKeys) p.erase(k);
  for (const char* k : others) p.erase(k);
  return p;
}
std::string run_label(const json& p) {
  std::string s =
      fmt::format("{}{} d={} L={} H={}", p.value("backend", "?"), p.value("arch", std::string("gpt2")) == "llama" ? " llama" : "",
                  p.value("d_model", 0), p.value("n_layer", 0), p.value("n_head", 0));
  if (p.value("n_kv_head", 0) > 0 && p.value("n_kv_head", 0) != p.value("n_head", 0)) s += fmt::format(" KV={}", p.value("n_kv_head", 0));
  if (p.value("ffn", 0) > 0) s += fmt::format(" ffn={}", p.value("ffn", 0));
  s += fmt::format(" T={} B={} V={}", p.value("seq_len", 0), p.value("batch", 0), p.value("vocab", 0));
  if (p.value("pad_vocab_to", 1) > 1) s += fmt::format(" (padded to x{})", p.value("pad_vocab_to", 1));
  if (!p.value("tied", true)) s += " untied";
  return s;
}
double m(const core::Record& r, const char* k) {
  return r.data.contains("metrics") && r.data["metrics"].contains(k) ? r.data["metrics"][k].get<double>() : NAN;
}
// An FP8 run's tokens/s over its BF16 twin's (the ratio of the median steps), and in brackets
// the range the steps' quartiles allow: BF16 q1 / FP8 q3 to BF16 q3 / FP8 q1.
std::string vs_bf16(const core::Record& fp8, const core::Record& bf16) {
  std::string s = fmt::format("{:.3f}x", m(fp8, "tokens_per_s") / m(bf16, "tokens_per_s"));
  const json f = fp8.data.value("timing", json::object()), b = bf16.data.value("timing", json::object());
  const double fq1 = f.value("q1", NAN), fq3 = f.value("q3", NAN), bq1 = b.value("q1", NAN), bq3 = b.value("q3", NAN);
  if (fq1 > 0 && fq3 > 0 && bq1 > 0 && bq3 > 0) s += fmt::format(" ({:.3f}-{:.3f})", bq1 / fq3, bq3 / fq1);
  return s;
}
// A run's peak device memory: its allocations' high-water mark (the PyTorch peer's:
// torch.cuda.max_memory_allocated). Results from before it was recorded have none ("-"); what
// their model took when built (device_mib) is not a peak and is not shown as one.
double peak_mib(const core::Record& r) {
  for (const char* k : {"peak_alloc_mib", "peak_memory_mib"})
    if (double v = m(r, k); std::isfinite(v)) return v;
  return NAN;
}
std::string memory_vs(const core::Record& fp8, const core::Record& bf16) {
  const double a = peak_mib(fp8), b = peak_mib(bf16);
  return std::isfinite(a) && std::isfinite(b) && b > 0 ? fmt::format("; peak memory {:.2f}x", a / b) : "";
}

// Where a GPU run's device memory goes: the estimate probe_train checks before a run starts
// (model::gpu_training_bytes by part, and what FP8 adds or saves), beside the measured peak.
template <class LabelOf>
void add_memory_table(const std::vector<core::Record>& recs, const LabelOf& label_of, json& sec) {
  constexpr double kMiB = 1 << 20;
  Table t{
      "Device memory by part, MiB: the estimate checked before the run (parameters with their BF16 copy, gradients and AdamW "
      "state; activations kept for backward; the LM head's FP32 logits and BF16 gradient, one chunk's where lm_head_chunk "
      "chunks the head; scratch; what FP8 adds, or saves where negative) beside the allocations' measured peak",
      {"run", "parameters", "activations", "logits", "scratch", "FP8", "estimate", "measured peak", "estimate / peak"},
      {}};
  Table parts{
      "What FP8 adds and saves against the BF16 model, MiB, by part (the estimate's FP8 column; savings negative): the FP8 "
      "copies kept from forward to backward (the FP8 linears' inputs transposed for wgrad, and the weights' transposes where "
      "they are kept), the current GEMM's FP8 scratch, the FP8 linears' BF16 inputs not kept per layer, the GELU's input kept in "
      "E4M3 (gelu_input), the block weights' BF16 copies not kept (weights cast from the FP32 master), the logits' BF16 gradient "
      "the loss does not make, per-row / per-block scale tensors",
      {"run", "FP8 kept", "FP8 scratch", "BF16 inputs", "GELU input", "BF16 weights", "logits gradient", "scales", "FP8 total",
       "FP8 total / BF16 estimate"},
      {}};
  for (auto& r : recs) {
    const json& p = r.params;
    const double peak = peak_mib(r);
    if (p.value("backend", std::string()) != "gpu" || !std::isfinite(peak)) continue;
    const model::GptConfig c = model::gpt_config_from(p);
    const int B = p.value("batch", 0), T = p.value("seq_len", 0);
    if (c.d_model <= 0 || c.n_layer <= 0 || B <= 0 || T <= 0) continue;
    const bool fp8 = p.value("precision", std::string("bf16")) == "fp8";
    const LmHeadSetup head = lm_head_setup(p);
    std::optional<model::Fp8ModelConfig> f;
    if (fp8) {
      try {  // a record probe_train wrote names every FP8 field; one that does not gets no estimate
        f = model::fp8_config_from(p);
      } catch (const json::exception&) {
      }
    }
    const model::TrainingBytes b =
        model::gpu_training_bytes_by_part(c, B, T, p.value("attention", std::string()) == "flash",
                                          model::lm_head_rows(B, T, head.chunk, f ? &*f : nullptr), head.bf16_logits);
    const model::WeightCopies weights_kept = weight_copies_of(p);
    // (records from before the head's wgrad transposed its gradient a slice at a time lack the field)
    const bool head_sliced = r.data.contains("lm_head_wgrad_columns");
    const double delta = !fp8 ? 0.0 : f ? model::gpu_fp8_bytes_by_part(c, B, T, *f, head.chunk, weights_kept, head_sliced).total() : NAN;
    const double estimate = (b.total() + delta) / kMiB;
    if (f) {
      const model::Fp8Bytes d = model::gpu_fp8_bytes_by_part(c, B, T, *f, head.chunk, weights_kept, head_sliced);
      auto mib = [&](double x) { return x == 0 ? std::string("0") : fmt::format("{:+.0f}", x / kMiB); };
      parts.rows.push_back({label_of(p), mib(d.kept), mib(d.scratch), mib(d.bf16_inputs), mib(d.gelu_input), mib(d.bf16_weights),
                            mib(d.logits_grad), mib(d.scales), mib(d.total()), fmt::format("{:.2f}", (b.total() + d.total()) / b.total())});
    }
    t.rows.push_back({label_of(p), fmt_num(b.parameters / kMiB, 0), fmt_num(b.activations / kMiB, 0), fmt_num(b.logits / kMiB, 0),
                      fmt_num(b.scratch / kMiB, 0),
                      !fp8                   ? "-"
                      : std::isfinite(delta) ? fmt::format("{:+.0f}", delta / kMiB)
                                             : "?",
                      fmt_num(estimate, 0), fmt_num(peak, 0), std::isfinite(estimate) ? fmt::format("{:.2f}", estimate / peak) : "-"});
  }
  if (!t.rows.empty()) sec["tables"].push_back(t.to_json());
  if (!parts.rows.empty()) sec["tables"].push_back(parts.to_json());
}

// The fused attention's kernels a run asked for (records made before the axis: automatic).
std::string flash_kernel_of(const json& p) { return p.value("flash_kernel", std::string("automatic")); }
}  // namespace

json train_section(const ReportInput& in, const ReportInput* peer, const MeasuredRates* rates) {
  json sec = {{"title", fmt::format("Training runs '{}'", in.file.meta.value("sweep", in.path))},
              {"text", json::array()},
              {"summary", json::array()},
              {"tables", json::array()},
              {"figures", json::array()}};
  if (!in.file.meta.value("description", std::string()).empty()) sec["text"].push_back(in.file.meta["description"]);
  std::map<std::string, const core::Record*> peer_rec;
  if (peer)
    for (auto& r : peer->file.records) peer_rec[r.key] = &r;
  Table t{"Runs (ms/step and tokens/s: median after warm-up)",
          {"run", "outcome", "steps", "loss first", "loss last", "ms/step", "IQR", "tokens/s", "MFU", "peak MiB", "loss0 - ln V"},
          {}};
  if (peer) t.columns.insert(t.columns.end(), {"peer tokens/s (eager)", "ours/eager", "peer tokens/s (compile)", "ours/compile"});
  json series = json::array();
  Table split{"GPU time per layer type in one profiled step (ms)", {"run"}, {}};
  std::vector<std::string> phases;
  const auto extra = varying_params(in.file.records, kModelKeys);
  // A BF16 run's label leaves out the FP8 settings (where the FP8 weights are cast among them):
  // they vary between the FP8 runs of a file but say nothing about a BF16 run.
  auto label_of = [&](const json& p) {
    if (p.value("precision", std::string("bf16")) != "bf16") return run_label(p) + params_suffix(p, extra);
    json q = p;
    for (const auto& a : model::fp8_axes()) q.erase(a.name);
    q.erase("weight_cast");
    return run_label(p) + params_suffix(q, extra);
  };
  // FP8 runs against the BF16 run of the same model, attention (and its kernels), LM head (chunks, logits
  // type), step launch (a CUDA graph or kernel by kernel; records without the axis ran
  // uncaptured), cuBLASLt algorithm choice, how the weight gradients are written (records
  // without the axis added them), GELU kernels or epilogues (where they ran: an FP8 run whose
  // epilogues cuBLASLt refused ran the GELU kernels) and GPU count in the same file (same run of
  // the probe).
  auto same_setup = [](const json& a, const json& b) {
    return run_label(a) == run_label(b) && a.value("ranks", 1) == b.value("ranks", 1) &&
           a.value("attention", std::string("materialized")) == b.value("attention", std::string("materialized")) &&
           flash_kernel_of(a) == flash_kernel_of(b) && lm_head_setup(a) == lm_head_setup(b) &&
           a.value("cuda_graph", false) == b.value("cuda_graph", false) && a.value("gemm_algos", 1) == b.value("gemm_algos", 1) &&
           a.value("wgrad", std::string("add")) == b.value("wgrad", std::string("add"));
  };
  // The GELU: the BF16 run whose GELU ran where the FP8 run's did (forward and backward), else
  // the one with the same gelu_cast.
  auto bf16_twin = [&](const core::Record& r) -> const core::Record* {
    if (r.params.value("precision", std::string("bf16")) != "fp8") return nullptr;
    const core::Record* same_axis = nullptr;
    for (auto& o : in.file.records) {
      if (o.params.value("precision", std::string()) != "bf16" || o.outcome != Outcome::ok || !same_setup(o.params, r.params)) continue;
      if (gelu_ran(o) == gelu_ran(r)) return &o;
      if (!same_axis && o.params.value("gelu_cast", std::string("kernel")) == r.params.value("gelu_cast", std::string("kernel")))
        same_axis = &o;
    }
    return same_axis;
  };
  bool any_fp8 = false, any_dp = false;
  for (auto& r : in.file.records) {
    any_fp8 |= r.params.value("precision", std::string()) == "fp8";
    any_dp |= r.params.value("ranks", 1) > 1;
  }
  // Data parallelism: tokens/s on N GPUs against N x the 1-GPU run of the same point.
  auto single_gpu = [&](const core::Record& r) -> const core::Record* {
    json key = r.params;
    key.erase("ranks");
    key.erase("reduce_amax");
    for (auto& o : in.file.records) {
      if (o.params.value("ranks", 1) != 1 || o.outcome != Outcome::ok) continue;
      json k = o.params;
      k.erase("ranks");
      k.erase("reduce_amax");
      if (k == key) return &o;
    }
    return nullptr;
  };
  if (any_fp8) {
    t.columns.insert(t.columns.begin() + 8, {"vs BF16", "taps overhead"});
    sec["text"].push_back(
        "vs BF16: an FP8 run's tokens/s over the BF16 run of the same model, attention kernels, LM head, step launch (one CUDA "
        "graph or kernel by kernel), cuBLASLt algorithm choice (gemm_algos), weight gradients written or added (wgrad), GELU kernels "
        "or cuBLASLt epilogues (gelu_cast, as they ran: an FP8 run whose epilogues cuBLASLt refused ran the GELU kernels) and GPU "
        "count in this file (the same run of the probe); in "
        "brackets the range its step-time quartiles "
        "allow (BF16 q1 / FP8 q3 to BF16 q3 / FP8 q1).");
  }
  if (any_dp) t.columns.insert(t.columns.begin() + 8, "scaling");
  for (auto& r : in.file.records) {
    const std::string label = label_of(r.params);
    const json chk = r.data.value("init_loss_check", json::object());
    std::vector<std::string> row{label,
                                 std::string(core::to_string(r.outcome)),
                                 r.data.contains("train") ? std::to_string(r.data["train"]["loss"].size()) : "-",
                                 fmt_num(m(r, "loss_first"), 3),
                                 fmt_num(m(r, "loss_last"), 3),
                                 fmt_num(m(r, "ms_per_step"), 2),
                                 r.data.contains("timing") ? fmt_pct(r.data["timing"].value("rel_iqr", NAN)) : "-",
                                 fmt_num(m(r, "tokens_per_s"), 0),
                                 fmt_pct(m(r, "mfu")),
                                 fmt_num(peak_mib(r), 0),
                                 chk.empty() ? "-" : fmt::format("{:+.3f}", chk["loss0"].get<double>() - chk["ln_vocab"].get<double>())};
    if (any_fp8) {
      const core::Record* b = bf16_twin(r);
      std::string overhead = "-";
      if (r.data.contains("taps_overhead")) {
        const json& o = r.data["taps_overhead"];
        overhead = fmt::format("{:+.1f}% every step", 100 * o.value("overhead_every_step", NAN));
        if (o.contains("overhead_at_interval"))
          overhead += fmt::format(", {:+.1f}% every {}", 100 * o["overhead_at_interval"].get<double>(), o.value("interval", 0));
      }
      row.insert(row.begin() + 8, {b ? vs_bf16(r, *b) + memory_vs(r, *b) : "-", overhead});
    }
    if (any_dp) {
      const int ranks = r.params.value("ranks", 1);
      const core::Record* one = ranks > 1 ? single_gpu(r) : nullptr;
      row.insert(row.begin() + 8,
                 one ? fmt::format("{:.1f}% of {}x", 100 * m(r, "tokens_per_s") / (ranks * m(*one, "tokens_per_s")), ranks) : "-");
    }
    if (peer) {
      for (const std::string suffix : {"", ",peer=torch.compile"}) {
        auto it = peer_rec.find(r.key + suffix);
        if (it != peer_rec.end() && it->second->outcome == Outcome::ok) {
          const double pt = m(*it->second, "tokens_per_s");
          row.push_back(fmt_num(pt, 0));
          row.push_back(fmt_num(m(r, "tokens_per_s") / pt, 2));
        } else {
          row.insert(row.end(), {"-", ""});
        }
      }
    }
    t.rows.push_back(row);
    if (r.data.contains("train")) {
      json x = json::array();
      for (std::size_t i = 0; i < r.data["train"]["loss"].size(); ++i) x.push_back(i);
      series.push_back({{"label", label}, {"x", x}, {"y", r.data["train"]["loss"]}});
    }
    if (r.data.contains("time_split_ms"))
      for (auto it = r.data["time_split_ms"].begin(); it != r.data["time_split_ms"].end(); ++it)
        if (std::find(phases.begin(), phases.end(), it.key()) == phases.end()) phases.push_back(it.key());
  }
  sec["tables"].push_back(t.to_json());
  if (!phases.empty()) {
    for (auto& ph : phases) split.columns.push_back(ph);
    for (auto& r : in.file.records) {
      if (!r.data.contains("time_split_ms")) continue;
      std::vector<std::string> row{label_of(r.params)};
      for (auto& ph : phases) row.push_back(fmt_num(r.data["time_split_ms"].value(ph, NAN), 2));
      split.rows.push_back(row);
    }
    sec["tables"].push_back(split.to_json());
    // FP8 against its BF16 twin, per layer type: where the faster GEMMs pay off and where the
    // casts, transposes and scale bookkeeping take it back.
    Table delta{"FP8 minus its BF16 twin per layer type (ms per step; negative: FP8 is faster)", {"run"}, {}};
    for (auto& ph : phases) delta.columns.push_back(ph);
    delta.columns.push_back("step (median)");
    for (auto& r : in.file.records) {
      const core::Record* b = bf16_twin(r);
      if (!b || !r.data.contains("time_split_ms") || !b->data.contains("time_split_ms")) continue;
      std::vector<std::string> row{label_of(r.params)};
      for (auto& ph : phases)
        row.push_back(fmt::format("{:+.2f}", r.data["time_split_ms"].value(ph, 0.0) - b->data["time_split_ms"].value(ph, 0.0)));
      row.push_back(fmt::format("{:+.2f}", m(r, "ms_per_step") - m(*b, "ms_per_step")));
      delta.rows.push_back(row);
    }
    if (!delta.rows.empty()) sec["tables"].push_back(delta.to_json());
    if (rates) add_limit_table(in.file.records, *rates, sec);
  }
  add_memory_table(in.file.records, label_of, sec);
  add_gemm_tuning_tables(in.file.records, label_of, sec);
  add_gelu_epilogue_tables(in.file.records, label_of, sec);
  // Data-parallel runs: each rank's own view (its loss, its NaN onset, whether its FP8 scales
  // agreed with rank 0's, which they must with reduce_amax on).
  Table ranks{
      "Data-parallel ranks", {"run", "rank", "device", "loss last (own shard)", "NaN onset", "FP8 scales differing from rank 0"}, {}};
  for (auto& r : in.file.records) {
    if (!r.data.contains("data_parallel")) continue;
    for (auto& pr : r.data["data_parallel"].value("per_rank", json::array())) {
      std::string onset = "-";
      if (pr.contains("nan_onset")) {
        const json& o = pr["nan_onset"];
        onset = fmt::format("step {}, layer {}, {} ({})", o.value("step", -1), o.value("layer", -1), o.value("tensor", std::string("?")),
                            o.value("pass", std::string("?")));
      }
      ranks.rows.push_back({label_of(r.params), std::to_string(pr.value("rank", -1)), std::to_string(pr.value("device", -1)),
                            fmt_num(pr.value("loss_last", NAN), 3), onset,
                            pr.contains("scales_compared")
                                ? fmt::format("{} of {}", pr.value("scales_differing_from_rank0", 0LL), pr.value("scales_compared", 0LL))
                                : "-"});
    }
  }
  if (!ranks.rows.empty()) sec["tables"].push_back(ranks.to_json());
  const std::string sweep = in.file.meta.value("sweep", std::string("train"));
  // A run's setup (model, attention kernels, LM head, cuBLASLt algorithm choice, GPU count)
  // names its group in the figures and the summary; the kernels, the head's chunks and logits
  // type and gemm_algos only where the file varies them.
  std::set<std::string> heads, flash_kernels;
  std::set<int> gemm_algos;
  std::set<std::string> gelu_casts;
  for (auto& r : in.file.records) {
    heads.insert(lm_head_setup(r.params).label()), flash_kernels.insert(flash_kernel_of(r.params));
    gemm_algos.insert(r.params.value("gemm_algos", 1));
    gelu_casts.insert(r.params.value("gelu_cast", std::string("kernel")));
  }
  auto setup_of = [&](const json& p) {
    std::string s = run_label(p) + " " + p.value("attention", std::string("materialized"));
    if (flash_kernels.size() > 1) s += " " + flash_kernel_of(p);
    if (heads.size() > 1) s += " head " + lm_head_setup(p).label();
    if (gemm_algos.size() > 1) s += fmt::format(" gemm_algos {}", p.value("gemm_algos", 1));
    if (gelu_casts.size() > 1) s += " gelu_cast " + p.value("gelu_cast", std::string("kernel"));
    if (p.value("ranks", 1) > 1) s += fmt::format(" x{} GPUs", p.value("ranks", 1));
    return s;
  };
  std::vector<std::string> setups;
  for (auto& r : in.file.records)
    if (r.outcome == Outcome::ok && r.params.value("backend", std::string()) == "gpu") {
      const std::string su = setup_of(r.params);
      if (std::find(setups.begin(), setups.end(), su) == setups.end()) setups.push_back(su);
    }
  // tokens/s at the median step and at the steps' third and first quartiles.
  auto tps = [&](const core::Record& r) {
    const double v = m(r, "tokens_per_s"), med = r.data.value("timing", json::object()).value("median", NAN);
    const double q1 = r.data.value("timing", json::object()).value("q1", NAN), q3 = r.data.value("timing", json::object()).value("q3", NAN);
    return std::make_tuple(v, v * med / q3, v * med / q1);
  };
  if (!setups.empty() && setups.size() <= 12) {
    // Series: our runs by precision and what varies between them, then the peers of the BF16 runs.
    std::vector<std::string> names;
    std::map<std::pair<std::string, std::string>, std::tuple<double, double, double>> value;
    for (auto& r : in.file.records) {
      if (r.outcome != Outcome::ok || r.params.value("backend", std::string()) != "gpu") continue;
      const std::string prec = r.params.value("precision", std::string("bf16"));
      std::string name = "ours " + (prec == "fp8" ? std::string("FP8") : std::string("BF16"));
      if (prec == "fp8") name += params_suffix(without_model(r.params, {"attention", "ranks", "precision"}), extra);
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
      value[{name, setup_of(r.params)}] = tps(r);
      for (const auto& [suffix, mode] :
           {std::pair<std::string, std::string>{"", "PyTorch eager"}, {",peer=torch.compile", "torch.compile"}}) {
        auto it = peer_rec.find(r.key + suffix);
        if (it == peer_rec.end() || it->second->outcome != Outcome::ok) continue;
        const std::string peer_name = mode + (prec == "fp8" ? " FP8" : " BF16");
        if (std::find(names.begin(), names.end(), peer_name) == names.end()) names.push_back(peer_name);
        value[{peer_name, setup_of(r.params)}] = tps(*it->second);
      }
    }
    json bars = json::array();
    for (auto& n : names) {
      json sr = {{"label", n}, {"values", json::array()}, {"low", json::array()}, {"high", json::array()}};
      for (auto& su : setups) {
        auto it = value.find({n, su});
        const auto [v, lo, hi] = it == value.end() ? std::tuple<double, double, double>{NAN, NAN, NAN} : it->second;
        sr["values"].push_back(std::isfinite(v) ? json(v / 1e3) : json(nullptr));
        sr["low"].push_back(std::isfinite(lo) ? json(lo / 1e3) : json(nullptr));
        sr["high"].push_back(std::isfinite(hi) ? json(hi / 1e3) : json(nullptr));
      }
      bars.push_back(sr);
    }
    place_after(sec,
                bars_figure(sweep + "_tokens_per_s", "Training throughput, ours and the PyTorch peer (whiskers: the step times' quartiles)",
                            "thousand tokens/s", setups, bars),
                0);
  }
  // Per setup (in file order) its fastest FP8 run and that run's BF16 twin, for the table and the
  // summary below.
  struct BestPair {
    std::string setup;
    const core::Record *fp8, *bf16;
  };
  std::vector<BestPair> pairs;
  for (auto& su : setups) {
    const core::Record* best = nullptr;
    for (auto& r : in.file.records)
      if (r.outcome == Outcome::ok && setup_of(r.params) == su && bf16_twin(r) &&
          (!best || m(r, "tokens_per_s") > m(*best, "tokens_per_s")))
        best = &r;
    if (best) pairs.push_back({su, best, bf16_twin(*best)});
  }
  // Several model sizes, each with BF16 and FP8: where FP8 pays off, one row per size, and the
  // throughputs relative to our BF16 step of the same size as bars.
  if (pairs.size() >= 3) {
    Table pays{"Where FP8 pays off (per model size: our FP8 step against our BF16 step and the PyTorch peers, same run and GPU)",
               {"model", "params", "BF16 ms", "FP8 ms", "FP8/BF16", "MFU BF16", "MFU FP8", "torch.compile BF16 ms", "our BF16/compile",
                "our FP8/compile BF16", "PyTorch FP8 ms", "our FP8/PyTorch FP8", "peak MiB BF16", "peak MiB FP8", "FP8/BF16 memory",
                "PyTorch FP8 peak MiB"},
               {}};
    json rel = json::array();
    std::vector<std::string> groups;
    json s_fp8 = {{"label", "our FP8"}, {"values", json::array()}, {"low", json::array()}, {"high", json::array()}};
    json s_cb = {{"label", "torch.compile BF16"}, {"values", json::array()}, {"low", json::array()}, {"high", json::array()}};
    json s_cf = {{"label", "torch.compile FP8 (tensorwise)"}, {"values", json::array()}, {"low", json::array()}, {"high", json::array()}};
    auto push = [&](json& sr, const core::Record* r, double base) {
      if (!r) {
        sr["values"].push_back(nullptr), sr["low"].push_back(nullptr), sr["high"].push_back(nullptr);
        return;
      }
      const auto [v, lo, hi] = tps(*r);
      sr["values"].push_back(v / base), sr["low"].push_back(std::isfinite(lo) ? json(lo / base) : json(nullptr)),
          sr["high"].push_back(std::isfinite(hi) ? json(hi / base) : json(nullptr));
    };
    auto ok_peer = [&](const core::Record* r) -> const core::Record* {
      auto it = peer_rec.find(r->key + ",peer=torch.compile");
      return it != peer_rec.end() && it->second->outcome == Outcome::ok ? it->second : nullptr;
    };
    auto ratio = [&](const core::Record* a, const core::Record* b) {
      return a && b ? fmt::format("{:.2f}x", m(*a, "tokens_per_s") / m(*b, "tokens_per_s")) : std::string("-");
    };
    // What a setup adds to its model's name (the kernels, the head, gemm_algos where the file
    // varies them): two setups of one model get two rows that say how they differ.
    auto beyond_model = [&](const std::string& su, const json& p) {
      const std::string base = run_label(p) + " " + p.value("attention", std::string("materialized"));
      return su.compare(0, base.size(), base) == 0 ? su.substr(base.size()) : std::string();
    };
    for (const auto& [su, f, b] : pairs) {
      const core::Record *cb = ok_peer(b), *cf = ok_peer(f);
      const double pf = peak_mib(*f), pb = peak_mib(*b);
      const std::string extra = beyond_model(su, f->params);
      pays.rows.push_back({fmt::format("d={} L={} H={}{}", f->params.value("d_model", 0), f->params.value("n_layer", 0),
                                       f->params.value("n_head", 0), extra),
                           fmt::format("{:.0f}M", m(*f, "params") / 1e6), fmt_num(m(*b, "ms_per_step"), 2),
                           fmt_num(m(*f, "ms_per_step"), 2), vs_bf16(*f, *b), fmt_pct(m(*b, "mfu")), fmt_pct(m(*f, "mfu")),
                           cb ? fmt_num(m(*cb, "ms_per_step"), 2) : "-", ratio(b, cb), ratio(f, cb),
                           cf ? fmt_num(m(*cf, "ms_per_step"), 2) : "-", ratio(f, cf), fmt_num(pb, 0), fmt_num(pf, 0),
                           std::isfinite(pf / pb) ? fmt::format("{:.2f}x", pf / pb) : "-", cf ? fmt_num(peak_mib(*cf), 0) : "-"});
      groups.push_back(fmt::format("{:.0f}M (d={}){}", m(*f, "params") / 1e6, f->params.value("d_model", 0), extra));
      const double base = m(*b, "tokens_per_s");
      push(s_fp8, f, base), push(s_cb, cb, base), push(s_cf, cf, base);
    }
    sec["tables"].push_back(pays.to_json());
    place_after(
        sec,
        bars_figure(sweep + "_vs_bf16", "Throughput relative to our BF16 step of the same model (whiskers: the step times' quartiles)",
                    "x our BF16 tokens/s", groups, json::array({s_fp8, s_cb, s_cf}), 1.0),
        sec["tables"].size() - 1);
  }
  // Summary: per setup, its fastest FP8 run against the BF16 twin, and both against the peer.
  for (const auto& [su, best, b] : pairs) {
    std::string line = fmt::format("Training '{}' ({}): FP8 {:.2f} ms/step, {} its BF16 twin ({:.2f} ms)", sweep, su,
                                   m(*best, "ms_per_step"), vs_bf16(*best, *b) + memory_vs(*best, *b), m(*b, "ms_per_step"));
    auto compiled = peer_rec.find(b->key + ",peer=torch.compile");
    if (compiled != peer_rec.end() && compiled->second->outcome == Outcome::ok) {
      const double pt = m(*compiled->second, "tokens_per_s");
      line += fmt::format("; against torch.compile BF16 ({:.2f} ms): our BF16 {:.2f}x, our FP8 {:.2f}x",
                          m(*compiled->second, "ms_per_step"), m(*b, "tokens_per_s") / pt, m(*best, "tokens_per_s") / pt);
    }
    auto fp8_peer = peer_rec.find(best->key + ",peer=torch.compile");
    if (fp8_peer != peer_rec.end() && fp8_peer->second->outcome == Outcome::ok)
      line += fmt::format("; the compiled PyTorch FP8 peer {:.2f} ms (ours {:.2f}x; peak memory {:.0f} MiB, ours {:.0f})",
                          m(*fp8_peer->second, "ms_per_step"), m(*best, "tokens_per_s") / m(*fp8_peer->second, "tokens_per_s"),
                          peak_mib(*fp8_peer->second), peak_mib(*best));
    sec["summary"].push_back(line + ".");
  }
  // Loss: FP8 runs and their BF16 twins, and below each FP8 run's gap to its twin.
  json curves = json::array(), gaps = json::array();
  std::set<const core::Record*> twins_drawn;
  // Curve labels: the setup only when the file has several, then what varies between runs.
  auto curve_label = [&](const json& p) {
    json q = without_model(p, {"attention", "ranks"});
    if (q.value("precision", std::string("bf16")) == "bf16")
      for (const auto& a : model::fp8_axes()) q.erase(a.name);
    std::string l =
        (setups.size() > 1 ? setup_of(p) + " " : std::string()) + (p.value("precision", std::string("bf16")) == "fp8" ? "FP8" : "BF16");
    q.erase("precision");
    return l + params_suffix(q, extra);
  };
  for (auto& r : in.file.records) {
    const core::Record* b = bf16_twin(r);
    if (!b || !r.data.contains("train") || !b->data.contains("train") || curves.size() >= 10) continue;
    const json &loss = r.data["train"]["loss"], &tl = b->data["train"]["loss"];
    json x = json::array(), gx = json::array(), gy = json::array();
    for (std::size_t k = 0; k < loss.size(); ++k) {
      x.push_back(k);
      if (k < tl.size() && loss[k].is_number() && tl[k].is_number())
        gx.push_back(k), gy.push_back(loss[k].get<double>() - tl[k].get<double>());
    }
    curves.push_back({{"label", curve_label(r.params)}, {"x", x}, {"y", loss}});
    gaps.push_back({{"label", curve_label(r.params)}, {"x", gx}, {"y", gy}});
    if (twins_drawn.insert(b).second) {
      json tx = json::array();
      for (std::size_t k = 0; k < tl.size(); ++k) tx.push_back(k);
      curves.push_back({{"label", curve_label(b->params)}, {"x", tx}, {"y", tl}, {"style", "--"}});
    }
  }
  if (!curves.empty())
    place_after(sec,
                curves_gap_figure(sweep + "_loss", "Training loss: FP8 runs (solid) and their BF16 twins (dashed); below, FP8 minus BF16",
                                  "step", "loss", "FP8 - BF16", curves, gaps),
                0);
  else if (!series.empty())
    sec["figures"].push_back(line_figure(sweep + "_loss", "Training loss", "step", "loss", series));
  return sec;
}

}  // namespace fp8scope::report
