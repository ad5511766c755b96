// Data-parallel training on two GPUs (NCCL): two ranks of batch B follow the single-GPU run
// of batch 2B, and with reduce_amax every rank casts with the same FP8 scales (without it
// they drift apart). Skips on machines with fewer than two GPUs.
#include "fp8scope/core/nccl.hpp"
#include "gpu_test_util.hpp"
#include "model_test_util.hpp"
#include "train/train_point.hpp"

#include <cmath>

using namespace fp8scope;

namespace {
bool two_gpus_and_nccl(std::string& why) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count < 2) {
    cudaGetLastError();
    why = "fewer than 2 CUDA devices";
    return false;
  }
  return core::Nccl::get(&why) != nullptr;
}
train::TrainPoint point(int ranks, int batch) {
  train::TrainPoint p;
  p.backend = "gpu";
  p.model = test::tiny_gpt(96);
  p.model.n_layer = 2;
  p.batch = batch, p.seq_len = 32, p.steps = 5, p.warmup = 1, p.seed = 3, p.ranks = ranks;
  p.lr = 1e-3, p.min_lr = 1e-4, p.weight_decay = 0.1, p.grad_clip = 1.0;
  p.data = "synthetic";
  return p;
}
}  // namespace

TEST(DataParallel, TwoRanksFollowTheSingleGpuRunOfTheGlobalBatch) {
  FP8SCOPE_REQUIRE_GPU();
  std::string why;
  if (!two_gpus_and_nccl(why)) GTEST_SKIP() << "SKIPPED: " << why;
  train::GpuRun one, two;
  core::Record r1 = core::make_record("a", core::json::object(), core::Outcome::ok), r2 = r1;
  ASSERT_TRUE(train::train_gpu_run(point(1, 8), nullptr, core::json::object(), 0, false, one, r1)) << r1.reason;
  ASSERT_TRUE(train::train_gpu_run(point(2, 4), nullptr, core::json::object(), 0, false, two, r2)) << r2.reason;
  ASSERT_EQ(one.rows.size(), two.rows.size());
  for (std::size_t s = 0; s < one.rows.size(); ++s) {
    // The same mathematics; BF16 activations and a different reduction order.
    EXPECT_NEAR(two.rows[s].loss, one.rows[s].loss, 5e-3 * one.rows[s].loss) << "step " << s;
    EXPECT_NEAR(two.rows[s].grad_norm, one.rows[s].grad_norm, 0.03 * one.rows[s].grad_norm) << "step " << s;
  }
}

TEST(DataParallel, ReducedAmaxGivesEveryRankTheSameScales) {
  FP8SCOPE_REQUIRE_GPU();
  std::string why;
  if (!two_gpus_and_nccl(why)) GTEST_SKIP() << "SKIPPED: " << why;
  for (bool reduce : {true, false}) {
    model::Fp8ModelConfig f;
    f.recipe.amax_history_len = 4;
    f.reduce_amax = reduce;
    train::GpuRun run;
    core::Record r = core::make_record("a", core::json::object(), core::Outcome::ok);
    ASSERT_TRUE(train::train_gpu_run(point(2, 4), &f, core::json::object(), 0, false, run, r)) << r.reason;
    ASSERT_EQ(run.rank_taps.size(), 2u);
    long long differ = 0, compared = 0;
    for (std::size_t i = 0; i < run.rank_taps[1].size(); ++i)
      if (run.rank_taps[1][i].scale != 0.0f) {
        ++compared;
        differ += run.rank_taps[1][i].scale != run.rank_taps[0][i].scale;
      }
    EXPECT_GT(compared, 0);
    if (reduce)
      EXPECT_EQ(differ, 0) << "reduce_amax on: every rank casts with the same scales";
    else
      EXPECT_GT(differ, 0) << "reduce_amax off: each rank's scales follow its own data";
  }
}
