#!/usr/bin/env bash
# Runs every test case of every `gpu` test binary under compute-sanitizer's memcheck (with
# leak check), racecheck, synccheck and initcheck, each case in a run of its own (so one slow
# case under racecheck costs only itself), and writes a summary: per tool and binary, how many
# cases ran clean, had findings (the first ones quoted below the table), skipped themselves
# (GTEST_SKIP: nothing ran on the GPU, so not clean; listed below the table) or ran out of time.
# Usage: scripts/sanitize.sh BUILD_DIR OUT.txt
# Environment: SANITIZE_TOOLS (default "memcheck racecheck synccheck initcheck"),
# SANITIZE_TESTS (regex over binary names, default every test_*_gpu), SANITIZE_CASES (regex
# over case names), SANITIZE_TIMEOUT (seconds per run, default 300), SANITIZE_JOBS (runs at a
# time on the one GPU, default 8), SANITIZE_BUDGET (seconds for all runs; the cases not started
# by then are listed as not run, one it stops while running as cut off, and the summary is
# written all the same), SANITIZE_LAST (regex over case names run after all others; default:
# the GPT-2-size cases), SANITIZE_ARGS (more compute-sanitizer arguments for every run, e.g.
# "--check-bulk-copy yes"), SANITIZE_SKIP (regex over "tool binary-path case" lines: runs left
# out, e.g. those an earlier summary covers).
# test_cli_gpu is left out: it makes child processes fault the GPU on purpose.
set -uo pipefail
build=${1:?usage: sanitize.sh BUILD_DIR OUT.txt}
out=${2:?usage: sanitize.sh BUILD_DIR OUT.txt}
tools=${SANITIZE_TOOLS:-memcheck racecheck synccheck initcheck}
jobs=${SANITIZE_JOBS:-8}
limit=${SANITIZE_TIMEOUT:-300}
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
[ -x "$cs" ] || { echo "sanitize: compute-sanitizer not found (part of the CUDA toolkit)" >&2; exit 2; }
logs=$(mktemp -d)

