// Host-side model pieces: config validation, parameter layout and init, LR schedule, data.
#include "fp8scope/core/error.hpp"
#include "fp8scope/model/data.hpp"
#include "fp8scope/model/fp8_plan.hpp"
#include "fp8scope/model/fp8_point.hpp"
#include "fp8scope/model/gpt_config.hpp"
#include "fp8scope/model/schedule.hpp"
#include "fp8scope/model/train_point.hpp"
#include "fp8scope/report/report.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <set>

using namespace fp8scope;

TEST(GptConfig, Gpt2SmallHas124MParameters) {
  model::GptConfig c;  // defaults: GPT-2 small
  c.vocab = 50257;
  c.pad_vocab_to = 128;  // 50304, as llm.c
  EXPECT_EQ(c.padded_vocab(), 50304);
  EXPECT_EQ(model::param_count(c), 124475904);  // llm.c's count for the padded model
}

TEST(GptConfig, ValidationMessages) {
  model::GptConfig c;
  EXPECT_EQ(model::validate(c, 1024, 16), "");
  c.n_head = 7;
  EXPECT_EQ(model::validate(c, 1024, 16), "n_head=7 does not divide d_model=768");
  c.n_head = 12;
  EXPECT_EQ(model::validate(c, 2048, 16), "seq_len=2048 is larger than the position table (max_seq=1024)");
  c.vocab = 1;
  EXPECT_EQ(model::validate(c, 16, 1), "vocab=1 must be at least 2");
}

TEST(GptConfig, InitFollowsGpt2) {
  model::GptConfig c;
  c.vocab = 1000, c.pad_vocab_to = 64, c.d_model = 64, c.n_head = 4, c.n_layer = 8, c.max_seq = 64;
  auto p = model::init_params(c, 1);
  EXPECT_EQ(p, model::init_params(c, 1));
  EXPECT_NE(p, model::init_params(c, 2));
  for (const auto& t : model::param_layout(c)) {
    double ss = 0;
    std::int64_t n = t.size;
    if (t.name == "wte") n = std::int64_t(c.vocab) * c.d_model;
    for (std::int64_t i = 0; i < n; ++i) ss += double(p[std::size_t(t.offset + i)]) * p[std::size_t(t.offset + i)];
    const double std = std::sqrt(ss / double(n));
    switch (t.init) {
      case model::ParamTensor::Init::normal: EXPECT_NEAR(std, 0.02, 0.002) << t.name; break;
      case model::ParamTensor::Init::residual_normal: EXPECT_NEAR(std, 0.02 / 4.0, 0.0005) << t.name; break;
      case model::ParamTensor::Init::zeros: EXPECT_EQ(std, 0.0) << t.name; break;
      case model::ParamTensor::Init::ones: EXPECT_EQ(std, 1.0) << t.name; break;
    }
    if (t.name == "wte")
      for (std::int64_t i = n; i < t.size; ++i) EXPECT_EQ(p[std::size_t(t.offset + i)], 0.0f);  // padded rows
  }
}

TEST(LrSchedule, WarmupThenCosine) {
  model::LrSchedule s{1.0, 0.1, 10, 110};
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_NEAR(s.at(60), 0.55, 1e-12);  // half way: cos(pi/2) = 0
  EXPECT_DOUBLE_EQ(s.at(110), 0.1);
  EXPECT_DOUBLE_EQ(s.at(500), 0.1);
}

TEST(Data, MarkovIsDeterministicAndShifted) {
  model::MarkovTokens a(100, 3), b(100, 3);
  std::vector<int> ia, ta, ib, tb;
  a.next_batch(4, 16, ia, ta);
  b.next_batch(4, 16, ib, tb);
  EXPECT_EQ(ia, ib);
  for (int bb = 0; bb < 4; ++bb)
    for (int t = 0; t + 1 < 16; ++t) EXPECT_EQ(ta[std::size_t(bb * 16 + t)], ia[std::size_t(bb * 16 + t + 1)]);
  for (int x : ia) EXPECT_LT(x, 100);
  EXPECT_GT(a.entropy_rate(), 1.0);
  EXPECT_LT(a.entropy_rate(), std::log(8.0));
}

