#!/usr/bin/env bash
# Installs what fp8scope needs (Debian packages, when missing), configures and builds.
# Usage: scripts/setup.sh [BUILD_DIR] [extra Debian packages...]
# Uses CUDA when a CUDA compiler is found (nvcc on PATH or /usr/local/cuda/bin/nvcc); set
# FP8SCOPE_CUDA=OFF to build the host-only tools.
set -euo pipefail
build=${1:-build}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

need=(cmake g++ make pkg-config nlohmann-json3-dev libfmt-dev libbenchmark-dev libgtest-dev libcli11-dev "$@")
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "setup: missing packages (${missing[*]}) and no root or sudo to install them" >&2
    exit 1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

args=(-DCMAKE_BUILD_TYPE=Release -DFP8SCOPE_CUDA="${FP8SCOPE_CUDA:-AUTO}")
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
fi
command -v ninja >/dev/null && args+=(-G Ninja)
cmake -S . -B "$build" "${args[@]}" >"$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j"$(nproc)"
