#!/usr/bin/env bash
# npm run bench:gpu: the engine benchmark (random weights with preset dims, no upload) for the
# presets named (default 1.2b), each printing its table. Needs `npm run build:cuda` first.
#   bash kernels/dev/bench-gpu.sh [1.2b] [2.7b] [7b]
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x kernels/build/bench-engine ] || { echo "bench-gpu: kernels/build/bench-engine missing: run npm run build:cuda" >&2; exit 1; }
for preset in "${@:-1.2b}"; do kernels/build/bench-engine "$preset"; done
