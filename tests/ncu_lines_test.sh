#!/usr/bin/env bash
# scripts/ncu_lines.py on a small source page in Nsight Compute's CSV layout (two files, source
# rows with their SASS rows under them, which must not be counted twice): the totals, the order
# of the lines, the --per division, the stall reasons' shares, and one line and a non-zero exit
# for a file without source rows.
# Usage: ncu_lines_test.sh SOURCE_DIR
set -uo pipefail
src=${1:?usage: ncu_lines_test.sh SOURCE_DIR}
command -v python3 >/dev/null || { echo "skipped: no python3"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
header='"Line No","Source","Address","Source","Warp Stall Sampling (All Samples)","Warp Stall Sampling (Not-issued Samples)","# Samples","Instructions Executed","stall_wait","stall_wait (Not Issued)","stall_barrier"'
{
  echo '"File Path","/src/a.cuh"'
  echo '"Function Name","k"'
  echo "$header"
  echo '"10","x = y * r;","-","-","30","10","30","600","20","5","10"'
  echo '"","","0x10","      FMUL R1, R2, R3","30","10","30","600","20","5","10"'
  echo '"11","store(x);","-","-","10","4","10","200","10","2","0"'
  echo '"File Path","/src/b.cuh"'
  echo '"Function Name","k"'
  echo "$header"
  echo '"5","if (writes) {","-","-","60","30","60","1200","30","9","30"'
  echo '"","","0x20","      ISETP.NE.AND P0, PT, R4, RZ, PT","60","30","60","1200","30","9","30"'
} >"$tmp/page.csv"
python3 "$src/scripts/ncu_lines.py" "$tmp/page.csv" --per 100 --top 4 >"$tmp/out.txt" 2>&1 || { cat "$tmp/out.txt"; exit 1; }
status=0
expect() { grep -qE "$1" "$tmp/out.txt" || { echo "output lacks: $1"; status=1; }; }
expect '^warp instructions 2000 \(20\.0 per unit\), stall samples 100$'
# The lines by instructions: b.cuh:5 (60 %), a.cuh:10 (30 %), a.cuh:11 (10 %).
order=$(grep -E '^ +[0-9.]+ ' "$tmp/out.txt" | head -3 | grep -oE '[ab]\.cuh:[0-9]+' | tr '\n' ' ')
[ "$order" = "b.cuh:5 a.cuh:10 a.cuh:11 " ] || { echo "lines out of order: $order"; status=1; }
expect '^ +12\.0  60\.0%  60\.0%  b\.cuh:5 if \(writes\) \{'
expect '^ +2\.0  10\.0%  10\.0%  a\.cuh:11 store\(x\);'
expect '^wait +60\.0%$'
expect '^barrier +40\.0%$'
{
  echo '"File Path","/src/a.cuh"'
  echo "$header"
} >"$tmp/empty.csv"
if python3 "$src/scripts/ncu_lines.py" "$tmp/empty.csv" >"$tmp/err.txt" 2>&1; then
  echo "a page without source rows was accepted"
  status=1
elif [ "$(wc -l <"$tmp/err.txt")" != 1 ] || ! grep -q "no source-line rows" "$tmp/err.txt"; then
  echo "a page without source rows did not get one clear line:"
  cat "$tmp/err.txt"
  status=1
fi
[ $status = 0 ] || cat "$tmp/out.txt"
exit $status
