#!/usr/bin/env bash
# README command (1): install what is missing, build, run the main job (configs/default.json)
# and write its report. Without a GPU the GPU probes record their points as skipped and the
# summary says so.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh build --figures
./build/probes/fp8scope env | head -c 2000
echo
./build/probes/fp8scope run configs/default.json "$@"
echo "report: out/default/report.md"
