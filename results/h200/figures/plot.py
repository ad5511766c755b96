
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
for path in sys.argv[1:]:
    spec = json.load(open(path))
    fig, ax = plt.subplots(figsize=(9, 5))
    for s in spec["series"]:
        ax.plot(s["x"], s["y"], marker=".", linewidth=1, label=s["label"])
    ax.set_title(spec["title"]); ax.set_xlabel(spec["xlabel"]); ax.set_ylabel(spec["ylabel"])
    ax.grid(True, alpha=0.3); ax.legend(fontsize=8, ncol=3)
    fig.tight_layout(); fig.savefig(path[:-5] + ".svg"); plt.close(fig)
