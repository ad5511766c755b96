#!/usr/bin/env bash
# The CI recipe for a runner with a GPU: build, run the probes, gate them against the
# committed baseline. Exit 1 on a regression, 2 when the results cannot be compared.
# Usage: scripts/ci-gate.sh [BASELINE_DIR=results/h200] [OUT_DIR=out/ci]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
baseline=${1:-results/h200}
out=${2:-out/ci}
scripts/setup.sh build
status=0
for sweep in gemm_gpt2 vocab; do
  cfg=configs/$sweep.json
  probe=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['probe'])" "$cfg")
  ./build/probes/probe_"$probe" --config "$cfg" --out "$out/$sweep" -q
  ./build/probes/fp8scope gate --baseline "$baseline/$sweep.json" --current "$out/$sweep.json" \
      --policy configs/gate.json || status=$?
done
./build/probes/fp8scope report "$out"/gemm_gpt2.json "$out"/vocab.json --format github -o "$out/summary.md"
[ -n "${GITHUB_STEP_SUMMARY:-}" ] && cat "$out/summary.md" >>"$GITHUB_STEP_SUMMARY"
exit $status
