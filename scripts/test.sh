#!/usr/bin/env bash
# README command (2): install what is missing, build, run every test. Tests labelled `gpu`
# report "Skipped" on a machine without a GPU; every `cpu` test always runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh build
cd build
ctest --output-on-failure -j"$(nproc)"
