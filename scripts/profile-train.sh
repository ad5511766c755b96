#!/usr/bin/env bash
# On a GPU machine with Nsight Compute: where one training step of a probe_train point goes,
# kernel by kernel (kernel_table.py's per-step table, a step counted by its one AdamW launch).
# The point is CONFIG with each KEY=VALUE axis fixed (a zip group must be fixed whole), run for
# STEPS steps (default 6) in this process; Nsight Compute times the first LAUNCHES kernels
# (default 8000: the kernels of two or more whole steps at GPT-2 774M). Usage:
#   scripts/profile-train.sh BUILD_DIR CONFIG KEY=VALUE ...
#   e.g. scripts/profile-train.sh build configs/train_sizes.json d_model=1280 n_layer=36 n_head=20 precision=fp8
set -uo pipefail
build=${1:?usage: profile-train.sh BUILD_DIR CONFIG KEY=VALUE ...}
config=${2:?usage: profile-train.sh BUILD_DIR CONFIG KEY=VALUE ...}
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" - "$config" "$tmp/point.json" "${STEPS:-6}" "$@" <<'PY' || exit 2
import json, sys
cfg = json.load(open(sys.argv[1]))
fixed = {}
for arg in sys.argv[4:]:
    key, sep, value = arg.partition("=")
    if not sep:
        sys.exit(f"profile-train.sh: '{arg}' is not KEY=VALUE")
    try:
        fixed[key] = json.loads(value)
    except ValueError:
        fixed[key] = value
zips = []
for group in cfg.get("zip", []):
    hit = [k for k in group if k in fixed]
    if hit and len(hit) != len(group):
        sys.exit(f"profile-train.sh: fix every axis of the zip group {sorted(group)}, not only {hit}")
    if not hit:
        zips.append(group)
cfg["zip"] = zips
cfg.setdefault("axes", {}).update({k: [v] for k, v in fixed.items()})
cfg["axes"]["steps"] = [int(sys.argv[3])]
cfg["settings"] = dict(cfg.get("settings", {}), profile=False, timing_warmup=1)
cfg["name"] = "profile_point"
json.dump(cfg, open(sys.argv[2], "w"), indent=1)
PY
timeout 500 ncu --clock-control none --metrics gpu__time_duration.sum --csv --page raw --launch-count "${LAUNCHES:-8000}" \
  "$build/probes/probe_train" --config "$tmp/point.json" --out "$tmp/point" --no-isolate -q >"$tmp/k.csv" 2>"$tmp/err"
KERNEL_TABLE_ANCHOR=adamw "$python" "$root/scripts/kernel_table.py" ncu "$tmp/k.csv" || { tail -5 "$tmp/err"; grep -v '^"' "$tmp/k.csv" | tail -5; }
