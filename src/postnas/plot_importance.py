"""Heatmaps of a `jetlm postnas search` importance.csv.

    python3 plot_importance.py OUT/importance.csv OUT/importance

writes OUT/importance.png (one row per task: the score of the sub-network that keeps only that layer
full attention, min-max normalised per task) and OUT/importance_<task>.png per task (that row and,
when the CSV has it, the teacher's attention-attribution score of each layer, normalised the same way).
"""
import csv
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def normalise(vals):
    lo, hi = min(vals), max(vals)
    return [(v - lo) / (hi - lo) if hi > lo else 0.0 for v in vals]


def heatmap(rows, labels, layers, dst, title=None):
    """rows: list of per-layer value lists; one heatmap row each, normalised per row."""
    grid = [normalise(r) for r in rows]
    fig, ax = plt.subplots(figsize=(2.0 + 0.8 * len(layers), 1.3 + 0.6 * len(rows)))
    im = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0, vmax=1)
    ax.set_xticks(range(len(layers)), [str(layer) for layer in layers])
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("layer")
    if title:
        ax.set_title(title, fontsize=9)
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            text = f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.2g}"
            ax.text(j, i, text, ha="center", va="center", fontsize=6.5,
                    color="white" if grid[i][j] < 0.6 else "black")
    fig.colorbar(im, ax=ax, label="normalised per row")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    plt.close(fig)


def main() -> None:
    src, prefix = sys.argv[1], sys.argv[2]
    if prefix.endswith(".png"):
        prefix = prefix[:-4]
    scores, attribution = {}, {}
    with open(src) as f:
        for row in csv.DictReader(f):
            task, layer = row["task"], int(row["layer"])
            scores.setdefault(task, {})[layer] = float(row["score"])
            if row.get("attribution"):
                attribution.setdefault(task, {})[layer] = float(row["attribution"])
    tasks = list(scores)
    layers = sorted({layer for s in scores.values() for layer in s})
    heatmap([[scores[t][layer] for layer in layers] for t in tasks], tasks, layers, prefix + ".png",
            "score with only this layer full attention (all others linear)")
    for t in tasks:
        rows = [[scores[t][layer] for layer in layers]]
        labels = ["super-network:\nonly this layer full"]
        if t in attribution:
            rows.append([attribution[t][layer] for layer in layers])
            labels.append("teacher attention\nattribution |A*dL/dA|")
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", t)
        heatmap(rows, labels, layers, f"{prefix}_{safe}.png", t)


if __name__ == "__main__":
    main()
