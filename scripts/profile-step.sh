#!/usr/bin/env bash
# On a GPU machine: where one training step's GPU time goes, kernel by kernel. Runs the
# bench_step benchmarks matching each FILTER under Nsight Systems (or Nsight Compute, one
# metric, when nsys is missing), sums each kernel's time by name and divides by the steps
# (cross-entropy launches), largest first; Nsight Compute profiles the first PROFILE_LAUNCHES
# kernels (default 2500, a few steps). Usage:
#   scripts/profile-step.sh BUILD_DIR 'bf16_flash/' 'fp8_fused_flash/'
set -uo pipefail
build=${1:?usage: profile-step.sh BUILD_DIR FILTER ...}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
tmp=$(mktemp -d)
for f in "$@"; do
  echo "== $f"
  if command -v nsys >/dev/null; then
    nsys profile -o "$tmp/p" --force-overwrite true -t cuda "$build/bench/bench_step" --benchmark_filter="$f" >/dev/null 2>&1
    nsys stats -q --report cuda_gpu_kern_sum --format csv -o "$tmp/k" "$tmp/p.nsys-rep" >/dev/null 2>&1
    "$python" "$root/scripts/kernel_table.py" nsys "$tmp"/k*.csv
  else
    timeout 240 ncu --clock-control none --metrics gpu__time_duration.sum --csv --page raw --launch-count ${PROFILE_LAUNCHES:-2500} \
      "$build/bench/bench_step" --benchmark_filter="$f" >"$tmp/k.csv" 2>"$tmp/err"
    "$python" "$root/scripts/kernel_table.py" ncu "$tmp/k.csv" || { tail -5 "$tmp/err"; grep -v '^"' "$tmp/k.csv" | tail -5; }
  fi
done
rm -rf "$tmp"
