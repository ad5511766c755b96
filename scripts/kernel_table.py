#!/usr/bin/env python3
"""Per-step GPU time by kernel from an Nsight Systems kernel summary or an Nsight Compute raw
CSV (scripts/profile-step.sh), largest first, with the step's total. A step is counted by the
cross-entropy kernel (one launch per step; KERNEL_TABLE_ANCHOR names another kernel that runs
once a step, e.g. adamw where the LM head runs in chunks, one loss launch each); from Nsight
Compute's launch-ordered rows only the whole steps between the first and the last such launch
are kept."""
import collections
import csv
import os
import re
import sys

ANCHOR = os.environ.get("KERNEL_TABLE_ANCHOR", "cross_entropy")


def short(name):
    name = re.sub(r"\(.*", "", name)  # drop the argument list
    name = re.sub(r"^void ", "", name)
    return name[-90:]


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader([l for l in fh if l.startswith('"')]))  # the CSV, not the program's own output


def nsys_rows(path):
    for r in read_csv(path):
        yield short(r["Name"]), float(r["Total Time (ns)"]) / 1e3, int(r["Instances"])


def ncu_rows(path):
    rows, scale = [], 1e-3
    for r in read_csv(path):
        v = r.get("gpu__time_duration.sum", "").replace(",", "")
        try:
            rows.append((short(r["Kernel Name"]), float(v) * scale, 1))
        except ValueError:  # the units row under the header
            scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(v, 1e-3)
    marks = [i for i, r in enumerate(rows) if ANCHOR in r[0]]
    return rows[marks[0] + 1 : marks[-1] + 1] if len(marks) > 1 else []


def main():
    kind, paths = sys.argv[1], sys.argv[2:]
    total, count = collections.Counter(), collections.Counter()
    for p in paths:
        for name, us, n in (nsys_rows(p) if kind == "nsys" else ncu_rows(p)):
            total[name] += us
            count[name] += n
    steps = sum(c for k, c in count.items() if ANCHOR in k)
    if not steps:
        print("no whole step among the profiled kernels", file=sys.stderr)
        return 1
    print(f"steps {steps}, GPU time per step {sum(total.values()) / steps / 1e3:.2f} ms")
    for name, us in total.most_common(50):
        print(f"{us / steps / 1e3:8.3f} ms {count[name] / steps:6.1f}x  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
