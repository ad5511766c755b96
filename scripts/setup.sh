#!/usr/bin/env bash
# Checks what fp8scope needs by capability, installs what is missing when it can, configures
# and builds. Usage: scripts/setup.sh [BUILD_DIR] [--figures]
#
# Tools: any cmake >= 3.25 and any C++20 compiler on PATH (or CXX) are used as they are,
# whatever installed them; Ninja (on PATH or in /opt/torch/.venv/bin) or make. Libraries:
# whatever CMake finds (system, CMAKE_PREFIX_PATH, or the repository's .deps/ prefix).
# What is missing is installed with apt-get when this runs as root or with sudo and apt can
# reach its mirrors; otherwise this prints exactly what is missing and how to point
# CMAKE_PREFIX_PATH at it, and exits 1. --figures also wants Python's matplotlib (the report's
# figures; without it the report says so and has none).
# Environment: FP8SCOPE_CUDA=AUTO|ON|OFF (default AUTO: CUDA when nvcc is found),
# CUDA_ARCH (default: the GPU's own architecture when one is visible, else 90a;89),
# CMAKE_PREFIX_PATH (more prefixes to search), FP8SCOPE_CMAKE_ARGS (more CMake arguments).
set -euo pipefail
build=build
figures=0
for a in "$@"; do
  case "$a" in
    --figures) figures=1 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "setup: unknown option '$a' (usage: scripts/setup.sh [BUILD_DIR] [--figures])" >&2; exit 2 ;;
    *) build=$a ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

say() { echo "setup: $*"; }
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }

# --- Can we install? root or passwordless sudo, apt-get present, mirrors reachable (tried once).
apt_state=unknown
sudo_cmd=""
can_apt() {
  if [ "$apt_state" = unknown ]; then
    apt_state=no
    if command -v apt-get >/dev/null; then
      if [ "$(id -u)" -eq 0 ]; then sudo_cmd=""; apt_state=maybe
      elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo_cmd="sudo -n"; apt_state=maybe; fi
    fi
    if [ "$apt_state" = maybe ]; then
      if $sudo_cmd apt-get update -qq >/tmp/fp8scope-apt-update.log 2>&1; then apt_state=yes
      else apt_state=no; say "apt-get update failed (no network?); nothing will be installed"; fi
    fi
  fi
  [ "$apt_state" = yes ]
}
apt_install() {
  say "installing with apt-get: $*"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "$@" >/tmp/fp8scope-apt.log 2>&1 ||
    { cat /tmp/fp8scope-apt.log; say "apt-get install failed"; return 1; }
}

missing_tools=()
# --- cmake >= 3.25 from anywhere on PATH.
cmake_ok() { command -v cmake >/dev/null && version_ge "$(cmake --version | head -1 | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?')" 3.25; }
if ! cmake_ok; then
  if can_apt && apt_install cmake && cmake_ok; then :; else
    missing_tools+=("cmake >= 3.25 (found: $(command -v cmake >/dev/null && cmake --version | head -1 || echo none); Debian: cmake, or any CMake release on PATH)")
  fi
fi

# --- A C++20 compiler: CXX, else c++ / g++ / clang++ on PATH, checked by compiling C++20.
cxx20() {
  local c=$1
  command -v "$c" >/dev/null || return 1
  printf '#include <span>\n#include <concepts>\ntemplate <std::integral T> T f(std::span<const T> s) { return s.size(); }\nint main() { int a[2]{}; return f<int>(a) == 2 ? 0 : 1; }\n' |
    "$c" -std=c++20 -x c++ - -o /tmp/fp8scope-cxx20-check 2>/dev/null
}
find_cxx() {
  for c in ${CXX:-} c++ g++ clang++; do
    if cxx20 "$c"; then echo "$c"; return 0; fi
  done
  return 1
}
if ! cxx=$(find_cxx); then
  if can_apt && apt_install g++ && cxx=$(find_cxx); then :; else
    missing_tools+=("a C++20 compiler (g++ >= 11 or clang++ >= 14 on PATH, or CXX=...; Debian: g++)"); cxx=""
  fi
fi

