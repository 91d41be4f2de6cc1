"""Heatmap of a `jetlm postnas search` importance.csv: per task (row), the score of the sub-network
that keeps only that layer (column) full attention, min-max normalised per task.

    python3 plot_importance.py OUT/importance.csv OUT/importance.png
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    scores = {}
    with open(src) as f:
        for row in csv.DictReader(f):
            scores.setdefault(row["task"], {})[int(row["layer"])] = float(row["score"])
    tasks = list(scores)
    layers = sorted({layer for s in scores.values() for layer in s})
    grid = []
    for t in tasks:
        vals = [scores[t].get(layer, float("nan")) for layer in layers]
        lo, hi = min(vals), max(vals)
        grid.append([(v - lo) / (hi - lo) if hi > lo else 0.0 for v in vals])
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(layers), 1.2 + 0.6 * len(tasks)))
    im = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0, vmax=1)
    ax.set_xticks(range(len(layers)), [str(layer) for layer in layers])
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xlabel("layer kept as full attention (all others linear)")
    for i, t in enumerate(tasks):
        for j, layer in enumerate(layers):
            ax.text(j, i, f"{scores[t][layer]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if grid[i][j] < 0.6 else "black")
    fig.colorbar(im, ax=ax, label="score, normalised per task")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main()
