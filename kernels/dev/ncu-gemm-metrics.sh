#!/usr/bin/env bash
# Decode b1 GEMM diagnostics (GPU machine, after the build): DRAM bytes, DRAM throughput and active
# warps per GEMM launch, for skinny_gemm and for cuBLASLt (ZAMBA2_SKINNY_MAX_M=0), grouped by grid.
# Usage: bash kernels/dev/ncu-gemm-metrics.sh OUTDIR
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${1:-/tmp}"
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread,launch__occupancy_limit_registers
for mode in skinny cublas; do
  m=8; [ $mode = cublas ] && m=0
  ZAMBA2_SKINNY_MAX_M=$m ZAMBA2_NO_GRAPHS=1 ZAMBA2_BENCH_PREFILL=none ZAMBA2_BENCH_BATCHES=1 timeout 200 \
    ncu --clock-control none --cache-control none --metrics $metrics --csv --print-units base --print-kernel-base function \
    --launch-skip 6000 --launch-count 400 kernels/build/bench-engine 1.2b > "$out/ncu-gemm-$mode.csv" 2> "$out/ncu-gemm-$mode.err"
  python3 - "$out/ncu-gemm-$mode.csv" "$mode" <<'PY'
import csv, sys
from collections import defaultdict
rows = [l for l in open(sys.argv[1]) if l.startswith('"')]
agg = defaultdict(lambda: defaultdict(list))
for r in csv.DictReader(rows):
    name = r["Kernel Name"]
    if not any(s in name.lower() for s in ("gemm", "skinny", "gemv", "sm90", "cutlass", "splitk")):
        continue
    agg[(name[:40], r["Grid Size"], r["Block Size"])][r["Metric Name"]].append(float(r["Metric Value"].replace(",", "") or 0))
print(f"-- {sys.argv[2]}: kernel, grid, block, n, us, MB read, GB/s, dram %, warps active %, regs")
for key, m in sorted(agg.items(), key=lambda kv: -sum(kv[1]["gpu__time_duration.sum"])):
    avg = lambda k: sum(m[k]) / max(1, len(m[k]))
    t_us = avg("gpu__time_duration.sum") / 1e3
    mb = avg("dram__bytes_read.sum") / 1e6
    print(f"{key[0]:40s} {key[1]:>14s} {key[2]:>12s} {len(m['gpu__time_duration.sum']):3d} {t_us:7.1f} {mb:7.1f} "
          f"{mb / max(t_us, 1e-9) * 1e3:7.0f} {avg('dram__throughput.avg.pct_of_peak_sustained_elapsed'):5.1f} "
          f"{avg('sm__warps_active.avg.pct_of_peak_sustained_active'):5.1f} {avg('launch__registers_per_thread'):4.0f}")
PY
done
