#!/usr/bin/env bash
# Packs the little a GPU-machine run of the CUDA work needs into .devcuda/ (git-ignored via
# .git/info/exclude): this machine's node binary and the node_modules the GPU tests import (tsx,
# esbuild, zod, node-api-headers). Smaller than ../shared/device/pack.sh's full bundle, so it fits
# beside the tracked tree under the 64 MiB transfer limit. On the GPU machine:
#   source .devcuda/setup.sh && bash kernels/dev/device-run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .devcuda
grep -qxF '/.devcuda/' .git/info/exclude 2>/dev/null || echo '/.devcuda/' >> .git/info/exclude
node_bin="$(readlink -f "$(command -v node)")"
[ -f .devcuda/node.xz ] || xz -T2 -6 -c "$node_bin" > .devcuda/node.xz
tar -cf - node_modules/tsx node_modules/esbuild node_modules/@esbuild node_modules/zod node_modules/node-api-headers \
  | xz -T2 -6 > .devcuda/modules.tar.xz
cat > .devcuda/setup.sh <<'SETUP'
_dev="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p /tmp/nodejs/bin
[ -x /tmp/nodejs/bin/node ] || { xz -dc "$_dev/node.xz" > /tmp/nodejs/bin/node && chmod +x /tmp/nodejs/bin/node; }
export PATH="/tmp/nodejs/bin:/usr/local/cuda/bin:$PATH"
tar -xJf "$_dev/modules.tar.xz" -C "$_dev/.."
echo "devcuda setup: node $(node --version), $(nvcc --version | tail -1)"
SETUP
du -sh .devcuda/*
