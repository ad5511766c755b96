#!/usr/bin/env python3
"""One point of a probe_train sweep as a sweep file of its own (scripts/profile-train.sh):
CONFIG with each KEY=VALUE axis fixed (VALUE read as JSON where it parses, else as a string; a
zip group must be fixed whole, and is then dropped), STEPS steps, no profiling phase, one warm-up
step. Usage: train_point.py CONFIG OUT STEPS KEY=VALUE ..."""
import json
import sys


def main(argv):
    if len(argv) < 4:
        print("usage: train_point.py CONFIG OUT STEPS KEY=VALUE ...", file=sys.stderr)
        return 2
    config, out, steps, pairs = argv[1], argv[2], argv[3], argv[4:]
    try:
        cfg = json.load(open(config))
    except (OSError, ValueError) as e:
        print(f"train_point.py: cannot read {config}: {e}", file=sys.stderr)
        return 2
    if not steps.isdigit() or int(steps) < 1:
        print(f"train_point.py: STEPS must be a positive integer, not '{steps}'", file=sys.stderr)
        return 2
    fixed = {}
    for arg in pairs:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            print(f"train_point.py: '{arg}' is not KEY=VALUE", file=sys.stderr)
            return 2
        try:
            fixed[key] = json.loads(value)
        except ValueError:
            fixed[key] = value
    zips = []
    for group in cfg.get("zip", []):
        hit = sorted(k for k in group if k in fixed)
        if hit and len(hit) != len(group):
            print(f"train_point.py: fix every axis of the zip group {sorted(group)}, not only {hit}", file=sys.stderr)
            return 2
        if not hit:
            zips.append(group)
    cfg["zip"] = zips
    cfg.setdefault("axes", {}).update({k: [v] for k, v in fixed.items()})
    cfg["axes"]["steps"] = [int(steps)]
    cfg["settings"] = dict(cfg.get("settings", {}), profile=False, timing_warmup=1)
    cfg["name"] = "profile_point"
    json.dump(cfg, open(out, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
