"""Plots a `jetlm postnas pretrain` loss.csv to a PNG: train and held-out loss with the learning rate,
and, when the run scored synthetic tasks (columns <task>@<len>_acc), their accuracy in a second panel.

    python3 plot_loss.py OUT/loss.csv OUT/loss.png
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    steps, train, lr, eval_steps, evals = [], [], [], [], []
    acc = {}
    with open(src) as f:
        reader = csv.DictReader(f)
        acc_cols = [c for c in reader.fieldnames or [] if c.endswith("_acc")]
        for row in reader:
            steps.append(int(row["step"]))
            train.append(float(row["train_loss"]))
            lr.append(float(row["lr"]))
            if row["eval_loss"]:
                eval_steps.append(int(row["step"]))
                evals.append(float(row["eval_loss"]))
                for c in acc_cols:
                    if row.get(c):
                        acc.setdefault(c[: -len("_acc")], []).append((int(row["step"]), float(row[c])))
    panels = 2 if acc else 1
    fig, axes = plt.subplots(1, panels, figsize=(8 * panels, 4.5), squeeze=False)
    ax = axes[0][0]
    ax.plot(steps, train, label="train loss (mean since last row)")
    if evals:
        ax.plot(eval_steps, evals, "o-", label="held-out loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    lr_ax = ax.twinx()
    lr_ax.plot(steps, lr, color="gray", alpha=0.5, linestyle="--", label="learning rate")
    lr_ax.set_ylabel("learning rate")
    lines = ax.get_legend_handles_labels()
    lr_lines = lr_ax.get_legend_handles_labels()
    ax.legend(lines[0] + lr_lines[0], lines[1] + lr_lines[1], loc="upper right")
    if acc:
        ax2 = axes[0][1]
        for label, points in acc.items():
            ax2.plot([p[0] for p in points], [p[1] for p in points], "o-", label=label)
        ax2.set_xlabel("step")
        ax2.set_ylabel("task accuracy (greedy exact match / choice)")
        ax2.set_ylim(-0.02, 1.02)
        ax2.grid(alpha=0.3)
        ax2.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(dst, dpi=100)


if __name__ == "__main__":
    main()
