#!/usr/bin/env bash
# Formats every C++/CUDA source with the repository's .clang-format (Google-based, 140
# columns, include blocks kept as written). --check lists the files that differ and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "format: clang-format not found (apt-get install clang-format)" >&2; exit 2; }
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.cu' '*.cuh')
if [ "${1:-}" = --check ]; then
  bad=0
  for f in "${files[@]}"; do clang-format "$f" | cmp -s - "$f" || { echo "$f"; bad=1; }; done
  exit $bad
fi
clang-format -i "${files[@]}"
