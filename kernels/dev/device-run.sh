#!/usr/bin/env bash
# Everything one GPU-machine call does, in order, each stage time-boxed so a hang cannot eat the
# lease: build, kernel tests (two seeds, one under compute-sanitizer), the engine benchmark (plain
# and per-op profile), the GPU node tests (golden fixtures through the engine), then a summary.
# Usage (repo root, on the GPU machine; $OUT optional):
#   bash kernels/dev/device-run.sh [stages...]     stages: build tests sanitize bench node (default: all)
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp/zamba2-device-run}"
mkdir -p "$out"
stages="${*:-build tests sanitize bench node}"
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
  timeout 120 kernels/build/test-kernels > "$out/kernel-tests.txt" 2>&1 || status=1
  cat "$out/kernel-tests.txt"
  timeout 120 kernels/build/test-kernels 12345 | tail -2 || status=1
fi
if has sanitize; then
  stage "compute-sanitizer memcheck"
  timeout 240 compute-sanitizer --tool memcheck --print-limit 10 kernels/build/test-kernels 777 > "$out/sanitizer.txt" 2>&1 || status=1
  grep -E "ERROR SUMMARY|Invalid|at 0x|kernel checks" "$out/sanitizer.txt" | head -20
fi
if has bench; then
  stage "bench"
  for p in 1.2b 2.7b 7b; do timeout 200 kernels/build/bench-engine "$p" >> "$out/bench.txt" 2>&1 || status=1; done
  ZAMBA2_GEMV=1 ZAMBA2_DECODE_STEP=1 timeout 150 kernels/build/bench-engine 1.2b 2>&1 | grep -E "^decode " | sed 's/^/gemv+step /' >> "$out/bench.txt" || status=1
  ZAMBA2_SSD=1 timeout 150 kernels/build/bench-engine 1.2b 2>&1 | grep -E "^prefill " | sed 's/^/ssd /' >> "$out/bench.txt" || status=1
  ZAMBA2_NO_GRAPHS=1 timeout 150 kernels/build/bench-engine 1.2b 2>&1 | grep -E "^decode b(1|64) " | sed 's/^/no-graphs /' >> "$out/bench.txt" || status=1
  ZAMBA2_PROFILE=1 timeout 150 kernels/build/bench-engine 1.2b 2>&1 | grep -E "^profile|^preset|bench-engine" >> "$out/bench.txt" || status=1
  cat "$out/bench.txt"
fi
if has node; then
  stage "node GPU tests"
  timeout 300 node test/run-tests.mjs --gpu > "$out/node-gpu.txt" 2>&1 || status=1
  ZAMBA2_GEMV=1 ZAMBA2_DECODE_STEP=1 ZAMBA2_SSD=1 timeout 300 node test/run-tests.mjs --gpu > "$out/node-gpu-fast.txt" 2>&1 || status=1
  grep -E "^# (pass|fail)" "$out/node-gpu-fast.txt" | sed 's/^/fast paths (gemv+step+ssd): /'
  grep -E "^# (tests|pass|fail)|not ok|error:|# [a-z]+/len|max rel|greedy tokens" "$out/node-gpu.txt" | head -60
fi
stage summary
grep -E "kernel checks" "$out/kernel-tests.txt" 2>/dev/null
grep -E "ERROR SUMMARY" "$out/sanitizer.txt" 2>/dev/null | head -1
grep -E "^(benchmark|prefill|decode|no-graphs|gemv|ssd)" "$out/bench.txt" 2>/dev/null
grep -E "^# (pass|fail)" "$out/node-gpu.txt" 2>/dev/null
echo "device-run status $status"
exit $status
