#!/usr/bin/env bash
# On a GPU machine: why one bench_kernels kernel runs at the speed it does. Profiles the
# first launch of the kernels whose names match KERNEL_REGEX inside the bench_kernels
# benchmarks matching FILTER with Nsight Compute: speed of light, occupancy, warp stall
# reasons, issue-slot use and instruction mix, memory traffic. Usage:
#   scripts/profile-kernel.sh BUILD_DIR 'cross_entropy/forward_backward_fp8' 'cross_entropy_parts'
# SECTIONS overrides the sections (ncu --list-sections names them).
set -uo pipefail
build=${1:?usage: profile-kernel.sh BUILD_DIR FILTER KERNEL_REGEX}
filter=${2:?usage: profile-kernel.sh BUILD_DIR FILTER KERNEL_REGEX}
kernel=${3:?usage: profile-kernel.sh BUILD_DIR FILTER KERNEL_REGEX}
sections=${SECTIONS:-SpeedOfLight Occupancy LaunchStats WarpStateStats SchedulerStats InstructionStats MemoryWorkloadAnalysis}
args=()
for s in $sections; do args+=(--section "$s"); done
# --benchmark_min_time keeps the run short: only the first matching launch is profiled.
timeout 300 ncu --kernel-name "regex:$kernel" --launch-count 1 "${args[@]}" \
  "$build/bench/bench_kernels" --benchmark_filter="$filter" --benchmark_min_time=0.01 --benchmark_repetitions=1 2>&1 |
  grep -v -E "^(==PROF==|---|\s*$)|benchmark|Run on|CPU Caches|L[123] |Load Average" | cut -c1-140