# --- A build tool: Ninja (PATH or the PyTorch venv some GPU images carry), else make.
gen=()
if command -v ninja >/dev/null; then gen=(-G Ninja)
elif [ -x /opt/torch/.venv/bin/ninja ]; then gen=(-G Ninja -DCMAKE_MAKE_PROGRAM=/opt/torch/.venv/bin/ninja)
elif command -v make >/dev/null; then gen=(-G "Unix Makefiles")
elif can_apt && apt_install make; then gen=(-G "Unix Makefiles")
else missing_tools+=("a build tool: ninja or make (Debian: ninja-build or make)"); fi

if [ ${#missing_tools[@]} -gt 0 ]; then
  say "missing tools:"
  for t in "${missing_tools[@]}"; do echo "  - $t"; done
  exit 1
fi

# --- CUDA: nvcc on PATH or in /usr/local/cuda; the architecture of the GPU when one is seen.
args=(-DCMAKE_BUILD_TYPE=Release -DFP8SCOPE_CUDA="${FP8SCOPE_CUDA:-AUTO}" -DCMAKE_CXX_COMPILER="$(command -v "$cxx")")
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc); fi
arch=${CUDA_ARCH:-}
if [ -z "$arch" ] && command -v nvidia-smi >/dev/null; then
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .' || true)
  # Hopper's wgmma and FP8 instructions need the arch-specific target (90a).
  case "$cc" in 90) arch=90a ;; [0-9][0-9]*) arch=$cc ;; esac
fi
[ -n "$arch" ] && args+=(-DCMAKE_CUDA_ARCHITECTURES="$arch")
[ -n "${CMAKE_PREFIX_PATH:-}" ] && args+=(-DCMAKE_PREFIX_PATH="$CMAKE_PREFIX_PATH")
# shellcheck disable=SC2206  # word splitting of the extra arguments is intended
[ -n "${FP8SCOPE_CMAKE_ARGS:-}" ] && args+=(${FP8SCOPE_CMAKE_ARGS})

# --- Libraries: ask CMake. It names every missing one on a `fp8scope-missing:` line.
configure() { cmake -S . -B "$build" "${gen[@]}" "${args[@]}" >"$build.configure.log" 2>&1; }
# A build folder made by another generator cannot be reused: start it afresh.
if [ -f "$build/CMakeCache.txt" ] && ! grep -q "CMAKE_GENERATOR:INTERNAL=${gen[1]}" "$build/CMakeCache.txt"; then
  say "$build/ was configured with another generator; configuring it afresh"; rm -rf "$build"
fi
mkdir -p "$(dirname "$build")"
if ! configure; then
  missing=$(grep -oE 'fp8scope-missing: .*' "$build.configure.log" | head -1 | sed 's/fp8scope-missing: //' || true)
  if [ -z "$missing" ]; then cat "$build.configure.log"; say "configuration failed (log: $build.configure.log)"; exit 1; fi
  pkgs=()
  for m in $missing; do pkgs+=("${m#*=}"); done
  if can_apt && apt_install "${pkgs[@]}" && configure; then :; else
    say "these libraries were not found by CMake:"
    for m in $missing; do echo "  - ${m%%=*} (Debian/Ubuntu package: ${m#*=})"; done
    cat <<EOF
setup: install them as root (apt-get install ${pkgs[*]}), or put each under a prefix
       (PREFIX/include, PREFIX/lib or PREFIX/lib/cmake) and run
         CMAKE_PREFIX_PATH=PREFIX scripts/setup.sh
       The repository's .deps/ is searched as a prefix by itself: for CLI11 (header-only),
       copying its include/CLI folder to .deps/include/CLI is enough.
EOF
    exit 1
  fi
fi
grep -E "fp8scope: (CUDA|no CUDA)" "$build.configure.log" | sed 's/^-- /setup: /' || true

# --- Optional: matplotlib for the report's figures (the report says why when it has none).
if [ "$figures" = 1 ]; then
  have_mpl=0
  for py in python3 /usr/bin/python3; do command -v "$py" >/dev/null && "$py" -c 'import matplotlib' 2>/dev/null && have_mpl=1 && break; done
  if [ "$have_mpl" = 0 ]; then
    if can_apt && apt_install python3-matplotlib; then :; else say "no matplotlib: the report will have no figures (apt-get install python3-matplotlib)"; fi
  fi
fi

cmake --build "$build" -j"$(nproc)"