TEST(Data, TokenFilesWithAndWithoutHeader) {
  const std::string dir = ::testing::TempDir();
  // llm.c header: 256 int32, magic 20240520, version 1 (uint16), token count.
  {
    std::ofstream f(dir + "/tok.bin", std::ios::binary);
    std::int32_t header[256] = {20240520, 1, 6};
    f.write(reinterpret_cast<char*>(header), sizeof header);
    std::uint16_t toks[6] = {5, 6, 7, 8, 9, 10};
    f.write(reinterpret_cast<char*>(toks), sizeof toks);
  }
  model::TokenFile tf(dir + "/tok.bin", 50257);
  EXPECT_EQ(tf.size(), 6u);
  std::vector<int> in, tg;
  tf.next_batch(1, 4, in, tg);
  EXPECT_EQ(in, (std::vector<int>{5, 6, 7, 8}));
  EXPECT_EQ(tg, (std::vector<int>{6, 7, 8, 9}));
  {
    std::ofstream f(dir + "/flat32.bin", std::ios::binary);
    std::uint32_t toks[3] = {1, 70000, 2};
    f.write(reinterpret_cast<char*>(toks), sizeof toks);
  }
  EXPECT_EQ(model::TokenFile(dir + "/flat32.bin", 100000, "u32").size(), 3u);
  EXPECT_THROW(model::TokenFile(dir + "/flat32.bin", 50000, "u32"), core::InputError);  // 70000 >= vocab
  EXPECT_THROW(model::TokenFile(dir + "/missing.bin", 10), core::InputError);
}

TEST(TrainPoint, RejectedBeforeAnyGpuWork) {
  core::json point = core::json::object();
  for (const auto& a : model::train_axes()) point[a.name] = a.default_value;
  const core::json h200 = {{"gpu", {{"name", "NVIDIA H200"}, {"memory_mib", 143155}}}};
  EXPECT_EQ(model::check_train_point(model::train_point_from(point), h200), "");
  point["n_head"] = 5;
  EXPECT_EQ(model::check_train_point(model::train_point_from(point), h200), "n_head=5 does not divide d_model=64");
  point["n_head"] = 4;
  point["seq_len"] = 2048;
  EXPECT_EQ(model::check_train_point(model::train_point_from(point), h200),
            "seq_len=2048 is larger than the position table (max_seq=1024)");
  // GPT-2 124M at B=512, T=1024 on the GPU: far beyond 140 GiB.
  point = {{"backend", "gpu"}, {"vocab", 50304}, {"pad_vocab_to", 1}, {"d_model", 768}, {"n_layer", 12}, {"n_head", 12},
           {"max_seq", 1024}, {"seq_len", 1024}, {"batch", 512}, {"tied", true}, {"steps", 1}, {"lr", 6e-4}, {"min_lr", 6e-5},
           {"warmup", 0}, {"weight_decay", 0.1}, {"grad_clip", 1.0}, {"seed", 1}, {"data", "synthetic"}};
  const std::string e = model::check_train_point(model::train_point_from(point), h200);
  EXPECT_EQ(e.rfind("needs about ", 0), 0u) << e;
  EXPECT_NE(e.find("the GPU (NVIDIA H200) has 139.8 GiB"), std::string::npos) << e;
  // The measured B=16 run (17.7 GiB on the H200) fits, and the estimate is not below it.
  point["batch"] = 16;
  EXPECT_EQ(model::check_train_point(model::train_point_from(point), h200), "");
  EXPECT_GT(model::gpu_training_bytes(model::train_point_from(point).model, 16, 1024), 17.0 * (1 << 30));
  // The CPU reference refuses sizes it cannot train in reasonable time.
  point["backend"] = "cpu";
  EXPECT_NE(model::check_train_point(model::train_point_from(point), h200).find("use backend gpu"), std::string::npos);
}

TEST(TrainPoint, GpuWidthLimit) {
  core::json point = core::json::object();
  for (const auto& a : model::train_axes()) point[a.name] = a.default_value;
  point["backend"] = "gpu";
  point["d_model"] = 2048;
  point["n_head"] = 16;
  EXPECT_EQ(model::check_train_point(model::train_point_from(point), core::json::object()),
            "d_model=2048: the GPU LayerNorm backward needs a multiple of 8, at most 1024");
  point["d_model"] = 100;  // not a multiple of 8 (16-byte vector loads)
  point["n_head"] = 4;
  EXPECT_NE(model::check_train_point(model::train_point_from(point), core::json::object()), "");
  point["d_model"] = 96;
  EXPECT_EQ(model::check_train_point(model::train_point_from(point), core::json::object()), "");
}

