#include "fp8scope/report/step_limits.hpp"

#include "fp8scope/model/fp8_plan.hpp"
#include "fp8scope/model/step_cost.hpp"
#include "fp8scope/report/gemm_tuning.hpp"
#include "fp8scope/report/sections.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <regex>

namespace fp8scope::report {
using core::Outcome;
using core::Record;

namespace {

bool fp8_type(const std::string& t) { return t == "e4m3" || t == "e5m2"; }

std::string gemm_key(bool fp8, long long m, long long n, long long k) { return fmt::format("{}|{}|{}|{}", fp8 ? "fp8" : "bf16", m, n, k); }

// The step a training record ran, as the cost model needs it; false for what it cannot read.
bool step_shape_of(const json& p, model::StepShape& s) {
  for (const char* k : {"vocab", "d_model", "n_layer"})
    if (!p.contains(k)) return false;
  s.model = model::gpt_config_from(p);
  s.batch = p.value("batch", 0);
  s.seq_len = p.value("seq_len", 0);
  s.fp8 = p.value("precision", std::string("bf16")) == "fp8";
  s.flash = p.value("attention", std::string("materialized")) == "flash";
  const std::string scaling = p.value("scaling", std::string("delayed"));
  s.delayed = scaling == "delayed";
  const LmHeadSetup head = lm_head_setup(p);
  s.bf16_logits = head.bf16_logits;
  s.per_block = scaling == "rowwise" || scaling == "block";
  s.rowwise = scaling == "rowwise";
  s.fused = p.value("variant", std::string("custom")) != "custom";
  s.gelu_e4m3 = s.fp8 && !s.model.llama() && p.value("gelu_input", std::string("bf16")) == "e4m3";
  s.gelu_epilogue = !s.model.llama() && p.value("gelu_cast", std::string("kernel")) == "gemm_epilogue" &&
                    (!s.fp8 || (s.gelu_e4m3 && s.fused && s.delayed));
  if (s.fp8 && !s.per_block) s.weights = weight_copies_of(p);
  model::parse_linears(p.value("fp8_linears", std::string("all")), s.fp8_linears);
  model::Fp8ModelConfig f;  // what decides whether the head runs in chunks: its FP8-ness and delayed scaling
  f.linears = s.fp8_linears;
  f.recipe.scaling = s.delayed ? fp8::Scaling::delayed : fp8::Scaling::current;
  const std::int64_t N = std::int64_t(s.batch) * s.seq_len,
                     rows = model::lm_head_rows(s.batch, s.seq_len, head.chunk, s.fp8 ? &f : nullptr);
  s.head_chunks = rows > 0 ? int((N + rows - 1) / rows) : 1;
  return s.model.vocab > 0 && s.model.d_model > 0 && s.model.n_layer > 0 && s.batch > 0 && s.seq_len > 0;
}

}  // namespace

MeasuredRates measured_rates(const std::vector<ReportInput>& inputs) {
  MeasuredRates m;
  for (auto& in : inputs) {
    const std::string probe = in.file.meta.value("probe", std::string());
    if (probe == "gemm")
      for (auto& r : in.file.records) {
        const json& p = r.params;
        if (r.outcome != Outcome::ok || !r.data.contains("metrics") || p.value("layout", "TN") != "TN" || p.value("batch", 1LL) != 1 ||
            p.value("a_scale", std::string("tensor")) != "tensor" || p.value("b_scale", std::string("tensor")) != "tensor")
          continue;
        const bool fp8 = fp8_type(p.value("a", "")), bf16 = p.value("a", "") == "bf16";
        if (!fp8 && !bf16) continue;
        const json& mt = r.data["metrics"];
        const double tf = mt.value("best_tflops", mt.value("tflops", 0.0));
        double& slot = m.gemm_tflops[gemm_key(fp8, p.value("m", 0LL), p.value("n", 0LL), p.value("k", 0LL))];
        slot = std::max(slot, tf);
        (fp8 ? m.fastest_fp8 : m.fastest_bf16) = std::max(fp8 ? m.fastest_fp8 : m.fastest_bf16, tf);
        if (m.gemm_from.find(in.path) == std::string::npos) m.gemm_from += (m.gemm_from.empty() ? "" : ", ") + in.path;
      }
    // A training run that timed cuBLASLt's candidates (gemm_algos > 1) measured the kept
    // algorithm on the model's own GEMMs: "TN m=.. n=.. k=.. ... e4m3xe5m2->bf16", in probe_gemm's
    // m, n, k (the BF16 dgrads run NN, the same product).
    if (probe == "train") {
      static const std::regex dims(R"( m=(\d+) n=(\d+) k=(\d+) .* (\w+)x(\w+)->)");
      for (auto& r : in.file.records) {
        if (r.outcome != Outcome::ok) continue;
        for (auto& sh : tuned_shapes(r)) {
          std::smatch g;
          const std::string shape = sh.value("shape", std::string());
          const double ms = number_or_nan(sh, "ms_chosen");
          if (!std::regex_search(shape, g, dims) || !(ms > 0) || sh.value("candidates", 0) < 1) continue;
          const bool fp8 = fp8_type(g[4].str()), bf16 = g[4].str() == "bf16";
          if (!fp8 && !bf16) continue;
          const long long mm = std::stoll(g[1].str()), nn = std::stoll(g[2].str()), kk = std::stoll(g[3].str());
          const double tf = 2.0 * double(mm) * double(nn) * double(kk) / (ms * 1e-3) / 1e12;
          double& slot = m.gemm_tflops[gemm_key(fp8, mm, nn, kk)];
          slot = std::max(slot, tf);
          (fp8 ? m.fastest_fp8 : m.fastest_bf16) = std::max(fp8 ? m.fastest_fp8 : m.fastest_bf16, tf);
          if (m.gemm_from.find(in.path) == std::string::npos)
            m.gemm_from += (m.gemm_from.empty() ? "" : ", ") + in.path + " (its runs' cuBLASLt trials)";
        }
      }
    }
    if (probe == "benchmark")
      for (auto& r : in.file.records) {
        const json& b = r.data.value("benchmark", json::object());
        if (b.value("name", std::string()).rfind("copy/d2d_1GiB", 0) != 0) continue;
        if (b.contains("aggregate_name") && b.value("aggregate_name", std::string()) != "median") continue;
        if (b.contains("GB/s")) m.copy_gbs = b["GB/s"].get<double>(), m.copy_from = in.path;
      }
  }
  return m;
}

void add_limit_table(const std::vector<Record>& recs, const MeasuredRates& rates, json& sec) {
  if (!rates.any()) return;
  std::vector<const Record*> runs;
  for (auto& r : recs)
    if (r.data.contains("time_split_ms") && !r.data["time_split_ms"].empty()) runs.push_back(&r);
  if (runs.empty()) return;
  const auto extra = varying_params(recs, {});
  // A bound needs every rate it is made of; a phase missing one shows "-" (named in the title).
  const std::string gemm_part =
      rates.gemm_tflops.empty()
          ? std::string("GEMMs and the fused attention: none (no probe_gemm result or training run's cuBLASLt trials among these files)")
          : fmt::format(
                "GEMMs at the fastest algorithm measured for the shape by probe_gemm or a training run's cuBLASLt trials "
                "(gemm_algos) ({}; * = shape not measured, the fastest rate "
                "measured for the precision instead) plus the FP8 casts between them, the fused attention's FLOPs at the fastest "
                "BF16 GEMM rate ({:.0f} TFLOP/s)",
                rates.gemm_from, rates.fastest_bf16);
  const std::string copy_part = rates.copy_gbs > 0
                                    ? fmt::format("bytes at the copy bandwidth ({:.0f} GB/s, {})", rates.copy_gbs, rates.copy_from)
                                    : std::string("bytes: none (no copy benchmark among these files)");
  Table t{fmt::format("Limits: each phase's measured time against its bound, ms (measured / bound, and their ratio; - where the bound "
                      "needs a rate these files do not have). Bounds: {}, {}",
                      gemm_part, copy_part),
          {"phase"},
          {}};
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> phases;
  std::vector<std::map<std::string, std::string>> cells(runs.size());
  std::vector<double> total_measured(runs.size(), 0), total_bound(runs.size(), 0);
  std::vector<bool> unbounded(runs.size(), false);  // a phase's bound needs a rate these files lack
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const Record& r = *runs[i];
    const std::string suffix = params_suffix(r.params, extra);
    t.columns.push_back(suffix.empty() ? r.key : suffix.substr(1));
    model::StepShape shape;
    const bool modelled = step_shape_of(r.params, shape);
    // The GELU's gradient in fc2's dgrad epilogue (the record says whether cuBLASLt took it).
    shape.dgelu_epilogue = shape.gelu_epilogue && r.data.value("gelu_epilogue", json::object()).value("backward", "") == "DGELU_BGRAD";
    // The residual adds in the GEMMs' epilogue (records say so since they moved there).
    shape.residual_epilogue = r.data.contains("residual_add") && r.data["residual_add"] == "gemm_epilogue";
    const auto costs = modelled ? model::step_costs(shape) : std::vector<model::PhaseCost>{};
    for (auto it = r.data["time_split_ms"].begin(); it != r.data["time_split_ms"].end(); ++it) {
      const std::string ph = it.key();
      if (std::find(phases.begin(), phases.end(), ph) == phases.end()) phases.push_back(ph);
      const double measured = it.value().get<double>();
      total_measured[i] += measured;
      auto c = std::find_if(costs.begin(), costs.end(), [&](const model::PhaseCost& pc) { return pc.phase == ph; });
      if (c == costs.end()) {
        cells[i][ph] = fmt_num(measured, 2);
        continue;
      }
      double gemm_ms = 0, flop_ms = 0;
      bool guessed = false, missing = false;
      for (auto& g : c->gemms) {
        auto rate = rates.gemm_tflops.find(gemm_key(g.fp8, g.m, g.n, g.k));
        double tf = rate != rates.gemm_tflops.end() ? rate->second : (g.fp8 ? rates.fastest_fp8 : rates.fastest_bf16);
        if (rate == rates.gemm_tflops.end()) guessed = true;
        if (!(tf > 0)) missing = true;
        gemm_ms += tf > 0 ? g.flops() / (tf * 1e12) * 1e3 : 0;
      }
      if (c->tensor_flops > 0) {
        if (rates.fastest_bf16 > 0)
          flop_ms = c->tensor_flops / (rates.fastest_bf16 * 1e12) * 1e3;
        else
          missing = true;
      }
      const double byte_ms = rates.copy_gbs > 0 ? c->bytes / (rates.copy_gbs * 1e9) * 1e3 : 0;
      const double serial_ms = rates.copy_gbs > 0 ? c->serial_bytes / (rates.copy_gbs * 1e9) * 1e3 : 0;
      if ((c->bytes > 0 || c->serial_bytes > 0) && !(rates.copy_gbs > 0)) missing = true;
      const double bound = std::max(gemm_ms + flop_ms, byte_ms) + serial_ms;
      if (missing || !(bound > 0)) {
        cells[i][ph] = fmt_num(measured, 2) + " / -";
        unbounded[i] = unbounded[i] || missing;
        continue;
      }
      total_bound[i] += bound;
      cells[i][ph] = fmt::format("{:.2f} / {:.2f}{} ({:.1f}x)", measured, bound, guessed ? "*" : "", measured / bound);
    }
  }
  for (auto& ph : phases) {
    std::vector<std::string> row{ph};
    for (std::size_t i = 0; i < runs.size(); ++i) row.push_back(cells[i].count(ph) ? cells[i][ph] : "");
    t.rows.push_back(row);
  }
  std::vector<std::string> total{"step (phases summed)"};
  // A sum over only some phases' bounds would understate the step's: no total bound then.
  for (std::size_t i = 0; i < runs.size(); ++i)
    total.push_back(unbounded[i] ? fmt_num(total_measured[i], 2) + " / -"
                    : total_bound[i] > 0
                        ? fmt::format("{:.2f} / {:.2f} ({:.1f}x)", total_measured[i], total_bound[i], total_measured[i] / total_bound[i])
                        : fmt_num(total_measured[i], 2));
  t.rows.push_back(total);
  sec["tables"].push_back(t.to_json());
}

}  // namespace fp8scope::report
