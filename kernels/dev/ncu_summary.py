"""Per-kernel GPU time from an ncu CSV (--metrics gpu__time_duration.sum --csv --print-kernel-base function).

Usage: python3 kernels/dev/ncu_summary.py ncu.csv [step_marker_kernel]
Prints, per kernel name: launches, total us, us per step; steps = launches of the marker kernel
(default: the logits argmax kernel, one per step), so the table reads as time per decode step.
"""
import csv
import sys
from collections import defaultdict

UNIT_US = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3, "second": 1e6, "s": 1e6}


def main() -> None:
    path = sys.argv[1]
    marker = sys.argv[2] if len(sys.argv) > 2 else "logits_argmax_lse_kernel"
    with open(path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]  # drop ncu's own log lines
    total = defaultdict(float)
    count = defaultdict(int)
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = row["Kernel Name"]
        value = float(row["Metric Value"].replace(",", ""))
        total[name] += value * UNIT_US.get(row["Metric Unit"], 1.0)
        count[name] += 1
    steps = max(1, sum(n for k, n in count.items() if marker in k))
    grand = sum(total.values())
    print(f"ncu: {sum(count.values())} launches, {steps} steps (marker {marker}), {grand / steps:.1f} us/step of kernel time")
    print(f"{'kernel':60s} {'launch/step':>11s} {'us/step':>9s} {'share':>6s}")
    for name, us in sorted(total.items(), key=lambda kv: -kv[1]):
        print(f"{name[:60]:60s} {count[name] / steps:11.1f} {us / steps:9.1f} {100 * us / grand:5.1f}%")


if __name__ == "__main__":
    main()
