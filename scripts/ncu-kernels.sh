#!/usr/bin/env bash
# On a GPU machine with Nsight Compute: per-kernel duration, DRAM bytes and occupancy of the
# kernels behind the given bench_kernels benchmarks (a few launches each), for placing time
# inside a benchmark that is slower than its bytes say. Usage:
#   scripts/ncu-kernels.sh BUILD_DIR 'layernorm/backward' 'cast_transpose/e4m3/16384x768$' ...
# KERNELS='regex' picks other kernels (default: the casts, LayerNorm, GELU, transposes and
# bias sums), e.g. KERNELS=flash for 'attention_flash/backward'; tensor-pipe and shared-memory
# utilisation are shown for the compute-bound ones. SECTIONS='SpeedOfLight WarpStateStats ...'
# prints those Nsight Compute sections in full (stall reasons, issue use) instead, for the first
# COUNT (default 2) matching launches.
set -uo pipefail
build=${1:?usage: ncu-kernels.sh BUILD_DIR FILTER ...}
shift
for f in "$@"; do
  echo "== $f"
  if [ -n "${SECTIONS:-}" ]; then
    timeout 120 ncu --clock-control none -k regex:"${KERNELS:-layernorm|column_sum|cast|gelu|transpose|bias}" -c "${COUNT:-2}" \
      $(printf -- '--section %s ' $SECTIONS) "$build/bench/bench_kernels" --benchmark_filter="$f" --benchmark_min_time=0.001 2>&1 |
      grep -vE "^(bench|copy|Run on|CPU|  L[12] |Load Average|---|Benchmark|\*\*\*)" | grep -vE "^\s*$" | cut -c1-150
    continue
  fi
  timeout 120 ncu --clock-control none -k regex:"${KERNELS:-layernorm|column_sum|cast|gelu|transpose|bias}" -c 6 \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,l1tex__data_pipe_lsu_wavefronts_mem_shared.avg.pct_of_peak_sustained_elapsed,smsp__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active \
    "$build/bench/bench_kernels" --benchmark_filter="$f" --benchmark_min_time=0.001 2>&1 |
    grep -E "^  [a-zA-Z_:<>]|gpu__time|dram__|warps_active|registers|hmma|wavefronts|pipe_xu" | grep -v "^  bench\|^  copy" | cut -c1-150
done
