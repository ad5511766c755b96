#!/usr/bin/env bash
# Runs one sweep over every GPU of this machine: one probe process per GPU on its own shard
# (--shard I/N --device I), then merges the shards into PREFIX.json.
# Usage: scripts/sweep-gpus.sh CONFIG PREFIX [NGPUS]   (NGPUS: default all, from nvidia-smi)
set -euo pipefail
cfg=${1:?usage: sweep-gpus.sh CONFIG PREFIX [NGPUS]}
prefix=${2:?usage: sweep-gpus.sh CONFIG PREFIX [NGPUS]}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${FP8SCOPE_BIN:-$root/build/probes}
n=${3:-$(nvidia-smi -L | wc -l)}
probe=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['probe'])" "$cfg")
mkdir -p "$(dirname "$prefix")"
pids=()
for ((i = 0; i < n; i++)); do
  "$bin/probe_$probe" --config "$cfg" --shard "$i/$n" --device "$i" --out "$prefix.shard$i" -q >"$prefix.shard$i.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "shard $i failed (see $prefix.shard$i.log)" >&2; status=1; }
done
shards=()
for ((i = 0; i < n; i++)); do shards+=("$prefix.shard$i.json"); done
"$bin/fp8scope" merge "${shards[@]}" -o "$prefix.json"
exit $status