// The GPU model's tap plan: which tensors are tapped, in execution order, with which format.
TEST(TapPlan, SlotsFollowVariantLinearsAndFormat) {
  model::GptConfig cfg;
  cfg.vocab = 96, cfg.pad_vocab_to = 1, cfg.max_seq = 32, cfg.d_model = 64, cfg.n_layer = 2, cfg.n_head = 4;
  model::Fp8ModelConfig f;  // custom, all linears, hybrid, delayed
  model::TapPlan custom(cfg, 4, 32, f);
  ASSERT_FALSE(custom.slots().empty());
  EXPECT_EQ(custom.slots().front().tensor, "qkv.input");  // the first cast of the step
  EXPECT_EQ(custom.slots().front().layer, 0);
  const auto& qkv_grad = custom.slots()[std::size_t(custom.index(0, "qkv.grad"))];
  EXPECT_EQ(qkv_grad.format, fp8::Format::e5m2);  // HYBRID: gradients in E5M2
  EXPECT_EQ(qkv_grad.pass, "backward");
  EXPECT_EQ(qkv_grad.elements, 4 * 32 * 3 * 64);
  EXPECT_EQ(custom.slots()[std::size_t(custom.index(1, "fc2.weight"))].format, fp8::Format::e4m3);
  EXPECT_FALSE(custom.slots()[std::size_t(custom.index(1, "residual"))].format.has_value());  // observed only
  EXPECT_GE(custom.index(1, "gelu_out"), 0);
  EXPECT_GE(custom.index(1, "scores"), 0);
  EXPECT_LT(model::TapPlan(cfg, 4, 32, f, /*flash_attention=*/true).index(1, "scores"), 0);  // never in memory
  EXPECT_LT(custom.index(0, "q.input"), 0);
  EXPECT_LT(custom.index(0, "fc2.input"), custom.index(-1, "lm_head.input"));  // forward before the head
  EXPECT_LT(custom.index(-1, "lm_head.grad"), custom.index(1, "fc2.grad"));  // backward runs from the head down
  EXPECT_LT(custom.index(1, "qkv.grad"), custom.index(0, "fc2.grad"));
  // fused: the GELU writes fc2's FP8 input, so there is no BF16 gelu_out to tap...
  f.variant = model::Fp8Variant::fused;
  EXPECT_LT(model::TapPlan(cfg, 4, 32, f).index(1, "gelu_out"), 0);
  // ...unless current scaling takes the unfused path.
  f.recipe.scaling = fp8::Scaling::current;
  EXPECT_GE(model::TapPlan(cfg, 4, 32, f).index(1, "gelu_out"), 0);
  // FP8 attention adds Q, K, V, the probabilities and the attention output's gradient.
  f.variant = model::Fp8Variant::fp8_attention;
  model::TapPlan att(cfg, 4, 32, f);
  for (const char* t : {"q.input", "k.input", "v.input", "probs.input", "attention_out.grad"}) EXPECT_GE(att.index(1, t), 0) << t;
  // Linears left in BF16 have no FP8 slots; E4M3 recipes keep gradients in E4M3.
  f.linears = {"fc1", "fc2"};
  f.recipe.format = fp8::RecipeFormat::e4m3;
  model::TapPlan some(cfg, 4, 32, f);
  EXPECT_LT(some.index(0, "qkv.input"), 0);
  EXPECT_LT(some.index(-1, "lm_head.grad"), 0);
  EXPECT_EQ(some.slots()[std::size_t(some.index(0, "fc1.grad"))].format, fp8::Format::e4m3);
}

