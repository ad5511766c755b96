// probe_gemm: which GEMMs does cuBLASLt run, why not the others, how accurate and how fast.
// Every axis of a GemmSpec can be swept; see --help for the list and configs/gemm_*.json.
#include "fp8scope/core/probe_main.hpp"
#include "fp8scope/gemm/point_fn.hpp"
#include "fp8scope/gemm/run_options.hpp"
#include "fp8scope/gemm/spec.hpp"

using namespace fp8scope;
using core::json;
using K = core::ParamSpec::Kind;

namespace {

const std::vector<std::string> kTypes = {"e4m3", "e5m2", "bf16", "fp16", "fp32"};

gemm::GemmSpec spec_from_point(const json& p) {
  gemm::GemmSpec s;
  s.m = p["m"];
  s.n = p["n"];
  s.k = p["k"];
  s.batch = p["batch"];
  gemm::parse_layout(p["layout"].get<std::string>(), s.trans_a, s.trans_b);
  s.a = *gemm::parse_dtype(p["a"]);
  s.b = *gemm::parse_dtype(p["b"]);
  s.d = *gemm::parse_dtype(p["d"]);
  // C only matters for its type (beta = 0): FP8 outputs need a 16-bit C, others match D.
  const std::string c = p["c"];
  s.c = c == "auto" ? (gemm::is_fp8(s.d) ? gemm::DType::bf16 : s.d) : *gemm::parse_dtype(c);
  s.epilogue = *gemm::parse_epilogue(p["epilogue"]);
  s.fast_accum = p["fast_accum"];
  s.lda = p["lda"];
  s.ldb = p["ldb"];
  s.ldd = p["ldd"];
  s.a_offset = p["a_offset"];
  s.b_offset = p["b_offset"];
  s.d_offset = p["d_offset"];
  s.scale_offset = p["scale_offset"];
  s.a_scale = *gemm::parse_scale_mode(p["a_scale"]);
  s.b_scale = *gemm::parse_scale_mode(p["b_scale"]);
  s.inputs = *gemm::parse_input_pattern(p["inputs"]);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  core::ProbeDef def;
  def.schema.probe = "gemm";
  def.summary =
      "cuBLASLt GEMM availability, accuracy and throughput over any shapes, types, layouts, epilogues, alignments and scale modes";
  std::vector<std::string> c_types = kTypes;
  c_types.insert(c_types.begin(), "auto");
  def.schema.axes = {
      {"role", K::string, "", {}, 0, 0, "free label, e.g. qkv.fprop (part of the point key)"},
      {"m", K::integer, 4096, {}, 1, 1e12, "rows of D"},
      {"n", K::integer, 4096, {}, 1, 1e12, "columns of D"},
      {"k", K::integer, 4096, {}, 1, 1e12, "inner dimension"},
      {"batch", K::integer, 1, {}, 1, 1e6, "strided batch count"},
      {"layout", K::string, "TN", {"TN", "NN", "NT", "TT"}, 0, 0, "op(A), op(B), column-major"},
      {"a", K::string, "e4m3", kTypes, 0, 0, "A type"},
      {"b", K::string, "e4m3", kTypes, 0, 0, "B type"},
      {"c", K::string, "auto", c_types, 0, 0, "C type (auto: bf16 for FP8 D, else D's)"},
      {"d", K::string, "bf16", kTypes, 0, 0, "D type"},
      {"epilogue",
       K::string,
       "none",
       {"none", "bias", "gelu", "gelu_aux", "bias_gelu", "bias_gelu_aux"},
       0,
       0,
       "gelu_aux: GELU's input written as aux (E4M3 beside an E4M3 D, else the bias type); bias_gelu_aux: after the bias"},
      {"fast_accum", K::boolean, true, {}, 0, 0, "FP8 fast accumulation"},
      {"lda", K::integer, 0, {}, 0, 1e12, "0 = smallest valid"},
      {"ldb", K::integer, 0, {}, 0, 1e12, "0 = smallest valid"},
      {"ldd", K::integer, 0, {}, 0, 1e12, "0 = smallest valid"},
      {"a_offset", K::integer, 0, {}, 0, 4096, "bytes added to A's pointer"},
      {"b_offset", K::integer, 0, {}, 0, 4096, "bytes added to B's pointer"},
      {"d_offset", K::integer, 0, {}, 0, 4096, "bytes added to D's pointer"},
      {"scale_offset", K::integer, 0, {}, 0, 4096, "bytes added to the scale/amax pointers"},
      {"a_scale", K::string, "tensor", gemm::scale_mode_names(), 0, 0, "A's scales: per tensor, row, 1x128 or 128x128 block, MX"},
      {"b_scale", K::string, "tensor", gemm::scale_mode_names(), 0, 0, "B's scales (as a_scale)"},
      {"inputs",
       K::string,
       "fp8_exact",
       {"fp8_exact", "normal", "outliers"},
       0,
       0,
       "codes drawn directly, or FP32 N(0,1) / outlier-structured values quantised by the scale modes"},
  };
  def.schema.settings = gemm::gemm_settings();
  def.make_point_fn = [](const core::ProbeContext& ctx) { return gemm::make_gemm_point_fn(ctx, spec_from_point); };
  return core::probe_main(argc, argv, def);
}
