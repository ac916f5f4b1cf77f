#!/usr/bin/env bash
# Everything one GPU-machine call does, in order, each stage time-boxed so a hang cannot eat the
# lease: build, kernel tests (two seeds, one under compute-sanitizer), the GPU node tests (golden
# fixtures through the engine), and the engine benchmark. Usage (repo root, on the GPU machine):
#   bash kernels/dev/device-run.sh [stages...]     stages: build tests sanitize node bench (default: all)
set -uo pipefail
cd "$(dirname "$0")/../.."
stages="${*:-build tests sanitize node bench}"
status=0
stage() { echo; echo "=== $1 ($(date +%T))"; }
has() { [[ " $stages " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv,noheader || true
if has build; then
  stage build
  JOBS=16 timeout 400 bash kernels/build.sh || { echo "BUILD FAILED"; exit 1; }
fi
if has tests; then
  stage "kernel tests"
  timeout 120 kernels/build/test-kernels || status=1
  timeout 120 kernels/build/test-kernels 12345 | tail -3 || status=1
fi
if has sanitize; then
  stage "compute-sanitizer memcheck"
  timeout 240 compute-sanitizer --tool memcheck --print-limit 20 kernels/build/test-kernels 777 | tail -6 || status=1
fi
if has node; then
  stage "node GPU tests"
  timeout 300 node test/run-tests.mjs --gpu || status=1
fi
if has bench; then
  stage "bench"
  timeout 200 kernels/build/bench-engine 1.2b || status=1
  ZAMBA2_PROFILE=1 timeout 150 kernels/build/bench-engine 1.2b | grep -E "^profile|^preset" || status=1
fi
echo; echo "device-run status $status"
exit $status
