#pragma once
// Shared by the Google Benchmark executables: skip without a GPU, time device work with CUDA
// events (manual time) after flushing L2, and report rates as counters.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/core/env.hpp"

#include <benchmark/benchmark.h>

#include <functional>
#include <string>

namespace fp8scope::bench {

// "" when a GPU is usable, else why not (the benchmark then calls SkipWithError).
const std::string& gpu_problem();

// Runs `launch` once per benchmark iteration, timed by events; L2 is flushed before each.
// Returns the total measured seconds.
double run_timed(benchmark::State& state, const std::function<void()>& launch);

cudaStream_t stream();

// Adds fp8scope's environment (GPU, driver, cuBLASLt, git revision; as probe results carry it)
// to Google Benchmark's JSON context under "fp8scope_env", where the report and the gate read
// it. Call before RunSpecifiedBenchmarks.
void add_env_context();

// Device-to-device copy bandwidth (read + write bytes per second) of a 1 GiB copy, measured
// once per process: the ceiling the memory-bound kernels are compared with.
double copy_bandwidth();

// The same for a copy that moves `bytes_moved` (read + write): small kernels also pay the
// ramp-up and tail a 1 GiB copy hides, and a same-size copy shows how much of the gap that is.
double copy_bandwidth_moving(double bytes_moved);

}  // namespace fp8scope::bench
