
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
for path in sys.argv[1:]:
    spec = json.load(open(path))
    if spec["kind"] == "heatmap":
        fig, ax = plt.subplots(figsize=(10, max(3, 0.22 * len(spec["rows"]) + 1.5)))
        values = [[float("nan") if v is None else v for v in row] for row in spec["values"]]
        im = ax.imshow(values, aspect="auto", interpolation="nearest", cmap="magma")
        ax.set_yticks(range(len(spec["rows"])), spec["rows"], fontsize=7)
        ax.set_xticks(range(len(spec["columns"])), spec["columns"], fontsize=7, rotation=90)
        fig.colorbar(im, ax=ax, label=spec["zlabel"])
    else:
        fig, ax = plt.subplots(figsize=(9, 5))
        for s in spec["series"]:
            ax.plot(s["x"], s["y"], marker=".", linewidth=1, label=s["label"], linestyle=s.get("style", "-"))
        ax.grid(True, alpha=0.3); ax.legend(fontsize=7, ncol=2)
    ax.set_title(spec["title"]); ax.set_xlabel(spec["xlabel"]); ax.set_ylabel(spec["ylabel"])
    fig.tight_layout(); fig.savefig(path[:-5] + ".svg"); plt.close(fig)
