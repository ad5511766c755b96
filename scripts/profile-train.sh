#!/usr/bin/env bash
# On a GPU machine with Nsight Compute: where one training step of a probe_train point goes,
# kernel by kernel (kernel_table.py's per-step table, a step counted by its one AdamW launch).
# The point is CONFIG with each KEY=VALUE axis fixed (train_point.py: a zip group must be fixed
# whole), run for STEPS steps (default 6) in this process; Nsight Compute times the first
# LAUNCHES kernels (default 8000: the kernels of two or more whole steps at GPT-2 774M). Usage:
#   scripts/profile-train.sh BUILD_DIR CONFIG KEY=VALUE ...
#   e.g. scripts/profile-train.sh build configs/train_sizes.json d_model=1280 n_layer=36 n_head=20 precision=fp8
set -uo pipefail
build=${1:?usage: profile-train.sh BUILD_DIR CONFIG KEY=VALUE ...}
config=${2:?usage: profile-train.sh BUILD_DIR CONFIG KEY=VALUE ...}
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" "$root/scripts/train_point.py" "$config" "$tmp/point.json" "${STEPS:-6}" "$@" || exit 2
timeout 500 ncu --clock-control none --metrics gpu__time_duration.sum --csv --page raw --launch-count "${LAUNCHES:-8000}" \
  "$build/probes/probe_train" --config "$tmp/point.json" --out "$tmp/point" --no-isolate -q >"$tmp/k.csv" 2>"$tmp/err"
KERNEL_TABLE_ANCHOR=adamw "$python" "$root/scripts/kernel_table.py" ncu "$tmp/k.csv" || { tail -5 "$tmp/err"; grep -v '^"' "$tmp/k.csv" | tail -5; }
