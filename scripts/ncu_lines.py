#!/usr/bin/env python3
"""Where a kernel's instructions and stalls go, per source line: reads the CSV that
`ncu --import REPORT --page source --csv --print-source cuda,sass` writes and prints the lines
that execute the most warp instructions (with their share and their share of the stall samples),
then the lines with the most stall samples, then the stall reasons over the whole kernel.
Usage: ncu_lines.py SOURCE_CSV [--top N] [--per K]
--per K divides the counts by K (e.g. tiles x warps, for instructions per warp per tile)."""
import argparse
import csv
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--per", type=float, default=1.0)
    a = ap.parse_args()
    rows, stalls, f, header = [], {}, "?", None
    try:
        reader = csv.reader(open(a.csv, newline=""))
        for r in reader:
            if len(r) == 2 and r[0] == "File Path":
                f = r[1].rsplit("/", 1)[-1]
                continue
            if r and r[0] == "Line No":
                header = r
                continue
            if header is None or len(r) != len(header) or r[2] != "-":
                continue  # SASS rows (their address set) repeat what their source line sums
            try:
                ins, samples = int(r[7]), int(r[4])
            except ValueError:
                continue
            rows.append((ins, samples, f, r[0], r[1].strip()))
            for i, h in enumerate(header):
                if h.startswith("stall_") and "Not Issued" not in h and r[i].isdigit():
                    stalls[h] = stalls.get(h, 0) + int(r[i])
    except OSError as e:
        sys.exit(f"ncu_lines: cannot read {a.csv}: {e.strerror}")
    if not rows:
        sys.exit(f"ncu_lines: {a.csv} has no source-line rows (was it written with --print-source cuda,sass?)")
    ti, ts = sum(x[0] for x in rows) or 1, sum(x[1] for x in rows) or 1
    print(f"warp instructions {ti} ({ti / a.per:.1f} per unit), stall samples {ts}")
    print(f"{'instr/unit':>11} {'instr':>6} {'stalls':>6}  line")
    for ins, s, f, line, src in sorted(rows, reverse=True)[: a.top]:
        print(f"{ins / a.per:11.1f} {100 * ins / ti:5.1f}% {100 * s / ts:5.1f}%  {f}:{line} {src[:100]}")
    print("-- by stall samples")
    for ins, s, f, line, src in sorted(rows, key=lambda x: -x[1])[: a.top // 2]:
        print(f"{ins / a.per:11.1f} {100 * ins / ti:5.1f}% {100 * s / ts:5.1f}%  {f}:{line} {src[:100]}")
    print("-- stall reasons (all samples)")
    st = sum(stalls.values()) or 1
    for h, v in sorted(stalls.items(), key=lambda x: -x[1])[:10]:
        print(f"{h[6:]:22} {100 * v / st:5.1f}%")


if __name__ == "__main__":
    main()