mapfile -t bins < <(ls "$build"/tests/test_*_gpu 2>/dev/null | grep -vE '/test_cli_gpu$' | grep -E "${SANITIZE_TESTS:-.}")
[ ${#bins[@]} -gt 0 ] || { echo "sanitize: no gpu test binaries under $build/tests" >&2; exit 2; }

# The cases of a gtest binary, as Suite.Name (parameterised ones too).
cases_of() {
  "$1" --gtest_list_tests | awk '/^[^ ]/ {suite=$1; next} /^  / {print suite $1}' | grep -E "${SANITIZE_CASES:-.}"
}
run_one() {  # tool binary case -> $logs/<tool>/<binary>/<case>.{log,rc,s}
  local tool=$1 bin=$2 case=$3 dir extra=()
  dir="$logs/$tool/$(basename "$bin")"
  mkdir -p "$dir"
  [ "$tool" = memcheck ] && extra=(--leak-check full)
  # Our GEMM path marks cuBLASLt's outputs initialised (core/initialized_mark.hpp) through NVTX.
  [ "$tool" = initcheck ] && extra=(--nvtx yes)
  read -r -a more <<<"${SANITIZE_ARGS:-}"
  extra+=("${more[@]}")
  local t0=$SECONDS f="$dir/${case//\//_}"
  # timeout runs each in a process group of its own (its pid is the group's id, kept in .pid),
  # which the budget's end below stops whole.
  FP8SCOPE_UNDER_SANITIZER=1 timeout "$limit" "$cs" --tool "$tool" "${extra[@]}" --error-exitcode 99 --print-limit 20 "$bin" --gtest_filter="$case" >"$f.log" 2>&1 &
  echo $! >"$f.pid"
  wait $!
  echo $? >"$f.rc"
  echo $((SECONDS - t0)) >"$f.s"
}
export -f run_one
export cs limit logs
for b in "${bins[@]}"; do cases_of "$b" | sed "s|^|$b |"; done >"$logs/cases"
echo "sanitize: $(wc -l <"$logs/cases") test cases x $(echo $tools | wc -w) tools, $jobs at a time, ${limit}s each at most"
# Every tool on a case before the next case, and the cases SANITIZE_LAST names (the GPT-2-size
# ones, minutes each under racecheck and initcheck) after all others: a budget that runs out
# then leaves the slow cases unrun rather than a whole tool.
slow=${SANITIZE_LAST:-Gpt2Small|TenSteps|LmHeadWithVocab|Fp8DelayedVsCpu|ScalesOverFiveSteps}
while read -r bin case; do for tool in $tools; do echo "$tool $bin $case"; done; done <"$logs/cases" >"$logs/all_runs"
[ -n "${SANITIZE_SKIP:-}" ] && { grep -vE "$SANITIZE_SKIP" "$logs/all_runs" >"$logs/kept"; mv "$logs/kept" "$logs/all_runs"; }
{ grep -vE " [^ ]*($slow)[^ ]*\$" "$logs/all_runs"; grep -E " [^ ]*($slow)[^ ]*\$" "$logs/all_runs"; } >"$logs/runs"
timeout "${SANITIZE_BUDGET:-86400}" xargs -P "$jobs" -L 1 bash -c 'run_one "$0" "$1" "$2"' <"$logs/runs"
# Runs the budget stopped are still going in their own process groups: end them, so that no
# sanitizer keeps the GPU busy after the summary (or under the next command's timings).
for p in "$logs"/*/*/*.pid; do
  [ -e "$p" ] && [ ! -e "${p%.pid}.rc" ] && kill -TERM -- "-$(cat "$p")" 2>/dev/null
done

errors_of() { grep -oE "ERROR SUMMARY: [0-9]+ error" "$1.log" | grep -oE "[0-9]+" | tail -1; }
# A finished run's verdict (its path without extension): timeout, finding (an error summary, a
# leak or a failing exit), skipped (the case skipped itself: nothing of it ran under the tool)
# or clean.
verdict_of() {
  local rc errors
  rc=$(cat "$1.rc") errors=$(errors_of "$1")
  if [ "$rc" = 124 ]; then echo timeout
  elif [ "$rc" != 0 ] || [ "${errors:-0}" != 0 ] || grep -q "Leaked [0-9]* bytes" "$1.log"; then echo finding
  elif grep -q '^\[  SKIPPED \]' "$1.log"; then echo skipped
  else echo clean; fi
}

{
  echo "# compute-sanitizer over the gpu tests"
  echo "# $("$cs" --version | tail -1); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
  echo "# build: $build ($(sha=${FP8SCOPE_GIT_SHA:-$(git -C "$(dirname "$0")/.." rev-parse HEAD 2>/dev/null)}; echo "${sha:0:7}"))  tools: $tools  timeout: ${limit}s per run${SANITIZE_ARGS:+  arguments: $SANITIZE_ARGS}"
  echo
  printf '%-10s %-28s %6s %6s %8s %8s %8s %8s\n' tool binary cases clean findings skipped timeout seconds
  all=0 all_clean=0
  for tool in $tools; do
    for b in "${bins[@]}"; do
      dir="$logs/$tool/$(basename "$b")"
      n=0 clean=0 bad=0 skipped=0 slow=0 secs=0
      for rcf in "$dir"/*.rc; do
        [ -e "$rcf" ] || continue
        f=${rcf%.rc}
        n=$((n + 1)) secs=$((secs + $(cat "$f.s")))
        case $(verdict_of "$f") in
          timeout) slow=$((slow + 1)) ;;
          finding) bad=$((bad + 1)) ;;
          skipped) skipped=$((skipped + 1)) ;;
          clean) clean=$((clean + 1)) ;;
        esac
      done
      all=$((all + n)) all_clean=$((all_clean + clean))
      printf '%-10s %-28s %6s %6s %8s %8s %8s %8s\n' "$tool" "$(basename "$b")" "$n" "$clean" "$bad" "$skipped" "$slow" "$secs"
    done
  done
  echo
  echo "clean: $all_clean of $all runs ($(wc -l <"$logs/runs") planned)"
  # A run the budget cut off while it ran has a log but no exit status.
  while read -r tool bin case; do
    f="$logs/$tool/$(basename "$bin")/${case//\//_}"
    if [ -e "$f.log" ] && [ ! -e "$f.rc" ]; then
      echo "cut off by the budget while running: $tool $(basename "$bin") $case"
    elif [ ! -e "$f.rc" ]; then
      echo "not run (budget): $tool $(basename "$bin") $case"
    fi
  done <"$logs/runs"
  for rcf in "$logs"/*/*/*.rc; do
    f=${rcf%.rc}
    rel=${f#"$logs"/}
    case $(verdict_of "$f") in
      timeout) echo "timeout: $rel (over ${limit}s)" ;;
      skipped) echo "skipped by the test itself: $rel" ;;
      finding)
        echo
        echo "## $rel: exit $(cat "$rcf"), $(errors=$(errors_of "$f"); echo "${errors:-?}") errors"
        grep -E "^========= |FAILED|Failure" "$f.log" | head -24
        ;;
    esac
  done
} >"$out"  # written whole before it is shown, so a reader that stops early cannot cut it
rm -rf "$logs"
cat "$out"
