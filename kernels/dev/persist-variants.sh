#!/usr/bin/env bash
# The persistent decode's variants against the working tree in one GPU-machine call (kernels/notes/runs-83-.md):
# each directory kernels/v<name>/ holds its own copy of src/mamba2-decode-persistent.cu and the three .cuh files it
# includes (e.g. the tree's with one constant changed by sed). One build of the tree, then per variant only that
# file compiled and linked into kernels/build/test-kernels-<name> and bench-engine-<name>; then, alternating,
# twice each: the persistent tests, the microbench (us per layer; the traced launch's layer 2 phases) and the b1
# step of bench-engine (kernels/dev/b1-ab.sh; "base": the per-layer kernels, ZAMBA2_PERSIST=0).
# Usage (repo root, on the GPU machine, after `source .devcuda/setup.sh`):
#   VARS="ring6 ring8" bash kernels/dev/persist-variants.sh      ($OUT: each variant's traced bench output)
# The variant directories are scratch: never commit them.
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp/persist-variants}"
mkdir -p "$out"
tmp="$(mktemp -d)"
source kernels/dev/persist-build.sh
persist_build_tree "$tmp/build.txt" || exit 1
vars="${VARS:-}"
for v in $vars; do
  persist_link "$v" "kernels/v$v/mamba2-decode-persistent.cu" "$tmp/$v.o" && persist_link_engine "$v" "$tmp/$v.o" ||
    { echo "variant $v: build failed"; exit 1; }
done
bin() { [ "$1" = tree ] && echo "kernels/build/$2" || echo "kernels/build/$2-$1"; }
for v in tree $vars; do
  ZK_TEST_ONLY=persist timeout 120 "$(bin "$v" test-kernels)" > "$tmp/checks-$v.txt" 2>&1
  echo "checks $v: rc $? $(grep -E 'kernel checks' "$tmp/checks-$v.txt")"
  grep FAIL "$tmp/checks-$v.txt" | head -5
done
for i in 1 2; do
  for v in $vars tree; do
    ZK_TEST_ONLY=persist ZK_BENCH_PERSIST=1 timeout 120 "$(bin "$v" test-kernels)" > "$tmp/bench-$v.txt" 2>&1
    echo "microbench $v ($i): $(grep -E 'us per layer' "$tmp/bench-$v.txt")"
  done
done
for v in $vars tree; do echo "$v: $(grep -E '^layer 2' "$tmp/bench-$v.txt")"; cp "$tmp/bench-$v.txt" "$out/"; done
ab=("base:ZAMBA2_PERSIST=0")  # the b1 step: the per-layer kernels, each variant's build, the tree (persistent by default)
for v in $vars; do ab+=("$v@$(bin "$v" bench-engine)"); done
REPS=2 bash kernels/dev/b1-ab.sh "${ab[@]}" "tree:"
