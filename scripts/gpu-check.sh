#!/usr/bin/env bash
# On a GPU machine: build natively, run the gpu-labelled tests, then the given sweeps, and
# pack everything into one archive. Usage:
#   scripts/gpu-check.sh OUTDIR [CONFIG ...]
# Each CONFIG is a sweep file; its results go to OUTDIR/<sweep name>.json. A probe_gemm
# or probe_train result is followed by its PyTorch peer (when torch is importable;
# TRAIN_PEER_ARGS passes options to scripts/peers/torch_gpt2.py). BENCH=1 also runs the
# Google Benchmark executables (3 repetitions) into OUTDIR/bench_*.json.
# Environment: FP8SCOPE_GIT_SHA / FP8SCOPE_GIT_DIRTY name the revision when the tree has no
# .git; NO_PEER=1 skips the PyTorch peers; GPU_TESTS=0 skips the tests; BENCH="bench_kernels"
# runs only the named benchmarks (BENCH_FILTER: only the benchmarks matching that regex, against
# full names: bench_kernels' end in /manual_time, bench_step's in /min_time:3.000/real_time); FP8SCOPE_PREFIX adds a CMake prefix (e.g. $PWD/.deps for CLI11); CUDA_ARCH defaults to 90a;
# PEER_TIMEOUT (seconds) bounds each peer run; BUILD_DIR (default build-gpu) reuses a build, e.g. the `build` that scripts/test.sh made.
# TARGETS="a b" builds only those targets (a quick check of one kernel); GPU_TESTS_REGEX runs only the
# gpu tests whose names match it (TEST_TIMEOUT: seconds before one is killed and counted failed, default 300). RESUME=1 resumes an earlier run into the same OUTDIR: each probe
# skips the points already recorded and the training peer the records it already wrote, so the
# same command run again finishes a sweep (and its PyTorch peer) that one time limit cut short.
set -uo pipefail
out=${1:?usage: gpu-check.sh OUTDIR [CONFIG ...]}
shift
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-build-gpu}
cd "$root"
ninja=$(command -v ninja || echo /opt/torch/.venv/bin/ninja)
prefix=${FP8SCOPE_PREFIX:-$root/.deps}
python=${PYTHON:-$(command -v python3)}
[ -x /opt/torch/.venv/bin/python ] && python=${PYTHON:-/opt/torch/.venv/bin/python}

echo "== build ($(nproc) cores)"
cmake -S . -B "$build" -G Ninja -DCMAKE_MAKE_PROGRAM="$ninja" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" -DCMAKE_PREFIX_PATH="$prefix" -DFP8SCOPE_CUDA=ON >"$out/build.log" 2>&1 &&
  cmake --build "$build" -j"$(nproc)" ${TARGETS:+--target $TARGETS} >>"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }

if [ "${GPU_TESTS:-1}" != 0 ]; then
  echo "== gpu tests"
  ctest --test-dir "$build" -L gpu ${GPU_TESTS_REGEX:+-R "$GPU_TESTS_REGEX"} --timeout "${TEST_TIMEOUT:-300}" --output-on-failure 2>&1 | tee "$out/ctest_gpu.log" | grep -E "Failed|Passed|tests passed|Failure|Expected|Which is|rel_err|worst" | tail -40
fi
[ -x ./"$build"/probes/fp8scope ] && ./"$build"/probes/fp8scope env >"$out/env.json"

for cfg in "$@"; do
  name=$("$python" -c "import json,sys;print(json.load(open(sys.argv[1]))['name'])" "$cfg")
  probe=$("$python" -c "import json,sys;print(json.load(open(sys.argv[1]))['probe'])" "$cfg")
  echo "== $name (probe_$probe)"
  ./"$build"/probes/probe_"$probe" --config "$cfg" --out "$out/$name" -q ${RESUME:+--resume} 2>&1 | tail -12
  if [ -z "${NO_PEER:-}" ] && [ -f "$out/$name.json" ] && "$python" -c "import torch" 2>/dev/null; then
    case "$probe" in
      gemm) echo "== $name: PyTorch peer"
            timeout "${PEER_TIMEOUT:-0}" "$python" scripts/peers/torch_scaled_mm.py "$out/$name.json" --out "$out/${name}.torch.json" | tail -3 ;;
      train) echo "== $name: PyTorch peer"
             timeout "${PEER_TIMEOUT:-0}" "$python" scripts/peers/torch_gpt2.py "$out/$name.json" --out "$out/${name}.torch.json" \
               ${RESUME:+--resume} ${TRAIN_PEER_ARGS:-} | tail -8 ;;
    esac
  fi
done
if [ -n "${BENCH:-}" ]; then
  [ "$BENCH" = 1 ] && BENCH="bench_gemm bench_kernels bench_step"
  for b in $BENCH; do
    echo "== $b"
    ./"$build"/bench/$b --benchmark_repetitions=3 --benchmark_min_time=0.2 --benchmark_out_format=json \
      ${BENCH_FILTER:+--benchmark_filter="$BENCH_FILTER"} \
      --benchmark_out="$out/$b.json" 2>&1 | grep -E "_median|ERROR" | cut -c1-150
  done
fi
echo "== done"
