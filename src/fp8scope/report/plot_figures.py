# Draws fp8scope's report figures: each argument is a figure spec (JSON written by the
# report, every number it draws is in that file) and becomes an SVG beside it. Embedded into
# the fp8scope binary at build time (report/CMakeLists: plot_script.hpp), run with the first
# Python that has matplotlib. One kind per question the report answers:
#   grid        which GEMMs run: rows x columns of categorical cells (outcome), text in each
#   onset       where NaNs start: tensor x layer, colour = earliest onset step, text = step, runs
#   bars        how fast: groups x series, each bar with its spread, optional reference line
#   curves_gap  how close: curves (e.g. FP8 and its BF16 twin's loss) and their gaps below
#   line        plain curves; a series' gaps in x are not bridged
#   heatmap     a continuous value over rows x columns
import json
import math
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

# A fixed salt for the SVG's element ids and no date: the same report gives the same bytes, so
# regenerating a committed report changes only what its results changed.
plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "svg.fonttype": "none", "svg.hashsalt": "fp8scope"})


def title(ax, spec):
    ax.set_title("\n".join(textwrap.wrap(spec["title"], 95)), loc="left")


def finish(fig, path):
    fig.tight_layout()
    fig.savefig(path[:-5] + ".svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)


def grid(spec, path):
    rows, cols, cells = spec["rows"], spec["columns"], spec["cells"]
    cats = spec["categories"]  # [{"name", "colour"}] in legend order
    index = {c["name"]: i for i, c in enumerate(cats)}
    w = min(16, 2.2 + 0.95 * len(cols))
    h = min(40, 1.6 + 0.24 * len(rows))
    fig, ax = plt.subplots(figsize=(w, h))
    values = [[index.get(cells[r][c]["category"], math.nan) if cells[r][c] else math.nan for c in range(len(cols))] for r in range(len(rows))]
    ax.imshow(values, aspect="auto", interpolation="nearest", cmap=ListedColormap([c["colour"] for c in cats]), vmin=-0.5,
              vmax=len(cats) - 0.5)
    fs = 6.5 if len(rows) > 30 else 8
    for r in range(len(rows)):
        for c in range(len(cols)):
            cell = cells[r][c]
            if cell and cell.get("text"):
                ax.text(c, r, cell["text"], ha="center", va="center", fontsize=fs, color=cell.get("text_colour", "black"))
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows, fontsize=fs)
    ax.set_xlabel(spec.get("xlabel", ""))
    ax.set_ylabel(spec.get("ylabel", ""))
    used = {cells[r][c]["category"] for r in range(len(rows)) for c in range(len(cols)) if cells[r][c]}
    ax.legend(handles=[Patch(color=c["colour"], label=c["name"]) for c in cats if c["name"] in used], loc="upper left",
              bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    title(ax, spec)
    finish(fig, path)


def onset(spec, path):
    rows, cols, cells = spec["rows"], spec["columns"], spec["cells"]  # cells[r][c]: {"step", "runs"} or null
    fig, ax = plt.subplots(figsize=(min(16, 2.5 + 0.75 * len(cols)), min(30, 1.6 + 0.32 * len(rows))))
    steps = [[cells[r][c]["step"] if cells[r][c] else math.nan for c in range(len(cols))] for r in range(len(rows))]
    finite = [s for row in steps for s in row if not math.isnan(s)]
    im = ax.imshow(steps, aspect="auto", interpolation="nearest", cmap="viridis_r", vmin=0, vmax=max(finite + [1]))
    for r in range(len(rows)):
        for c in range(len(cols)):
            if cells[r][c]:
                ax.text(c, r, f"s{cells[r][c]['step']}\n{cells[r][c]['runs']} run" + ("s" if cells[r][c]["runs"] != 1 else ""),
                        ha="center", va="center", fontsize=7, color="white" if cells[r][c]["step"] >= 0.6 * max(finite + [1]) else "black")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(spec.get("xlabel", "layer"))
    ax.set_ylabel(spec.get("ylabel", "tensor (pass)"))
    cb = fig.colorbar(im, ax=ax, fraction=0.04)
    cb.set_label("earliest onset step")
    title(ax, spec)
    finish(fig, path)


def bars(spec, path):
    groups, series = spec["groups"], spec["series"]  # series: [{"label", "values", "low"?, "high"?}]
    n = len(series)
    width = 0.8 / max(n, 1)
    fig, ax = plt.subplots(figsize=(min(16, 3 + 0.55 * len(groups) * max(n, 1)), 4.8))
    top = max([v for s in series for v in s["values"] if v is not None] + [0])
    fmt = spec.get("value_format") or ("{:.0f}" if top >= 100 else "{:.1f}" if top >= 10 else "{:.2f}")
    crowded = len(groups) * n > 24
    for i, s in enumerate(series):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        vals = [math.nan if v is None else v for v in s["values"]]
        err = None
        if "low" in s and "high" in s:
            err = [[0 if v is None or lo is None else max(0, v - lo) for v, lo in zip(s["values"], s["low"])],
                   [0 if v is None or hi is None else max(0, hi - v) for v, hi in zip(s["values"], s["high"])]]
        b = ax.bar(xs, vals, width * 0.92, label=s["label"], yerr=err, capsize=2, error_kw={"elinewidth": 0.8})
        ax.bar_label(b, labels=["" if math.isnan(v) else fmt.format(v) for v in vals], fontsize=6 if crowded else 7, padding=2,
                     rotation=90 if crowded else 0)
    if "reference" in spec:
        ax.axhline(spec["reference"], color="grey", linewidth=0.8, linestyle="--")
    many = len(groups) > 6
    labels = groups if many else ["\n".join(textwrap.wrap(g, 30)) for g in groups]
    ax.set_xticks(range(len(groups)), labels, rotation=20 if many else 0, ha="right" if many else "center")
    ax.set_ylabel(spec.get("ylabel", ""))
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_ylim(0, top * 1.35 if top > 0 else 1)  # room for the legend above the bars
    ax.legend(fontsize=7, frameon=False, ncol=min(n, 3), loc="upper left")
    title(ax, spec)
    finish(fig, path)


def plot_broken(ax, x, y, **kw):
    # Breaks the line where x jumps by more than twice its usual step, so sparse series do
    # not draw long lines across the gaps.
    if len(x) > 2:
        steps = sorted(b - a for a, b in zip(x, x[1:]) if b > a)
        usual = steps[len(steps) // 2] if steps else 1
        xs, ys = [x[0]], [y[0]]
        for (a, b), v in zip(zip(x, x[1:]), y[1:]):
            if b - a > 2 * usual:
                xs.append(math.nan)
                ys.append(math.nan)
            xs.append(b)
            ys.append(v)
        x, y = xs, ys
    return ax.plot(x, y, **kw)


def line(spec, path):
    fig, ax = plt.subplots(figsize=(9, 5))
    for s in spec["series"]:
        few = len(s["x"]) < 40
        plot_broken(ax, s["x"], [math.nan if v is None else v for v in s["y"]], marker="." if few else None, linewidth=1,
                    label=s["label"], linestyle=s.get("style", "-"))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2, frameon=False)
    ax.set_xlabel(spec["xlabel"])
    ax.set_ylabel(spec["ylabel"])
    title(ax, spec)
    finish(fig, path)


def curves_gap(spec, path):
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for s in spec["series"]:
        plot_broken(top, s["x"], [math.nan if v is None else v for v in s["y"]], linewidth=1, label=s["label"],
                    linestyle=s.get("style", "-"))
    for s in spec["gaps"]:
        plot_broken(bottom, s["x"], [math.nan if v is None else v for v in s["y"]], linewidth=1, label=s["label"])
    bottom.axhline(0, color="grey", linewidth=0.8)
    top.set_ylabel(spec["ylabel"])
    bottom.set_ylabel(spec.get("gap_label", "gap"))
    bottom.set_xlabel(spec["xlabel"])
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles, ["\n".join(textwrap.wrap(l, 60)) for l in labels], fontsize=7, ncol=1 if len(labels) < 5 else 2,
                  frameon=False)
    title(top, spec)
    finish(fig, path)


def heatmap(spec, path):
    fig, ax = plt.subplots(figsize=(10, min(30, max(3, 0.24 * len(spec["rows"]) + 1.8))))
    values = [[math.nan if v is None else v for v in row] for row in spec["values"]]
    im = ax.imshow(values, aspect="auto", interpolation="nearest", cmap="magma")
    ax.set_yticks(range(len(spec["rows"])), spec["rows"], fontsize=7)
    ax.set_xticks(range(len(spec["columns"])), spec["columns"], fontsize=7, rotation=90)
    cb = fig.colorbar(im, ax=ax, fraction=0.04)
    cb.set_label(spec["zlabel"])
    cb.formatter.set_useOffset(False)
    cb.formatter.set_scientific(False)
    ax.set_xlabel(spec["xlabel"])
    ax.set_ylabel(spec["ylabel"])
    title(ax, spec)
    finish(fig, path)


KINDS = {"grid": grid, "onset": onset, "bars": bars, "curves_gap": curves_gap, "line": line, "heatmap": heatmap}

for p in sys.argv[1:]:
    with open(p) as f:
        spec = json.load(f)
    KINDS[spec.get("kind", "line")](spec, p)
