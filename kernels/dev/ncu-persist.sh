#!/usr/bin/env bash
# Where the persistent decode's warps stall, per instruction (kernels/notes/runs-91-.md, run 99): builds test-kernels
# with the persistent kernel compiled -lineinfo, profiles one launch of its microbench with ncu's source counters,
# and prints the SASS instructions with the most warp-state samples and their top stall reasons.
# Usage (repo root, on the GPU machine, after `source .devcuda/setup.sh`):
#   bash kernels/dev/ncu-persist.sh       ($OUT: the report and the per-instruction CSV, gzipped)
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp/ncu-persist}"
mkdir -p "$out"
tmp="$(mktemp -d)"
source kernels/dev/persist-build.sh
persist_build_tree "$tmp/build.txt" --tests || exit 1
persist_link lineinfo kernels/src/mamba2-decode-persistent.cu "$tmp/persist.o" -lineinfo || { echo "ncu-persist: build failed"; exit 1; }
# one launch of the microbench (the checks' launches come first), all its source-level counters
ZK_TEST_ONLY=persist ZK_BENCH_PERSIST=1 timeout 240 ncu --section SourceCounters --section WarpStateStats \
  --import-source yes -k regex:persistent --launch-skip 100 --launch-count 1 -o "$tmp/persist" \
  kernels/build/test-kernels-lineinfo > "$tmp/ncu.txt" 2>&1 || { tail -20 "$tmp/ncu.txt"; exit 1; }
# per SASS instruction (the CUDA view printed the source without metrics, run 99); kernels/dev/sass_ctrl.py shows
# which scoreboards each instruction waits for
ncu -i "$tmp/persist.ncu-rep" --page source --csv --print-source sass > "$tmp/source-sass.csv" 2> "$tmp/source-sass.err"
python3 - "$tmp/source-sass.csv" <<'PY'
import csv, sys

def table(path):
    lines = open(path, errors="replace").read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"#"') or l.startswith('"Line"') or l.startswith('"Address"')), None)
    if start is None:
        print(f"{path}: no table ({len(lines)} lines)")
        return [], []
    rows = list(csv.reader(lines[start:]))
    return rows[0], rows[1:]

def num(v):
    try:
        return float(v.replace(",", ""))
    except ValueError:
        return 0.0

for path in sys.argv[1:]:
    head, rows = table(path)
    if not rows:
        continue
    allc = next((i for i, h in enumerate(head) if h.startswith("Warp Stall Sampling (All")), None)
    src = next((i for i, h in enumerate(head) if h in ("Source", "Source Line")), len(head) - 1)
    stalls = [i for i, h in enumerate(head) if "stall" in h.lower() and "Sampling" not in h]
    print(f"-- {path.split('/')[-1]} columns: {' | '.join(head)[:600]}")
    if allc is None:
        print(f"{path}: columns {head}")
        continue
    total = sum(num(r[allc]) for r in rows if len(r) > allc)
    print(f"-- {path.split('/')[-1]}: {len(rows)} rows, {total:.0f} samples; top 40 (share, line, top stall reasons)")
    for r in sorted((r for r in rows if len(r) > allc), key=lambda r: -num(r[allc]))[:40]:
        top = sorted(((num(r[i]), head[i]) for i in stalls if i < len(r) and num(r[i]) > 0), reverse=True)[:3]
        reasons = ", ".join(f"{h} {v / max(num(r[allc]), 1):.0%}" for v, h in top)
        print(f"{num(r[allc]) / total:6.1%}  {r[0]:>6s}  {r[src].strip()[:90]:90s}  {reasons}")
PY
gzip -c "$tmp/source-sass.csv" > "$out/ncu-persist-source-sass.csv.gz"
cp "$tmp/persist.ncu-rep" "$out/" 2>/dev/null
rm -rf "$tmp"