TEST(Fp8Point, LinearsAndFastAccumulation) {
  std::set<std::string> l;
  EXPECT_EQ(model::parse_linears("all", l), "");
  EXPECT_EQ(l.size(), 5u);
  EXPECT_EQ(model::parse_linears("none", l), "");
  EXPECT_TRUE(l.empty());
  EXPECT_EQ(model::parse_linears("qkv,lm_head", l), "");
  EXPECT_EQ(l, (std::set<std::string>{"qkv", "lm_head"}));
  EXPECT_NE(model::parse_linears("qkv,mlp", l).find("unknown linear 'mlp'"), std::string::npos);
  core::json p = core::json::object();
  for (const auto& a : model::fp8_axes()) p[a.name] = a.default_value;
  auto f = model::fp8_config_from(p);
  EXPECT_TRUE(f.fast_accum_fprop);  // TransformerEngine's choice on Hopper
  EXPECT_FALSE(f.fast_accum_dgrad);
  EXPECT_FALSE(f.fast_accum_wgrad);
  p["fast_accum"] = "all";
  f = model::fp8_config_from(p);
  EXPECT_TRUE(f.fast_accum_dgrad && f.fast_accum_wgrad);
  p["variant"] = "fp8_attention";
  p["saturation"] = "nosat";
  p["format"] = "e4m3";
  const auto c = model::cpu_fp8_options_from(p);
  EXPECT_TRUE(c.attention);
  EXPECT_EQ(c.overflow, fp8::Overflow::nosat);
  EXPECT_EQ(c.recipe.format, fp8::RecipeFormat::e4m3);
  EXPECT_TRUE(model::fp8_config_from(p).attention());
}

TEST(TrainPoint, DataParallelNeedsTheGpuBackendAndEnoughGpus) {
  core::json point = core::json::object();
  for (const auto& a : model::probe_train_axes()) point[a.name] = a.default_value;
  point["ranks"] = 2;
  EXPECT_EQ(model::check_train_point(model::train_point_from(point), core::json::object()),
            "ranks=2 needs backend gpu (data parallelism runs on GPUs)");
  point["backend"] = "gpu";
  const core::json one_gpu = {{"gpu", {{"count", 1}, {"memory_mib", 143771}, {"name", "NVIDIA H200"}}}};
  EXPECT_EQ(model::check_train_point(model::train_point_from(point), one_gpu), "ranks=2 needs 2 GPUs; this machine has 1");
  point["ranks"] = 1;
  EXPECT_EQ(model::check_train_point(model::train_point_from(point), one_gpu), "");
  // Tokens per step count every rank's batch; MFU stays per GPU.
  point["ranks"] = 2;
  const auto tp = model::train_point_from(point);
  core::Record r = core::make_record("k", point, core::Outcome::ok);
  model::fill_train_record(r, tp, {{4.0, 1.0, 1e-3, 10.0}, {3.9, 1.0, 1e-3, 10.0}}, 0, 1e15);
  EXPECT_DOUBLE_EQ(r.data["metrics"]["tokens_per_s"].get<double>(), 2.0 * tp.batch * tp.seq_len / 0.010);
  EXPECT_DOUBLE_EQ(r.data["metrics"]["tokens_per_s_per_gpu"].get<double>(), double(tp.batch) * tp.seq_len / 0.010);
  EXPECT_NEAR(r.data["metrics"]["mfu"].get<double>(), model::train_flops_per_step(tp.model, tp.batch, tp.seq_len) / 0.010 / 1e15, 1e-12);
}

TEST(TrainPoint, FlashAttentionNeedsHeadSize64AndFullTiles) {
  core::json point = core::json::object();
  for (const auto& a : model::probe_train_axes()) point[a.name] = a.default_value;
  point["backend"] = "gpu";
  point["attention"] = "flash";
  point["d_model"] = 128, point["n_head"] = 2, point["seq_len"] = 128, point["max_seq"] = 128;
  EXPECT_EQ(model::check_train_point(model::train_point_from(point), core::json::object()), "");
  point["seq_len"] = 96;
  EXPECT_NE(model::check_train_point(model::train_point_from(point), core::json::object()).find("multiple of 64"), std::string::npos);
  point["seq_len"] = 128;
  point["n_head"] = 4;  // head size 32
  EXPECT_NE(model::check_train_point(model::train_point_from(point), core::json::object()).find("head size 64"), std::string::npos);
  point["n_head"] = 2;
  point["precision"] = "fp8";
  point["variant"] = "fp8_attention";
  EXPECT_NE(model::check_train_point(model::train_point_from(point), core::json::object()).find("fp8_attention"), std::string::npos);
}

