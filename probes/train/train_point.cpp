#include "train/train_point.hpp"

#include "fp8scope/core/env.hpp"
#include "fp8scope/core/stats.hpp"
#include "fp8scope/cpu/trainer.hpp"
#include "fp8scope/model/data.hpp"
#include "fp8scope/model/fp8_fields.hpp"
#include "train/tap_summary.hpp"

#include <fmt/format.h>

#include <cmath>
#include <memory>

namespace fp8scope::train {
using core::json;
using K = core::ParamSpec::Kind;

std::vector<core::ParamSpec> train_axes() {
  return {
      {"backend", K::string, "cpu", {"cpu", "gpu"}, 0, 0, "cpu: the double-precision reference; gpu: the CUDA model"},
      {"arch",
       K::string,
       "gpt2",
       {"gpt2", "llama"},
       0,
       0,
       "gpt2: learned positions, LayerNorm, GELU MLP, biases; llama: rotary positions, RMSNorm, SwiGLU, grouped-query "
       "attention, no biases (on the GPU: attention flash, FP8 variants custom and fused)"},
      {"vocab", K::integer, 97, {}, 2, 1e7, "real vocabulary"},
      {"pad_vocab_to", K::integer, 1, {}, 1, 4096, "pad embedding/LM head to a multiple (padded logits excluded)"},
      {"d_model", K::integer, 64, {}, 1, 65536, ""},
      {"n_layer", K::integer, 2, {}, 1, 1024, ""},
      {"n_head", K::integer, 4, {}, 1, 1024, ""},
      {"n_kv_head", K::integer, 0, {}, 0, 1024, "llama: key/value heads (grouped-query attention; 0 = n_head)"},
      {"ffn", K::integer, 0, {}, 0, 1 << 20, "MLP hidden width (0: 4 d_model for gpt2, 8 d_model / 3 rounded up to 64 for llama)"},
      {"max_seq", K::integer, 1024, {}, 1, 1 << 20, "rows of the position table"},
      {"seq_len", K::integer, 32, {}, 1, 1 << 20, "T"},
      {"batch", K::integer, 4, {}, 1, 1 << 20, "B"},
      {"tied", K::boolean, true, {}, 0, 0, "LM head tied to the token embedding"},
      {"steps", K::integer, 20, {}, 1, 1e7, ""},
      {"lr", K::number, 6e-4, {}, 0, 10, "peak learning rate"},
      {"min_lr", K::number, 6e-5, {}, 0, 10, "end of the cosine decay"},
      {"warmup", K::integer, 10, {}, 0, 1e7, "linear warm-up steps"},
      {"weight_decay", K::number, 0.1, {}, 0, 10, "AdamW, decoupled; matrices only"},
      {"grad_clip", K::number, 1.0, {}, 0, 1e9, "global-norm clipping (0 = off)"},
      {"seed", K::integer, 1, {}, 0, 1e9, "initialisation and synthetic data"},
      {"data", K::string, "synthetic", {}, 0, 0, "'synthetic' (Markov chain) or a token file path"},
      {"ranks", K::integer, 1, {}, 1, 64, "data-parallel GPUs (gpu backend; NCCL, one rank per GPU; batch is per GPU)"},
      {"attention",
       K::string,
       "materialized",
       {"materialized", "flash"},
       0,
       0,
       "GPU: scores/probabilities in memory with cuBLASLt GEMMs, or the fused tensor-core kernels (head size 64 or 128, T % 64 == 0)"},
      {"flash_kernel",
       K::string,
       "automatic",
       {"automatic", "mma_sync", "wgmma", "wgmma_tma"},
       0,
       0,
       "GPU, attention flash: which fused kernels run; automatic takes wgmma_tma (Hopper's warpgroup MMA, warp-specialised, "
       "tiles loaded by TMA) where the GPU and build have it (compute capability 9.0, sm_90a), else mma_sync; wgmma: the same "
       "products fed by cp.async (the same bits). A forced kind that cannot run here fails the point"},
      {"lm_head_chunk",
       K::integer,
       4096,
       {},
       0,
       1 << 20,
       "GPU: the LM head, the loss and the head's backward run over chunks of this many tokens (a multiple of 16), so only one "
       "chunk's logits and gradient exist; 0: the whole batch's logits at once. A BF16 head, or an FP8 head under delayed "
       "scaling (other FP8 heads run whole)"},
      {"logits",
       K::string,
       "fp32",
       {"fp32", "bf16"},
       0,
       0,
       "GPU: the LM head's output type; bf16 halves the bytes the head writes and the loss reads (the loss computes in FP32 "
       "from it, as PyTorch's autocast hands BF16 logits to its loss)"},
      {"cuda_graph",
       K::boolean,
       true,
       {},
       0,
       0,
       "GPU: each step captured once as a CUDA graph and replayed (no host synchronisation inside a step); false: launched "
       "kernel by kernel. Data-parallel runs and the profiled step run uncaptured"},
      {"gemm_algos",
       K::integer,
       1,
       {},
       1,
       64,
       "GPU: cuBLASLt algorithms timed per GEMM shape at its first run, the fastest kept (the record's gemm_tuning says which "
       "and by how much); 1: the heuristic's first, untimed, the same on every run. GEMMs that add into their output (the "
       "chunked head's later weight gradients; every weight gradient under wgrad add) keep the heuristic's first"},
      {"gelu_cast",
       K::string,
       "kernel",
       {"kernel", "gemm_epilogue"},
       0,
       0,
       "GPU, GPT-2: the GELU and its gradient in kernels of their own (kernel), or in cuBLASLt's epilogues (GELU_AUX_BIAS on "
       "fc1, DGELU_BGRAD on fc2's dgrad where cuBLASLt takes it: the record's gelu_epilogue says); FP8 (fused, delayed): fc1 "
       "writes fc2's E4M3 input and the E4M3 GELU input, fc2's dgrad fc1's FP8 gradient, and the wgrad copies are transposes "
       "that count saturated / zero / NaN codes"},
      {"weight_cast",
       K::string,
       "optimizer",
       {"optimizer", "forward"},
       0,
       0,
       "GPU, FP8 under delayed per-tensor scaling: the block linears' FP8 weights written by AdamW for the next step with the "
       "scales it uses, counting the cast's statistics (optimizer), or cast from their FP32 masters at each layer's start in "
       "forward (forward); the same codes and statistics either way. Every layer's FP8 weights are kept (1 byte a parameter) "
       "and transposed for backward; the record's weight_cast says where they were cast"},
      {"wgrad",
       K::string,
       "write",
       {"write", "add"},
       0,
       0,
       "GPU: the weight gradients' GEMMs write the block linears' and the LM head's gradients whole (beta 0; a chunked head's "
       "later chunks add), timed like any GEMM under gemm_algos, and the step zeroes only the gradients it sums into (biases, "
       "norms, embeddings) (write); or the whole gradient zeroed each step and every weight gradient added into it (add: beta "
       "1, the heuristic's first algorithm)"},
  };
}

std::vector<core::ParamSpec> probe_train_axes() {
  auto axes = train_axes();
  axes.push_back(
      {"precision", K::string, "bf16", {"bf16", "fp8"}, 0, 0, "bf16; fp8: the linears (fp8_linears) in FP8 under the recipe fields below"});
  for (auto& a : model::fp8_axes()) axes.push_back(a);
  return axes;
}

std::vector<core::ParamSpec> train_settings() {
  return {{"timing_warmup", K::integer, 3, {}, 0, 1000, "steps left out of the step-time statistics"},
          {"profile", K::boolean, true, {}, 0, 0, "one extra profiled step: GPU time per layer type"},
          {"token_dtype", K::string, "auto", {"auto", "u16", "u32"}, 0, 0, "token file element type"},
          {"taps_overhead_steps",
           K::integer,
           10,
           {},
           0,
           10000,
           "FP8 on the GPU: after the run, this many steps each with taps every step and with taps off, alternating"},
          {"tap_points", K::integer, 50, {}, 2, 100000, "FP8: steps kept in each tensor's amax/scale history"},
          {"onset_history", K::integer, 5, {}, 0, 1000, "FP8: steps of amax/scale kept before a NaN onset"}};
}

TrainPoint train_point_from(const json& p) {
  TrainPoint t;
  t.backend = p["backend"];
  t.model = model::gpt_config_from(p);
  t.batch = p["batch"];
  t.seq_len = p["seq_len"];
  t.steps = p["steps"];
  t.warmup = p["warmup"];
  t.seed = p["seed"];
  t.lr = p["lr"];
  t.min_lr = p["min_lr"];
  t.weight_decay = p["weight_decay"];
  t.grad_clip = p["grad_clip"];
  t.data = p["data"];
  t.ranks = p.value("ranks", 1);
  t.gpu.flash_attention = p.value("attention", std::string("materialized")) == "flash";
  t.gpu.flash_kernel = p.value("flash_kernel", std::string("automatic"));
  t.gpu.lm_head_chunk = p.value("lm_head_chunk", 0);
  t.gpu.bf16_logits = p.value("logits", std::string("fp32")) == "bf16";
  t.gpu.cuda_graph = p.value("cuda_graph", false);  // records made before the axis ran uncaptured
  t.gpu.gemm_algos = p.value("gemm_algos", 1);
  t.gpu.gelu_epilogue = p.value("gelu_cast", std::string("kernel")) == "gemm_epilogue";
  t.gpu.weights_cast_by_optimizer = p.value("weight_cast", std::string("forward")) == "optimizer";  // records before the axis: forward
  t.gpu.overwrite_wgrad = p.value("wgrad", std::string("add")) == "write";                          // records before the axis: add
  if (p.value("precision", std::string()) == "fp8") {
    t.fp8 = model::fp8_config_from(p);
  }
  return t;
}

namespace {
// How the GPU model will hold the FP8 block weights (gpu_fp8_bytes_by_part narrows codes_kept
// to delayed scaling itself).
model::WeightCopies weight_copies(const TrainPoint& p) {
  return p.gpu.weights_cast_by_optimizer ? model::WeightCopies::codes_kept : model::WeightCopies::cast_per_layer;
}
}  // namespace

double gpu_bytes_needed(const TrainPoint& p, const model::Fp8ModelConfig* f) {
  return model::gpu_training_bytes(p.model, p.batch, p.seq_len, p.gpu.flash_attention,
                                   model::lm_head_rows(p.batch, p.seq_len, p.gpu.lm_head_chunk, f), p.gpu.bf16_logits) +
         (f ? model::gpu_fp8_bytes_delta(p.model, p.batch, p.seq_len, *f, p.gpu.lm_head_chunk, weight_copies(p)) : 0.0);
}

std::string memory_plan(const TrainPoint& p) {
  if (p.backend != "gpu") return {};
  constexpr double kGiB = double(1 << 30);
  const model::Fp8ModelConfig* f = p.fp8 ? &*p.fp8 : nullptr;
  const std::int64_t head_rows = model::lm_head_rows(p.batch, p.seq_len, p.gpu.lm_head_chunk, f);
  const model::TrainingBytes b =
      model::gpu_training_bytes_by_part(p.model, p.batch, p.seq_len, p.gpu.flash_attention, head_rows, p.gpu.bf16_logits);
  const double need = gpu_bytes_needed(p, f);  // b.total() and what FP8 adds
  std::string line = fmt::format("memory ~{:.1f} GiB: parameters {:.1f}, activations {:.1f}, logits {:.1f}, scratch {:.1f}", need / kGiB,
                                 b.parameters / kGiB, b.activations / kGiB, b.logits / kGiB, b.scratch / kGiB);
  if (f) {
    const double bf16 = gpu_bytes_needed(p, nullptr);  // its BF16 twin (the head's chunking as BF16 has it)
    line += fmt::format(", FP8 {:+.1f} ({:.2f}x the BF16 twin's {:.1f})", (need - b.total()) / kGiB, need / bf16, bf16 / kGiB);
  }
  if (p.ranks > 1) line += " per GPU";
  // A chunk the model cannot honour: say so, since it is where such a point's memory goes.
  const std::int64_t N = std::int64_t(p.batch) * p.seq_len;
  if (p.gpu.lm_head_chunk > 0 && p.gpu.lm_head_chunk < N && head_rows == N)
    line += fmt::format("; the FP8 head over all {} tokens under {} scaling (an FP8 head runs lm_head_chunk={} under delayed scaling only)",
                        N, fp8::to_string(f->recipe.scaling), p.gpu.lm_head_chunk);
  return line;
}

double train_flops_per_step(const model::GptConfig& c, int B, int T) {
  const double n = double(model::param_count(c)) - (c.llama() ? 0.0 : double(c.max_seq) * c.d_model);  // position table: no matmul
  return (6.0 * n + 12.0 * c.n_layer * c.d_model * T) * B * T;
}

std::string check_train_point(const TrainPoint& p, const json& env) {
  if (auto e = model::validate(p.model, p.seq_len, p.batch); !e.empty()) return e;
  if (auto e = model::check_lm_head_chunk(p.gpu.lm_head_chunk); !e.empty()) return e;
  // The cosine schedule decays from lr to min_lr; the other way round is a swapped pair.
  if (p.min_lr > p.lr) return fmt::format("min_lr={} is above lr={}: the learning rate decays from lr to min_lr", p.min_lr, p.lr);
  // The GPU model's Llama block runs in the fused attention (which refuses fp8_attention below).
  if (p.backend == "gpu" && p.model.llama() && !p.gpu.flash_attention) return "arch llama on the GPU needs attention flash";
  if (p.fp8 && p.fp8->recipe.pow2_block_scales && !fp8::per_block(p.fp8->recipe.scaling))
    return fmt::format(
        "block_scales pow2 rounds the scales of scaling rowwise and block; scaling {} keeps one scale per tensor (tie the two in a zip "
        "group)",
        fp8::to_string(p.fp8->recipe.scaling));
  if (p.fp8 && fp8::per_block(p.fp8->recipe.scaling)) {
    const std::string sc = fp8::to_string(p.fp8->recipe.scaling);
    if (p.fp8->attention()) return fmt::format("scaling {} scales the linears; variant fp8_attention needs delayed or current", sc);
  }
  if (p.backend == "gpu" && p.gpu.flash_attention) {
    const int hs = p.model.n_head > 0 && p.model.d_model % p.model.n_head == 0 ? p.model.d_model / p.model.n_head : 0;
    if ((hs != 64 && hs != 128) || p.seq_len % 64 != 0)
      return fmt::format(
          "attention flash needs head size 64 or 128 and seq_len a multiple of 64 (d_model={}, n_head={}: head size {}, seq_len={})",
          p.model.d_model, p.model.n_head, hs, p.seq_len);
    if (p.fp8 && p.fp8->attention())
      return "attention flash cannot run the fp8_attention variant (it quantises the materialised probabilities)";
  }
  if (p.backend == "gpu" && !p.gpu.flash_attention && p.gpu.flash_kernel != "automatic")
    return fmt::format("flash_kernel {} picks the fused attention's kernels; it needs attention flash", p.gpu.flash_kernel);
  if (p.ranks > 1 && p.backend != "gpu") return fmt::format("ranks={} needs backend gpu (data parallelism runs on GPUs)", p.ranks);
  if (p.gpu.gelu_epilogue) {
    if (p.backend != "gpu")
      return "gelu_cast gemm_epilogue is a cuBLASLt epilogue; it needs backend gpu (the CPU reference applies the GELU to unrounded "
             "values either way)";
    if (auto e = model::check_gelu_epilogue(p.model, p.batch, p.seq_len, p.fp8 ? &*p.fp8 : nullptr); !e.empty()) return e;
  }
  if (p.gpu.gemm_algos > 1 && p.backend != "gpu")
    return fmt::format("gemm_algos={} times cuBLASLt's algorithms; it needs backend gpu (the CPU reference has none)", p.gpu.gemm_algos);
  // Ranks take the GPUs from --device on: device + ranks of them must exist.
  if (p.ranks > 1 && core::env_has_gpu(env)) {
    const int count = env["gpu"].value("count", 1), first = env["gpu"].value("index", 0);
    if (first + p.ranks > count)
      return fmt::format("ranks={} from --device {} needs GPUs {}..{}; this machine has {} (0..{})", p.ranks, first, first,
                         first + p.ranks - 1, count, count - 1);
  }
  if (p.backend == "gpu" && (p.model.d_model > 8192 || p.model.d_model % 8 != 0))
    return fmt::format("d_model={}: the GPU model's kernels need a multiple of 8, at most 8192", p.model.d_model);
  if (p.backend == "gpu" && env.contains("gpu") && env["gpu"].is_object()) {
    const double need = gpu_bytes_needed(p, p.fp8 ? &*p.fp8 : nullptr);
    const double have = double(env["gpu"].value("memory_mib", 0)) * (1 << 20);
    if (need > 0.95 * have)
      return fmt::format("needs about {:.1f} GiB of device memory; the GPU ({}) has {:.1f} GiB", need / (1 << 30),
                         env["gpu"].value("name", std::string("?")), have / (1 << 30));
  }
  if (p.backend == "cpu") {
    const double work = train_flops_per_step(p.model, p.batch, p.seq_len) * p.steps;
    if (work > 5e12) return fmt::format("the CPU reference would need {:.1e} FLOPs; use backend gpu for this size", work);
  }
  return {};
}

std::string check_train_data(const TrainPoint& p, const json& settings) {
  if (p.data == "synthetic") return {};
  // One batch reads B*T + 1 tokens (the targets are the inputs shifted by one).
  return model::check_token_file(p.data, p.model.vocab, settings.value("token_dtype", std::string("auto")),
                                 std::int64_t(p.batch) * p.seq_len + 1);
}

void fill_train_record(core::Record& r, const TrainPoint& p, const std::vector<StepRow>& steps, int timing_warmup, double peak_flops) {
  json loss = json::array(), norm = json::array(), lr = json::array(), ms = json::array();
  for (auto& s : steps) {
    loss.push_back(s.loss);
    norm.push_back(s.grad_norm);
    lr.push_back(s.lr);
    ms.push_back(s.ms);
  }
  r.data["train"] = {{"loss", loss}, {"grad_norm", norm}, {"lr", lr}, {"step_ms", ms}};
  std::vector<double> timed;
  for (std::size_t i = std::size_t(std::min<int>(timing_warmup, int(steps.size()) - 1)); i < steps.size(); ++i)
    timed.push_back(steps[i].ms);
  const core::Stats st = core::compute_stats(timed);
  const double tokens = double(p.batch) * p.seq_len * p.ranks;  // every rank's batch
  json m;
  m["ms_per_step"] = st.median;
  m["tokens_per_s"] = tokens / (st.median * 1e-3);
  m["params"] = model::param_count(p.model);
  m["flops_per_step"] = train_flops_per_step(p.model, p.batch, p.seq_len) * p.ranks;
  if (peak_flops > 0) m["mfu"] = m["flops_per_step"].get<double>() / (st.median * 1e-3) / (peak_flops * p.ranks);
  if (p.ranks > 1) m["tokens_per_s_per_gpu"] = tokens / (st.median * 1e-3) / p.ranks;
  m["loss_first"] = steps.front().loss;
  m["loss_last"] = steps.back().loss;
  r.data["metrics"] = m;
  json timing = core::to_json(st);
  timing["unit"] = "ms";
  r.data["timing"] = timing;
  // The untrained loss of a well-initialised model is ln(V): the logits are nearly uniform.
  const double lnv = std::log(double(p.model.vocab));
  const bool init_ok = std::abs(steps.front().loss - lnv) <= 0.1;
  // With GPT-2's init the logits are about N(0, C 0.02^2) (LayerNorm features of unit variance
  // times N(0, 0.02^2) weights), so the expected untrained loss is ln(V) + C 0.02^2 / 2 for an
  // untied head: 10.98 rather than 10.83 at d=768.
  const double expected = lnv + p.model.d_model * 0.02 * 0.02 / 2;
  r.data["init_loss_check"] = {{"ln_vocab", lnv}, {"loss0", steps.front().loss}, {"within_0_1", init_ok}, {"expected_untied", expected}};
  for (std::size_t i = 0; i < steps.size(); ++i)
    if (!std::isfinite(steps[i].loss)) {
      r.outcome = core::Outcome::nonfinite;
      r.reason = fmt::format("loss became non-finite at step {}", i);
      r.data["nan_onset"] = {{"step", int(i)}, {"layer", -1}, {"tensor", "loss"}, {"pass", "forward"}};
      break;
    }
  // Recorded, not an outcome: with a tied head the input token's own logit starts at about
  // C sigma_wte^2 / sigma_x (0.9 at d=64, 11 at d=768 with GPT-2's init), so the untrained loss
  // of a correct model can sit away from ln(V) depending on how often a token follows itself.
  if (!init_ok)
    r.data["init_loss_check"]["note"] =
        fmt::format("untrained loss {:.4f} is {:+.4f} from ln(V) = {:.4f}", steps.front().loss, steps.front().loss - lnv, lnv);
  r.data["headline"] = fmt::format("loss {:.3f} -> {:.3f}, {:.0f} tokens/s, {:.2f} ms/step", steps.front().loss, steps.back().loss,
                                   m["tokens_per_s"].get<double>(), st.median);
}

std::unique_ptr<model::TokenSource> data_for(const TrainPoint& p, const std::string& token_dtype) {
  if (p.data == "synthetic") return std::make_unique<model::MarkovTokens>(p.model.vocab, std::uint64_t(p.seed));
  return std::make_unique<model::TokenFile>(p.data, p.model.vocab, token_dtype);
}

cpu::TrainConfig cpu_train_config(const TrainPoint& p) {
  cpu::TrainConfig cfg;
  cfg.model = p.model;
  cfg.batch = p.batch, cfg.seq_len = p.seq_len, cfg.steps = p.steps, cfg.seed = std::uint64_t(p.seed);
  cfg.lr = {p.lr, p.min_lr, p.warmup, p.steps};
  cfg.adamw.weight_decay = p.weight_decay;
  cfg.grad_clip = p.grad_clip;
  return cfg;
}

core::Record run_train_point(const TrainPoint& p, const json& settings, const json& env, int device, const std::string& key,
                             const json& params) {
  core::Record r = core::make_record(key, params, core::Outcome::ok);
  if (p.backend == "gpu") {
    train_on_gpu(p, settings, env, device, r);
    return r;
  }
  auto data = data_for(p, settings.value("token_dtype", std::string("auto")));
  r.data["data"] = data->describe();
  std::vector<StepRow> rows;
  std::optional<cpu::Fp8Emulation> fp8;
  if (p.fp8) fp8.emplace(*p.fp8);
  for (auto& s : cpu::train_cpu(cpu_train_config(p), *data, fp8 ? &*fp8 : nullptr)) rows.push_back({s.loss, s.grad_norm, s.lr, s.ms});
  fill_train_record(r, p, rows, settings.value("timing_warmup", 3), 0.0);
  if (fp8) {
    r.data["taps"] = summarize_taps(fp8->taps(), settings.value("tap_points", 50));
    record_nan_onset(r, fp8->taps(), settings.value("onset_history", 5));
  }
  return r;
}

}  // namespace fp8scope::train
