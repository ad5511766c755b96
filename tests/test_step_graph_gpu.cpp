// The training step as one CUDA graph (GpuGpt::train_step): the embedding gradient's token
// grouping on the device against a host sort, and replayed steps against uncaptured ones, bit
// for bit, in BF16 and in FP8 under each kind of scaling, with the FP8 taps.
#include "fp8scope/gpu_model/gpt_gpu.hpp"
#include "fp8scope/model/data.hpp"
#include "gpu_test_util.hpp"
#include "model_test_util.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <string>

using namespace fp8scope;

namespace {
// A stream of the test's own: the legacy default stream cannot be captured.
struct Stream {
  cudaStream_t s = nullptr;
  Stream() { FP8S_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(s); }
};
}  // namespace

// --- The token grouping -----------------------------------------------------------------------

// The buckets the host used to make: tokens ascending, each token's positions ascending.
class TokenGroupingGpu : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(TokenGroupingGpu, MatchesAHostSortOfTokensAndPositions) {
  FP8SCOPE_REQUIRE_GPU();
  const auto [N, vocab, distinct] = GetParam();  // tokens drawn from `distinct` values below vocab
  std::mt19937 rng(7);
  std::vector<int> pool(static_cast<std::size_t>(distinct));
  for (auto& t : pool) t = int(rng() % unsigned(vocab));
  pool.back() = vocab - 1;  // the highest id: the radix sort's bit count must cover it
  std::vector<int> tokens(static_cast<std::size_t>(N));
  for (auto& t : tokens) t = pool[rng() % pool.size()];

  std::vector<std::pair<int, int>> keyed;
  for (int i = 0; i < N; ++i) keyed.emplace_back(tokens[std::size_t(i)], i);
  std::sort(keyed.begin(), keyed.end());
  std::vector<int> want_token, want_start, want_position;
  for (int i = 0; i < N; ++i) {
    if (want_token.empty() || want_token.back() != keyed[std::size_t(i)].first) {
      want_token.push_back(keyed[std::size_t(i)].first);
      want_start.push_back(i);
    }
    want_position.push_back(keyed[std::size_t(i)].second);
  }
  want_start.push_back(N);

  core::DeviceBuffer d_tokens(std::size_t(N) * sizeof(int)), token(std::size_t(N) * sizeof(int)), start(std::size_t(N + 1) * sizeof(int)),
      position(std::size_t(N) * sizeof(int)), count(sizeof(int)), scratch(std::size_t(2 * N) * sizeof(int)),
      iota(std::size_t(N) * sizeof(int)), temp(gpu_model::group_tokens_temp_bytes(N, vocab));
  FP8S_CUDA(cudaMemcpy(d_tokens.get(), tokens.data(), d_tokens.size(), cudaMemcpyHostToDevice));
  gpu_model::fill_iota(iota.as<int>(), N, nullptr);
  const gpu_model::TokenBuckets b{token.as<int>(), start.as<int>(), position.as<int>(), count.as<int>()};
  gpu_model::group_tokens(b, scratch.as<int>(), d_tokens.as<int>(), iota.as<int>(), N, vocab, temp.get(), temp.size(), nullptr);
  FP8S_CUDA(cudaDeviceSynchronize());

  const int n = download<int>(count, 1)[0];
  ASSERT_EQ(n, int(want_token.size()));
  EXPECT_EQ(download<int>(token, std::size_t(n)), want_token);
  EXPECT_EQ(download<int>(position, std::size_t(N)), want_position);
  auto got_start = download<int>(start, std::size_t(N + 1));
  EXPECT_EQ(std::vector<int>(got_start.begin(), got_start.begin() + n + 1), want_start);
  for (int u = n + 1; u <= N; ++u) ASSERT_EQ(got_start[std::size_t(u)], N) << "start past the last token, at " << u;
}

// GPT-2 124M's batch (B=16, T=1024) over its vocabulary; a small batch of many tokens; one token.
INSTANTIATE_TEST_SUITE_P(Batches, TokenGroupingGpu,
                         ::testing::Values(std::make_tuple(16384, 50304, 6000), std::make_tuple(128, 97, 97),
                                           std::make_tuple(256, 4096, 1)));

// --- Replayed steps ---------------------------------------------------------------------------

namespace {
struct StepsRun {
  std::vector<std::uint32_t> loss, norm;
  std::vector<float> params;
  std::vector<fp8::Tap> taps;
  int replays = 0, captures = 0;
};

// Six steps with taps every other step (so both graphs, recording and not, are captured and
// replayed), on a stream of the run's own.
StepsRun train(const model::GptConfig& cfg, const model::Fp8ModelConfig* f, int B, int T, const model::GpuRunOptions& o) {
  Stream stream;
  gpu_model::GpuGpt gpu(cfg, B, T, stream.s, f, o);
  gpu.set_params(model::init_params(cfg, 11));
  gpu.set_tap_interval(2);
  model::MarkovTokens data(cfg.vocab, 4);
  std::vector<int> in, tg;
  StepsRun r;
  for (int s = 0; s < 6; ++s) {
    data.next_batch(B, T, in, tg);
    const auto v = gpu.train_step(in.data(), tg.data(), 3e-3f, s % 2 == 0 ? 1.0f : 0.05f, {});  // clipping on and (mostly) biting
    r.loss.push_back(bits(v.loss));
    r.norm.push_back(bits(v.norm));
  }
  r.params = gpu.params();
  if (gpu.fp8()) r.taps = gpu.fp8()->taps();
  r.replays = gpu.graph_replays(), r.captures = gpu.graph_captures();
  return r;
}
}  // namespace

