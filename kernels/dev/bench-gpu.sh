#!/usr/bin/env bash
# npm run bench:gpu: for each preset named (default 1.2b), the engine benchmark (random weights with the preset's
# dims, no upload: prefill 512/2048, decode b1/16/64/256 and the bound at b1, a mixed step), then the same prefill
# and b1/b16 decode through transformers (torch bf16, kernels/dev/hf_baseline.py) where python3 has torch and
# transformers (ZAMBA2_BENCH_HF=0: skip it), then both side by side with the ratio. Needs `npm run build:cuda` first.
#   bash kernels/dev/bench-gpu.sh [1.2b] [2.7b] [7b]      (ZAMBA2_BENCH_HF_BUDGET_S: transformers' time per preset, 120)
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x kernels/build/bench-engine ] || { echo "bench-gpu: kernels/build/bench-engine missing: run npm run build:cuda" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
hf=0
if [ "${ZAMBA2_BENCH_HF:-1}" != 0 ] && python3 -c 'import torch, transformers' 2>/dev/null; then hf=1; fi
for preset in "${@:-1.2b}"; do
  kernels/build/bench-engine "$preset" | tee "$tmp/engine-$preset.txt"
  if [ $hf = 1 ]; then
    echo "transformers baseline ($preset, torch bf16, random weights):"
    PYTHONUNBUFFERED=1 python3 kernels/dev/hf_baseline.py "config/models/zamba2-$preset.json" "${ZAMBA2_BENCH_HF_BUDGET_S:-120}" 2>&1 |
      grep -E "^hf " | tee "$tmp/hf-$preset.txt" || true
  fi
  echo
  node kernels/dev/bench-compare.mjs "$preset" "$tmp/engine-$preset.txt" "$tmp/hf-$preset.txt"
done
