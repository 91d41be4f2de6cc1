#!/usr/bin/env python3
"""Plots `jetlm bench --paper` CSVs: decode and prefill throughput and the speedup over Qwen3-1.7B
against context (log-log).  python3 bench/plot_paper.py bench/results/paper_h100.csv [-o out.png]"""
import argparse
import csv
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("-o", "--out", default=None)
    a = ap.parse_args()
    rows = defaultdict(list)
    for r in csv.DictReader(open(a.csv)):
        if float(r["decode_tok_s"]) > 0:
            rows[r["model"]].append(r)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for model, rs in sorted(rows.items()):
        rs.sort(key=lambda r: int(r["context"]))
        ctx = [int(r["context"]) // 1024 for r in rs]
        axes[0].plot(ctx, [float(r["decode_tok_s"]) for r in rs], "o-", label=model)
        axes[1].plot(ctx, [float(r["prefill_tok_s"]) for r in rs], "o-", label=model)
        if model != "qwen3-1.7b":
            axes[2].plot(ctx, [float(r["decode_speedup_vs_qwen3"]) for r in rs], "o-", label=model + " decode")
    for ax, title in zip(axes, ["decode tok/s (largest batch that fits)", "prefill tok/s", "decode speedup vs Qwen3-1.7B"]):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context (K tokens)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    device = next(iter(rows.values()))[0]["device"] if rows else ""
    fig.suptitle(f"jetlm bench --paper ({device})", fontsize=10)
    fig.tight_layout()
    out = a.out or a.csv.rsplit(".", 1)[0] + ".png"
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main()
