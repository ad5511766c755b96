#!/usr/bin/env bash
# The CI recipe for a runner with a GPU: build, run the probes, gate them against the
# committed baseline. Exit 1 on a regression, 2 when the results cannot be compared.
# Usage: scripts/ci-gate.sh [BASELINE_DIR=results/h200] [OUT_DIR=out/ci]
# SWEEPS="gemm_gpt2 vocab train_fp8_gpt2_124m" gates other sweeps (each configs/<name>.json with a
# baseline <name>.json); a training sweep adds the memory and loss checks to speed and outcome.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
baseline=${1:-results/h200}
out=${2:-out/ci}
scripts/setup.sh build
status=0
sweeps=${SWEEPS:-gemm_gpt2 vocab}
for sweep in $sweeps; do
  cfg=configs/$sweep.json
  probe=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['probe'])" "$cfg")
  ./build/probes/probe_"$probe" --config "$cfg" --out "$out/$sweep" -q
  ./build/probes/fp8scope gate --baseline "$baseline/$sweep.json" --current "$out/$sweep.json" \
      --policy configs/gate.json || status=$?
done
./build/probes/fp8scope report $(for s in $sweeps; do echo "$out/$s.json"; done) --format github -o "$out/summary.md"
[ -n "${GITHUB_STEP_SUMMARY:-}" ] && cat "$out/summary.md" >>"$GITHUB_STEP_SUMMARY"
exit $status
