"""Where a prefill's GPU time goes, by kernel category, from an Nsight Compute CSV.

Profile (as in docs/performance.md):
  ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
      --print-units base jetlm bench --device cuda --config jet-nemotron-2b --random-weights \
      -p 4096 -n 1 --chunk 2048 > ncu.csv
Then:
  python3 bench/ncu_prefill_summary.py ncu.csv [FIRST_CHUNK [CHUNKS]]
Each forward pass starts with the token embedding; `bench` runs a warm-up prefill of one chunk first
(chunk 0), so the 4096-token prompt above is chunks 1 and 2 (the defaults). Prints a markdown
table of summed kernel time per category (kernels serialized, as ncu runs them).
"""
import collections
import csv
import sys


def category(name: str) -> str:
    if name.startswith("nvjet") or "cutlass" in name or "splitKreduce" in name:
        return "GEMM (cuBLASLt)"
    for key, label in (("gdn_prep", "delta rule: prep"), ("gdn_state", "delta rule: state pass"),
                       ("gdn_output", "delta rule: output"), ("attention", "attention"),
                       ("swiglu", "SwiGLU"), ("dconv", "dynamic conv"),
                       ("to_half", "bf16 rounding of GEMM inputs"), ("rmsnorm", "norms (rms, gated rms, l2)"),
                       ("l2norm", "norms (rms, gated rms, l2)"), ("gemv", "GEMV (LM head, last token)")):
        if key in name:
            return label
    return "other elementwise (silu, rope, gates, kv append, embedding)"


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    first = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    with open(sys.argv[1]) as f:
        lines = [line for line in f if line.startswith('"')]  # ncu's own log lines are not CSV
    rows = sorted((int(r["ID"]), r["Kernel Name"], float(r["Metric Value"].replace(",", "")))
                  for r in csv.DictReader(lines) if r.get("Metric Name") == "gpu__time_duration.sum")
    starts = [i for i, r in enumerate(rows) if "embedding_kernel" in r[1]] + [len(rows)]
    if len(starts) < first + count + 1:
        print(f"only {len(starts) - 1} forward passes in {sys.argv[1]}")
        return 1
    totals = collections.defaultdict(float)
    for _, name, ns in rows[starts[first]:starts[first + count]]:
        totals[category(name)] += ns
    total = sum(totals.values())
    print(f"{starts[first + count] - starts[first]} kernels, {total / 1e3:,.0f} us summed")
    print("| category | us | share |\n|---|---|---|")
    for name, ns in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {ns / 1e3:,.0f} | {100 * ns / total:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
