#!/usr/bin/env bash
# On a GPU machine with Nsight Compute: one launch of a kernel behind a bench_kernels benchmark
# profiled in full with its source, and where its instructions and stalls go per source line
# (scripts/ncu_lines.py). Writes OUTDIR/<name>.csv (the source page) and OUTDIR/<name>.txt (the
# summary, also printed). Usage:
#   scripts/ncu-lines.sh BUILD_DIR OUTDIR NAME KERNEL_REGEX BENCH_FILTER [--per K]
# e.g. scripts/ncu-lines.sh build out cast_3072 block_cast_kernel 'block_cast/vec128_pow2/16384x3072/' --per 24576
# (--per: tiles x warps, to read instructions per warp per tile). Build with -lineinfo (the
# CMake build does) for the source lines.
set -uo pipefail
build=${1:?usage: ncu-lines.sh BUILD_DIR OUTDIR NAME KERNEL_REGEX BENCH_FILTER [--per K]}
out=${2:?}
name=${3:?}
kernel=${4:?}
filter=${5:?}
shift 5
mkdir -p "$out"
rep=$(mktemp -d)/"$name"
timeout 300 ncu --clock-control none -k regex:"$kernel" -c 1 --set full --import-source yes -o "$rep" \
  "$build/bench/bench_kernels" --benchmark_filter="$filter" --benchmark_min_time=0.001s >"$out/$name.ncu.log" 2>&1 ||
  { tail -5 "$out/$name.ncu.log"; exit 1; }
ncu --import "$rep.ncu-rep" --page source --csv --print-source cuda,sass >"$out/$name.csv" 2>&1
python3 "$(dirname "$0")/ncu_lines.py" "$out/$name.csv" "$@" | tee "$out/$name.txt"
rm -rf "$(dirname "$rep")"