// The report of a data-parallel run: the scaling column against the 1-GPU run of the same
// point and a table of the ranks.
TEST(TrainReport, DataParallelScalingAndRanks) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", "dp"}};
  auto rec = [](int ranks, double tps) {
    core::json p = {{"backend", "gpu"}, {"d_model", 768}, {"n_layer", 12}, {"n_head", 12}, {"seq_len", 1024}, {"batch", 16},
                    {"vocab", 50304}, {"ranks", ranks}, {"precision", "fp8"}, {"reduce_amax", true}};
    core::Record r = core::make_record(fmt::format("ranks={}", ranks), p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", tps}, {"ms_per_step", 50.0}};
    if (ranks > 1)
      r.data["data_parallel"] = {{"ranks", ranks},
                                 {"per_rank", core::json::array({{{"rank", 0}, {"device", 0}, {"loss_last", 2.1}, {"scales_differing_from_rank0", 0}, {"scales_compared", 40}},
                                                                 {{"rank", 1}, {"device", 1}, {"loss_last", 2.2}, {"scales_differing_from_rank0", 0}, {"scales_compared", 40}}})}};
    return r;
  };
  f.records = {rec(1, 100000.0), rec(2, 190000.0)};
  report::ReportOptions opt;
  opt.results.push_back({"dp.json", f});
  const std::string md = report::render_markdown(report::build_report(opt), report::Flavor::markdown);
  EXPECT_NE(md.find("95.0% of 2x"), std::string::npos) << md;
  EXPECT_NE(md.find("Data-parallel ranks"), std::string::npos);
  EXPECT_NE(md.find("0 of 40"), std::string::npos);
}

// "vs BF16" divides by the BF16 run with the same GPU count and attention kernels, not by the
// first BF16 run of the file.
TEST(TrainReport, Fp8AgainstTheBf16RunOfTheSameSetup) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", "twins"}};
  auto rec = [](const char* precision, const char* attention, int ranks, double tps) {
    core::json p = {{"backend", "gpu"}, {"d_model", 768}, {"n_layer", 12}, {"n_head", 12}, {"seq_len", 1024}, {"batch", 16}, {"vocab", 50304},
                    {"ranks", ranks}, {"precision", precision}, {"attention", attention}};
    core::Record r = core::make_record(fmt::format("{}-{}-{}", precision, attention, ranks), p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", tps}, {"ms_per_step", 50.0}};
    return r;
  };
  f.records = {rec("bf16", "materialized", 1, 100000.0), rec("bf16", "flash", 1, 125000.0), rec("bf16", "flash", 2, 240000.0),
               rec("fp8", "flash", 1, 150000.0), rec("fp8", "flash", 2, 264000.0)};
  f.records[1].data["time_split_ms"] = {{"matmul", 15.0}, {"gelu", 1.5}};
  f.records[3].data["time_split_ms"] = {{"matmul", 12.5}, {"gelu", 2.5}};
  f.records[3].data["metrics"]["ms_per_step"] = 48.0;
  report::ReportOptions opt;
  opt.results.push_back({"twins.json", f});
  const std::string md = report::render_markdown(report::build_report(opt), report::Flavor::markdown);
  EXPECT_NE(md.find("1.200x"), std::string::npos) << md;  // 150000 / 125000
  EXPECT_NE(md.find("1.100x"), std::string::npos) << md;  // 264000 / 240000
  EXPECT_EQ(md.find("1.500x"), std::string::npos) << md;  // not against the materialised run
  // Per layer type: FP8 minus the same BF16 twin.
  EXPECT_NE(md.find("FP8 minus its BF16 twin"), std::string::npos) << md;
  EXPECT_NE(md.find("| +1.00 | -2.50 | -2.00 |"), std::string::npos) << md;  // gelu, matmul, step
}

// With step-time quartiles on both sides, "vs BF16" also gives the range they allow.
TEST(TrainReport, Fp8RatioCarriesTheQuartileRange) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", "spread"}};
  auto rec = [](const char* precision, double tps, double q1, double q3) {
    core::json p = {{"backend", "gpu"}, {"d_model", 768}, {"n_layer", 12}, {"n_head", 12}, {"seq_len", 1024}, {"batch", 16}, {"vocab", 50304},
                    {"precision", precision}, {"attention", "flash"}};
    core::Record r = core::make_record(precision, p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", tps}, {"ms_per_step", 16384e3 / tps}};
    r.data["timing"] = {{"q1", q1}, {"q3", q3}, {"rel_iqr", (q3 - q1) / (16384e3 / tps)}};
    return r;
  };
  f.records = {rec("bf16", 442109.0, 36.66, 37.50), rec("fp8", 525734.0, 30.88, 31.46)};
  report::ReportOptions opt;
  opt.results.push_back({"spread.json", f});
  const std::string md = report::render_markdown(report::build_report(opt), report::Flavor::markdown);
  EXPECT_NE(md.find("1.189x (1.165-1.214)"), std::string::npos) << md;  // 36.66 / 31.46, 37.50 / 30.88
}

