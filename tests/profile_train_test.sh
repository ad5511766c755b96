#!/usr/bin/env bash
# The host side of scripts/profile-train.sh: train_point.py makes one point of a sweep a sweep
# of its own (probe_train --list then lists exactly that point, with the steps asked for), and
# refuses a zip group fixed in part or an argument that is not KEY=VALUE with one line and exit
# code 2; kernel_table.py counts steps by KERNEL_TABLE_ANCHOR and keeps only the whole steps
# between the first and the last anchor of a launch-ordered Nsight Compute page.
# Usage: profile_train_test.sh SOURCE_DIR PROBE_TRAIN
set -uo pipefail
src=${1:?usage: profile_train_test.sh SOURCE_DIR PROBE_TRAIN}
probe=${2:?usage: profile_train_test.sh SOURCE_DIR PROBE_TRAIN}
command -v python3 >/dev/null || { echo "skipped: no python3"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
fail() { echo "$1"; status=1; }

python3 "$src/scripts/train_point.py" "$src/configs/train_sizes.json" "$tmp/p.json" 4 d_model=1280 n_layer=36 n_head=20 precision=fp8 ||
  fail "train_point.py refused a whole zip group"
"$probe" --config "$tmp/p.json" --list >"$tmp/list.txt" 2>&1 || { cat "$tmp/list.txt"; fail "probe_train --list refused the point"; }
points=$(grep -c "backend=gpu" "$tmp/list.txt")
[ "$points" = 1 ] || fail "expected one point, listed $points"
grep -q "d_model=1280,n_layer=36,n_head=20" "$tmp/list.txt" || fail "the point is not d_model=1280 n_layer=36 n_head=20"
grep -q "steps=4," "$tmp/list.txt" || fail "the point does not train 4 steps"
grep -q "precision=fp8" "$tmp/list.txt" || fail "the point is not FP8"

python3 "$src/scripts/train_point.py" "$src/configs/train_sizes.json" "$tmp/q.json" 4 d_model=1280 >"$tmp/err.txt" 2>&1
rc=$?
[ $rc = 2 ] || fail "a zip group fixed in part: exit $rc, not 2"
[ "$(wc -l <"$tmp/err.txt")" = 1 ] && grep -q "fix every axis of the zip group" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "no one-line refusal of the partial zip group"; }
python3 "$src/scripts/train_point.py" "$src/configs/train_sizes.json" "$tmp/q.json" 4 d_model >"$tmp/err.txt" 2>&1
rc=$?
[ $rc = 2 ] && grep -q "'d_model' is not KEY=VALUE" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "an argument without '=': exit $rc"; }

{  # launch order: a kernel before the first anchor and one after the last are not whole steps
  echo '"ID","Kernel Name","gpu__time_duration.sum"'
  echo '"","","usecond"'
  echo '"0","void init_kernel(int)","9000"'
  echo '"1","void gemm_a()","4000"'
  echo '"2","void gpu_model::adamw_kernel(float*)","2000"'
  echo '"3","void gemm_a()","6000"'
  echo '"4","void layer_b()","1000"'
  echo '"5","void gpu_model::adamw_kernel(float*)","2000"'
  echo '"6","void gemm_a()","5000"'
  echo '"7","void gpu_model::adamw_kernel(float*)","2000"'
  echo '"8","void tail_kernel()","7000"'
} >"$tmp/k.csv"
KERNEL_TABLE_ANCHOR=adamw python3 "$src/scripts/kernel_table.py" ncu "$tmp/k.csv" >"$tmp/table.txt" 2>&1 || { cat "$tmp/table.txt"; fail "kernel_table.py failed"; }
expect() { grep -qE "$1" "$tmp/table.txt" || { echo "kernel table lacks: $1"; status=1; }; }
expect '^steps 2, GPU time per step 8\.00 ms$'
expect '^ +5\.500 ms +1\.0x  gemm_a$'
expect '^ +2\.000 ms +1\.0x  gpu_model::adamw_kernel$'
expect '^ +0\.500 ms +0\.5x  layer_b$'
grep -qE "init_kernel|tail_kernel" "$tmp/table.txt" && fail "kernels outside the whole steps were counted"
[ $status = 0 ] || cat "$tmp/table.txt"
exit $status
