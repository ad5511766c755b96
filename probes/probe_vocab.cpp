// probe_vocab: for each vocab size V, can the LM head's three GEMMs (fprop, dgrad, wgrad) run
// in FP8 the way a training framework must lay them out on this GPU, and at what speed
// against BF16? Ends with a verdict on "vocab must be divisible by 32".
#include "fp8scope/core/probe_main.hpp"
#include "fp8scope/gemm/point_fn.hpp"
#include "fp8scope/gemm/run_options.hpp"
#include "fp8scope/gemm/vocab_roles.hpp"
#include "fp8scope/gemm/vocab_summary.hpp"

#include <fmt/format.h>

using namespace fp8scope;
using core::json;
using K = core::ParamSpec::Kind;

int main(int argc, char** argv) {
  core::ProbeDef def;
  def.schema.probe = "vocab";
  def.summary = "LM-head GEMM availability and speed per vocab size, FP8 vs BF16, with the divisibility verdict";
  def.schema.axes = {
      {"vocab", K::integer, 50304, {}, 1, 1e8, "vocab size V"},
      {"role", K::string, "fprop", {"fprop", "dgrad", "wgrad"}, 0, 0, "which LM-head GEMM"},
      {"format", K::string, "e4m3", {"e4m3", "hybrid", "bf16"}, 0, 0, "hybrid: gradients in E5M2"},
      {"d_model", K::integer, 768, {}, 1, 1e6, "model width d"},
      {"tokens", K::integer, 16384, {}, 1, 1e9, "tokens per step (batch x sequence)"},
  };
  def.schema.settings = gemm::gemm_settings();
  def.make_point_fn = [](const core::ProbeContext& ctx) {
    auto to_spec = [](const json& p) {
      return gemm::lm_head_spec(*gemm::parse_role(p["role"]), p["vocab"], p["d_model"], p["tokens"], p["format"]);
    };
    auto inner = gemm::make_gemm_point_fn(ctx, to_spec);
    return [inner, to_spec](const json& p, const std::string& key) {
      core::Record r = inner(p, key);
      const auto role = *gemm::parse_role(p["role"]);
      r.data["vocab_dimensions"] = gemm::vocab_dimensions(role, to_spec(p), p["vocab"]);
      return r;
    };
  };
  def.on_finished = [](core::ResultFile& f) {
    json s = gemm::summarize_vocab(f.records, f.env);
    f.meta["vocab_summary"] = s;
    fmt::print("\nvocab verdict:\n");
    for (auto it = s.begin(); it != s.end(); ++it)
      if (it.value().is_object()) fmt::print("  {}\n", it.value()["verdict"].get<std::string>());
  };
  return core::probe_main(argc, argv, def);
}
