#!/usr/bin/env bash
# Regenerates the committed report of a results folder: report.md, report.json and figures/
# from every result file in it, each *_torch_peer.json joined to the result it was measured
# beside. Usage: scripts/report-results.sh [RESULTS_DIR=results/h200] [BUILD_DIR=build]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-results/h200}
build=${2:-build}
tool=$root/$build/probes/fp8scope
[ -x "$tool" ] || { echo "report-results: $tool not built (scripts/setup.sh)" >&2; exit 2; }
cd "$dir"
results=() peers=()
for f in *.json; do
  case "$f" in
    report.json | env.json) ;;
    *_torch_peer.json) peers+=(--peer "$f") ;;
    *) results+=("$f") ;;
  esac
done
rm -rf figures
"$tool" report "${results[@]}" "${peers[@]}" -o report.md --json report.json --figures figures
rm -f figures/plot.py
