#include "fp8scope/cpu/trainer.hpp"

#include "fp8scope/cpu/gpt_ref.hpp"

#include <chrono>
#include <cmath>

namespace fp8scope::cpu {

std::vector<StepLog> train_cpu(const TrainConfig& cfg, model::TokenSource& data, Fp8Emulation* fp8, bool stop_at_nonfinite) {
  const auto init = model::init_params(cfg.model, cfg.seed);
  std::vector<double> params(init.begin(), init.end()), grads;
  std::vector<bool> decay(params.size(), false);
  for (const auto& t : model::param_layout(cfg.model))
    for (std::int64_t i = 0; i < t.size; ++i) decay[std::size_t(t.offset + i)] = t.decay;
  AdamW opt(params.size(), cfg.adamw, decay);
  CpuGpt gpt(cfg.model);
  gpt.attach_fp8(fp8);
  std::vector<int> in, tg;
  std::vector<StepLog> log;
  for (int step = 0; step < cfg.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    data.next_batch(cfg.batch, cfg.seq_len, in, tg);
    const double loss = gpt.forward(params, in.data(), tg.data(), cfg.batch, cfg.seq_len);
    gpt.backward(params, grads);
    if (fp8) fp8->end_step();
    const double lr = cfg.lr.at(step);
    const double norm = opt.step(params, grads, lr, cfg.grad_clip);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    log.push_back({step, loss, norm, lr, ms});
    if (stop_at_nonfinite && !std::isfinite(loss)) break;
  }
  return log;
}

}  // namespace fp8scope::cpu
