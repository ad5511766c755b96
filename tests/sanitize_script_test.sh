#!/usr/bin/env bash
# scripts/sanitize.sh end to end without a GPU: a stand-in compute-sanitizer that runs the
# program, and a stand-in gpu test binary with a clean case, a case with a finding, a case that
# skips itself and a slow case the budget stops. The summary must count one clean run, one
# finding and one skipped run (not clean: nothing ran), name the finding's and the skipped
# case and list the slow case as cut off by the budget (not as not run, nor clean),
# and the slow run must not outlive the script (it would hold the GPU under the next command).
# Usage: sanitize_script_test.sh SOURCE_DIR
set -uo pipefail
src=${1:?usage: sanitize_script_test.sh SOURCE_DIR}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/build/tests"
cat >"$tmp/bin/compute-sanitizer" <<'SAN'
#!/usr/bin/env bash
[ "${1:-}" = --version ] && { echo "stand-in compute-sanitizer"; exit 0; }
while [ $# -gt 0 ] && [[ "$1" != /* ]]; do shift; done  # tool options up to the program's path
"$@"
SAN
cat >"$tmp/build/tests/test_standin_gpu" <<'BIN'
#!/usr/bin/env bash
if [ "${1:-}" = --gtest_list_tests ]; then printf 'Suite.\n  Clean\n  Finding\n  Skipped\n  Slow\n'; exit 0; fi
case "$*" in
  *Finding*) echo "========= Invalid __global__ read of size 4"; echo "========= ERROR SUMMARY: 1 error"; exit 99 ;;
  *Skipped*) echo "[  SKIPPED ] Suite.Skipped (0 ms)" ;;
  *Slow*) sleep 30 ;;
esac
echo "========= ERROR SUMMARY: 0 errors"
BIN
chmod +x "$tmp/bin/compute-sanitizer" "$tmp/build/tests/test_standin_gpu"
PATH="$tmp/bin:$PATH" SANITIZE_TOOLS=memcheck SANITIZE_LAST=Slow SANITIZE_BUDGET=5 SANITIZE_TIMEOUT=60 \
  "$src/scripts/sanitize.sh" "$tmp/build" "$tmp/summary.txt" >"$tmp/stdout.txt" 2>&1
status=0
expect() {
  grep -qE "$1" "$tmp/summary.txt" || { echo "summary lacks: $1"; status=1; }
}
expect '^memcheck +test_standin_gpu +3 +1 +1 +1 +0 '
expect '^clean: 1 of 3 runs \(4 planned\)'
expect 'skipped by the test itself: memcheck/test_standin_gpu/Suite\.Skipped'
expect 'cut off by the budget while running: memcheck test_standin_gpu Suite\.Slow'
expect 'Suite\.Finding'
sleep 1
if pgrep -f "$tmp/build/tests/test_standin_gpu" >/dev/null; then
  echo "the run the budget stopped is still running"
  pkill -f "$tmp/build/tests/test_standin_gpu"
  status=1
fi
if grep -q 'not run (budget)' "$tmp/summary.txt"; then
  echo "the slow case was listed as not run"
  status=1
fi
[ $status = 0 ] || cat "$tmp/summary.txt"
exit $status
