#!/usr/bin/env bash
# Regenerates the golden fixtures and the demo model on the GPU machine (torch + transformers +
# tokenizers). Usage: OUT=/some/dir bash test/golden/run-on-gpu.sh [train-seconds]
# Leaves $OUT/fixtures.tar (test/golden/fixtures/...), $OUT/demo.tar (model/, golden/,
# train-report.json) and $OUT/log.txt; see test/golden/README.md for where each file goes.
set -u
export PYTHONUNBUFFERED=1
TRAIN_SECONDS=${1:-200}
W=$(mktemp -d)
cd "$(dirname "$0")"
{
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  python3 -c 'import torch, transformers, tokenizers; print("torch", torch.__version__, "transformers", transformers.__version__, "tokenizers", tokenizers.__version__)'
  timeout 180 python3 make_fixtures.py --out "$W/fx"
  timeout 120 python3 crosscheck_goldens.py "$W/fx/fixtures/a" "$W/fx/fixtures/b"
  tar -C "$W/fx" -cf "$OUT/fixtures.tar" fixtures fixtures-report.json
  timeout $((TRAIN_SECONDS + 150)) python3 train_demo_model.py --out "$W/demo" --train-seconds "$TRAIN_SECONDS"
  tar -C "$W/demo" -cf "$OUT/demo.tar" .
  echo "done"
} 2>&1 | tee "$OUT/log.txt"
