#!/usr/bin/env python3
"""Per-step GPU time by kernel from an Nsight Systems kernel summary or Nsight Compute raw CSV
(scripts/profile-step.sh): each kernel name's total divided by the number of steps (AdamW
launches), largest first, with the step's total."""
import collections
import csv
import re
import sys


def short(name):
    name = re.sub(r"\(.*", "", name)  # drop the argument list
    name = re.sub(r"^void ", "", name)
    return name[-90:]


def rows(kind, path):
    with open(path, newline="") as fh:
        lines = [l for l in fh if l.strip() and not l.startswith("==")]
    reader = csv.DictReader(lines)
    scale = 1e-3
    for r in reader:
        if kind == "nsys":
            yield r["Name"], float(r["Total Time (ns)"]) / 1e3, int(r["Instances"])
        else:  # Nsight Compute: the first row after the header holds the units
            v = r.get("gpu__time_duration.sum", "").replace(",", "")
            try:
                t = float(v)
            except ValueError:
                scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(v, 1e-3)
                continue
            yield r["Kernel Name"], t * scale, 1


def main():
    kind, paths = sys.argv[1], sys.argv[2:]
    total = collections.Counter()
    count = collections.Counter()
    for p in paths:
        for name, us, n in rows(kind, p):
            total[short(name)] += us
            count[short(name)] += n
    steps = max([c for k, c in count.items() if "adamw" in k.lower()] or [1])
    grand = sum(total.values()) / steps
    print(f"steps {steps}, GPU time per step {grand / 1e3:.2f} ms")
    for name, us in total.most_common(45):
        print(f"{us / steps / 1e3:8.3f} ms {count[name] / steps:6.1f}x  {name}")


if __name__ == "__main__":
    main()
