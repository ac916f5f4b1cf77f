#!/usr/bin/env bash
# Build the zamba2 CUDA kernels, addon, tests and benchmark with plain nvcc (no CMake needed).
#   bash kernels/build.sh            addon kernels/build/zamba2_cuda.node + test-kernels + bench-engine
#   bash kernels/build.sh --check    compile every source file with `nvcc -c` for sm_90a and sm_80
#                                    (CI: no GPU needed; files that include cuBLAS headers are skipped,
#                                    with a note, when the headers are absent)
#   bash kernels/build.sh --tests    only kernels/build/test-kernels (no cuBLAS needed)
#   bash kernels/build.sh --timeline kernels/build-tl/bench-engine with -DZK_TIMELINE (include/zamba2-timeline.cuh)
# Env: CUDA_HOME (default /usr/local/cuda), NVCC, JOBS, ZK_ARCHS (gencode list override).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
NVCC="${NVCC:-$(command -v nvcc || echo "$CUDA_HOME/bin/nvcc")}"
JOBS="${JOBS:-$(nproc)}"
ARCHS="${ZK_ARCHS:--gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_80,code=sm_80}"
NAPI_INC="$root/node_modules/node-api-headers/include"
out="$here/build"
mode="${1:-all}"
common=(-std=c++17 -O3 -I"$here/include" -Xcompiler -fPIC --expt-relaxed-constexpr)

[ -x "$NVCC" ] || { echo "build.sh: nvcc not found (set CUDA_HOME or NVCC)" >&2; exit 1; }

has_cublas() { echo '#include <cublasLt.h>' | "$NVCC" -E -x c++ -I"$CUDA_HOME/include" - >/dev/null 2>&1; }
needs_cublas() { grep -q '#include <cublas' "$1"; }

# compile SRC OBJ [extra flags...]
compile() {
  local src="$1" obj="$2"; shift 2
  "$NVCC" "${common[@]}" $ARCHS "$@" -c "$src" -o "$obj"
}
export -f compile 2>/dev/null || true

if [ "$mode" = "--check" ]; then
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  cublas=1; has_cublas || cublas=0
  files=("$here"/src/*.cu "$here"/src/*.cc "$here"/engine/*.cc "$here"/tests/*.cu "$here"/tests/*.cc "$here"/bench/*.cc)
  [ -d "$NAPI_INC" ] && files+=("$here"/addon/*.cc) || echo "check: skipped addon/ (node-api-headers not installed)"
  # one nvcc per file, JOBS at a time; a .status file per file records the outcome
  n=0
  for f in "${files[@]}"; do
    [ -f "$f" ] || continue
    if needs_cublas "$f" && [ "$cublas" = 0 ]; then echo "check: skipped ${f#$root/} (no cuBLAS headers here)"; continue; fi
    n=$((n + 1))
    b="$tmp/$(basename "$f")"
    ( if compile "$f" "$b.o" -I"$NAPI_INC" -DNODE_GYP_MODULE_NAME=zamba2_cuda > "$b.log" 2>&1; then echo ok > "$b.status"; else echo FAILED > "$b.status"; fi ) &
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 0.2; done
  done
  wait
  fail=0
  for f in "${files[@]}"; do
    b="$tmp/$(basename "$f")"
    [ -f "$b.status" ] || continue
    if [ "$(cat "$b.status")" = ok ]; then echo "check: ok ${f#$root/}"; else echo "check: FAILED ${f#$root/}"; cat "$b.log"; fail=$((fail + 1)); fi
  done
  echo "nvcc compile check: $((n - fail)) passed, $fail failed"
  [ "$fail" = 0 ]
  exit $?
fi

if [ "$mode" = "--timeline" ]; then
  out="$here/build-tl"; mkdir -p "$out/obj"; objs=(); pids=()
  for f in "$here"/src/*.cu "$here"/src/gemm-cublaslt.cc "$here"/engine/*.cc "$here"/bench/bench-engine.cc; do
    o="$out/obj/$(basename "$f").o"; objs+=("$o")
    compile "$f" "$o" -DZK_TIMELINE & pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 0.2; done
  done
  for p in "${pids[@]}"; do wait "$p"; done
  "$NVCC" $ARCHS -o "$out/bench-engine" "${objs[@]}" -L"$CUDA_HOME/lib64" -lcublasLt -lcublas -lcudart
  echo "built kernels/build-tl/bench-engine (timeline)"
  exit 0
fi

mkdir -p "$out/obj"
kernel_objs=()
pids=()
for f in "$here"/src/*.cu; do
  o="$out/obj/$(basename "$f").o"; kernel_objs+=("$o")
  compile "$f" "$o" & pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 0.2; done
done
compile "$here/tests/cpu-reference.cc" "$out/obj/cpu-reference.o" & pids+=($!)
test_objs=()
for f in "$here"/tests/test-*.cu; do
  o="$out/obj/$(basename "$f").o"; test_objs+=("$o")
  compile "$f" "$o" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
"$NVCC" $ARCHS -o "$out/test-kernels" "${test_objs[@]}" "$out/obj/cpu-reference.o" "${kernel_objs[@]}"
echo "built kernels/build/test-kernels"
[ "$mode" = "--tests" ] && exit 0

has_cublas || { echo "build.sh: cuBLAS headers (cublasLt.h) not found under $CUDA_HOME/include" >&2; exit 1; }
[ -d "$NAPI_INC" ] || { echo "build.sh: node-api-headers missing: run npm install" >&2; exit 1; }
pids=()
engine_objs=("$out/obj/gemm-cublaslt.o")
compile "$here/src/gemm-cublaslt.cc" "$out/obj/gemm-cublaslt.o" & pids+=($!)
for f in "$here"/engine/*.cc; do  # every engine source (the addon and bench-engine link them all)
  o="$out/obj/$(basename "${f%.cc}").o"
  engine_objs+=("$o")
  compile "$f" "$o" & pids+=($!)
done
compile "$here/addon/addon.cc" "$out/obj/addon.o" -I"$NAPI_INC" -DNODE_GYP_MODULE_NAME=zamba2_cuda & pids+=($!)
compile "$here/bench/bench-engine.cc" "$out/obj/bench-engine.o" & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
libs=(-L"$CUDA_HOME/lib64" -lcublasLt -lcublas -lcudart)
"$NVCC" $ARCHS -shared -o "$out/zamba2_cuda.node" "$out/obj/addon.o" "${engine_objs[@]}" "${kernel_objs[@]}" "${libs[@]}"
echo "built kernels/build/zamba2_cuda.node"
"$NVCC" $ARCHS -o "$out/bench-engine" "$out/obj/bench-engine.o" "${engine_objs[@]}" "${kernel_objs[@]}" "${libs[@]}"
echo "built kernels/build/bench-engine"
