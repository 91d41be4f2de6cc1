"""Per-kernel summary of one decode step from an Nsight Compute CSV.

Profile (as in docs/performance.md):
  ncu --clock-control none --cache-control none --graph-profiling node \
      --metrics gpu__time_duration.sum --csv --print-units base \
      jetlm bench --device cuda --config jet-nemotron-2b --random-weights --depth 4096 -n 2 --batch 1 > ncu.csv
Then:
  python3 bench/ncu_summary.py ncu.csv [STEP_START_REGEX]
prints the kernels between the last two launches whose name matches STEP_START_REGEX (default
"embedding": each decode step starts with the token embedding), grouped by kernel name and grid,
largest total first.
"""
import collections
import csv
import re
import sys


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    with open(sys.argv[1]) as f:
        lines = [line for line in f if line.startswith('"')]  # ncu's own log lines are not CSV
    rows = []
    for r in csv.DictReader(lines):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        ns = float(r["Metric Value"].replace(",", ""))
        rows.append((int(r["ID"]), r["Kernel Name"], r["Grid Size"], ns))
    rows.sort()
    pattern = sys.argv[2] if len(sys.argv) > 2 else "embedding"
    starts = [i for i, r in enumerate(rows) if re.search(pattern, r[1])]
    if len(starts) < 2:
        print(f"fewer than two kernels match {pattern!r}: no complete step in {sys.argv[1]}")
        return 1
    step = rows[starts[-2]:starts[-1]]
    total = sum(r[3] for r in step)
    print(f"{len(step)} kernels, {total / 1e3:.1f} us summed")
    groups = collections.OrderedDict()
    for _, name, grid, ns in step:
        key = (re.sub(r"\(.*", "", name)[:80], grid)
        g = groups.setdefault(key, [0, 0.0])
        g[0] += 1
        g[1] += ns
    for (name, grid), (n, ns) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        print(f"{ns / 1e3:9.1f} us {100 * ns / total:5.1f}%  n={n:4d}  avg {ns / n / 1e3:7.2f} us  grid {grid:>14}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