// Two results of one sweep (a rerun, another build) in one report: each keeps its own loss
// figure instead of both drawing to the sweep's file name.
TEST(TrainReport, TwoResultsOfOneSweepDrawTwoFigures) {
  auto result = [](double loss) {
    core::ResultFile f;
    f.meta = {{"probe", "train"}, {"sweep", "again"}};
    core::json p = {{"backend", "gpu"}, {"d_model", 768}, {"n_layer", 12}, {"n_head", 12}, {"seq_len", 1024}, {"batch", 16}, {"vocab", 50304},
                    {"precision", "bf16"}, {"attention", "flash"}};
    core::Record r = core::make_record("bf16", p, core::Outcome::ok);
    r.data["metrics"] = {{"tokens_per_s", 100000.0}, {"ms_per_step", 50.0}};
    r.data["train"] = {{"loss", core::json::array({loss, loss / 2})}};
    f.records = {r};
    return f;
  };
  report::ReportOptions opt;
  opt.results.push_back({"a.json", result(10.0)});
  opt.results.push_back({"b.json", result(11.0)});
  const core::json rep = report::build_report(opt);
  std::vector<std::string> files;
  for (const auto& s : rep["sections"])
    for (const auto& f : s["figures"]) files.push_back(f["file"].get<std::string>());
  EXPECT_EQ(files, (std::vector<std::string>{"again_loss", "again_loss_2"}));
}

// A peer joins the result it was measured beside (meta.peer_of), not a rerun of the same sweep
// from another build; with the named file absent (renamed on commit) it joins its sweep.
// A one-record GPU training result of sweep `sweep` (started at `started`, when given), and
// whether a report section shows a PyTorch peer's columns.
namespace {
core::ResultFile train_result(const char* sweep, const char* started = nullptr) {
  core::ResultFile f;
  f.meta = {{"probe", "train"}, {"sweep", sweep}};
  if (started) f.meta["started_utc"] = started;
  core::json p = {{"backend", "gpu"}, {"precision", "bf16"}, {"attention", "flash"}};
  core::Record r = core::make_record("bf16", p, core::Outcome::ok);
  r.data["metrics"] = {{"tokens_per_s", 100000.0}, {"ms_per_step", 50.0}};
  f.records = {r};
  return f;
}
bool has_peer_columns(const core::json& section) {
  for (const auto& t : section["tables"])
    for (const auto& c : t["columns"])
      if (c.get<std::string>().rfind("peer tokens/s", 0) == 0) return true;
  return false;
}
}  // namespace

TEST(TrainReport, PeerJoinsTheRunItWasMeasuredBeside) {
  core::ResultFile peer = train_result("s");
  peer.meta["peer_of"] = "s.json";
  report::ReportOptions opt;
  opt.results = {{"results/s.json", train_result("s")}, {"results/s_rerun.json", train_result("s")}};
  opt.peers = {{"results/s_torch_peer.json", peer}};
  core::json rep = report::build_report(opt);
  EXPECT_TRUE(has_peer_columns(rep["sections"][1]));
  EXPECT_FALSE(has_peer_columns(rep["sections"][2]));
  opt.results = {{"results/s_renamed.json", train_result("s")}};
  rep = report::build_report(opt);
  EXPECT_TRUE(has_peer_columns(rep["sections"][1]));
}

// A peer that names the start of its run (meta.peer_of_started_utc) joins that run under any
// file name, and not another run whose file carries the name it was measured under.
TEST(TrainReport, PeerNamingItsRunsStartFollowsARename) {
  core::ResultFile peer = train_result("s");
  peer.meta["peer_of"] = "s.json";
  peer.meta["peer_of_started_utc"] = "2026-01-02T00:00:00Z";
  report::ReportOptions opt;
  // An older run committed as s.json; the peer's run renamed s_abc1234.json.
  opt.results = {{"results/s.json", train_result("s", "2026-01-01T00:00:00Z")},
                 {"results/s_abc1234.json", train_result("s", "2026-01-02T00:00:00Z")}};
  opt.peers = {{"results/s_abc1234_torch_peer.json", peer}};
  core::json rep = report::build_report(opt);
  EXPECT_FALSE(has_peer_columns(rep["sections"][1]));
  EXPECT_TRUE(has_peer_columns(rep["sections"][2]));
}