class StepGraphGpu : public ::testing::TestWithParam<std::string> {};

TEST_P(StepGraphGpu, ReplaysGiveTheBitsOfTheUncapturedStep) {
  FP8SCOPE_REQUIRE_GPU();
  const std::string c = GetParam();
  model::GptConfig cfg = test::tiny_gpt(96);
  int B = 4, T = 32;
  model::GpuRunOptions o;
  std::optional<model::Fp8ModelConfig> f;
  auto fp8 = [&](model::Fp8Variant v, fp8::Scaling s) {
    f.emplace();
    f->variant = v, f->recipe.scaling = s, f->recipe.amax_history_len = 4;
  };
  if (c.find("flash") != std::string::npos) {  // the fused attention: head size 64, T a multiple of 64
    cfg.d_model = 256, cfg.max_seq = 64, T = 64, o.flash_attention = true;
    o.lm_head_chunk = 96;  // the head in chunks (96, 96 and 64 of 256 tokens)
  }
  if (c == "llama_fp8_fused_flash") cfg.arch = model::Arch::llama, cfg.n_kv_head = 2, cfg.ffn = 320, cfg.tied = false;
  if (c == "fp8_fused_delayed_flash" || c == "llama_fp8_fused_flash") fp8(model::Fp8Variant::fused, fp8::Scaling::delayed);
  if (c == "fp8_custom_current") fp8(model::Fp8Variant::custom, fp8::Scaling::current);
  if (c == "fp8_attention_delayed") fp8(model::Fp8Variant::fp8_attention, fp8::Scaling::delayed);
  if (c == "fp8_custom_rowwise") fp8(model::Fp8Variant::custom, fp8::Scaling::rowwise);
  const model::Fp8ModelConfig* fp = f ? &*f : nullptr;

  o.cuda_graph = false;
  const StepsRun eager = train(cfg, fp, B, T, o);
  o.cuda_graph = true;
  const StepsRun graph = train(cfg, fp, B, T, o);
  EXPECT_EQ(eager.replays, 0);
  // FP8: two graphs (recording the taps and not), each step after the first of its kind
  // replayed; BF16 records nothing: one graph from the second step on.
  EXPECT_EQ(graph.captures, fp ? 2 : 1);
  EXPECT_EQ(graph.replays, fp ? 4 : 5);
  EXPECT_EQ(graph.loss, eager.loss);
  EXPECT_EQ(graph.norm, eager.norm);
  EXPECT_TRUE(graph.params == eager.params) << "the parameters after six steps differ";
  ASSERT_EQ(graph.taps.size(), eager.taps.size());
  for (std::size_t i = 0; i < eager.taps.size(); ++i) {
    const fp8::Tap &a = eager.taps[i], &b = graph.taps[i];
    EXPECT_TRUE(a.step == b.step && a.tensor == b.tensor && a.amax == b.amax && a.scale == b.scale && a.saturated == b.saturated &&
                a.underflow == b.underflow && a.nonfinite == b.nonfinite)
        << "tap " << i << ": " << a.tensor << " at step " << a.step;
  }
  if (fp) EXPECT_GT(graph.taps.size(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Models, StepGraphGpu,
                         ::testing::Values("bf16", "bf16_flash", "fp8_fused_delayed_flash", "fp8_custom_current", "fp8_attention_delayed",
                                           "fp8_custom_rowwise", "llama_fp8_fused_flash"),
                         [](const auto& info) { return info.param; });

// The legacy default stream cannot be captured: the step runs uncaptured there, and says why.
TEST(StepGraphGpu, TheDefaultStreamRunsUncaptured) {
  FP8SCOPE_REQUIRE_GPU();
  const model::GptConfig cfg = test::tiny_gpt(96);
  gpu_model::GpuGpt gpu(cfg, 2, 32, nullptr);
  gpu.set_params(model::init_params(cfg, 1));
  model::MarkovTokens data(cfg.vocab, 1);
  std::vector<int> in, tg;
  for (int s = 0; s < 3; ++s) {
    data.next_batch(2, 32, in, tg);
    EXPECT_TRUE(std::isfinite(gpu.train_step(in.data(), tg.data(), 1e-3f, 1.0f, {}).loss));
  }
  EXPECT_EQ(gpu.graph_replays(), 0);
  EXPECT_NE(gpu.graphs_off_reason().find("default stream"), std::string::npos);
}
